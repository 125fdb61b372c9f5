//! Pod IPs to names, namespaces and nodes, and Service ClusterIPs to Service names, kept by watches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};

/// A pod as far as entries care: its name, namespace and node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
}

/// A Service: its name and namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub name: String,
    pub namespace: String,
}

pub type ByIp<V> = Arc<RwLock<HashMap<IpAddr, V>>>;

/// A pod's IPs. Host-network pods share the node's address and cannot be told apart by IP; pods that have
/// finished (Succeeded, Failed: completed Jobs) keep their `podIP` in status, but CNIs give the address
/// to new pods — they are not who uses it now.
pub fn pod_entries(p: &Pod) -> Vec<(IpAddr, PodRef)> {
    let Some(st) = &p.status else { return Vec::new() };
    if p.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return Vec::new();
    }
    if matches!(st.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Vec::new();
    }
    let mut out: Vec<IpAddr> = st.pod_ips.iter().flatten().filter_map(|i| i.ip.parse().ok()).collect();
    if let Some(ip) = st.pod_ip.as_deref().and_then(|i| i.parse().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    let r = PodRef {
        name: p.name_any(),
        namespace: p.namespace().unwrap_or_default(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
    };
    out.into_iter().map(|ip| (ip, r.clone())).collect()
}

pub fn service_entries(s: &Service) -> Vec<(IpAddr, ServiceName)> {
    let Some(spec) = &s.spec else { return Vec::new() };
    let name = ServiceName { name: s.name_any(), namespace: s.namespace().unwrap_or_default() };
    spec.cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .map(|ip| (ip, name.clone()))
        .collect()
}

/// Keeps `map` equal to what the objects of `api` say, IP by IP; `synced` once it has listed them.
pub async fn watch_ips<K, V>(
    api: Api<K>,
    map: ByIp<V>,
    entries: fn(&K) -> Vec<(IpAddr, V)>,
    synced: Arc<AtomicBool>,
    what: &'static str,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    V: Clone + PartialEq + Send + Sync + 'static,
{
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    // A re-list (after a disconnect) builds a fresh map, so objects deleted meanwhile do not linger.
    let mut relist: HashMap<IpAddr, V> = HashMap::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(o)) => relist.extend(entries(&o)),
            Ok(Event::InitDone) => {
                if let Ok(mut m) = map.write() {
                    *m = std::mem::take(&mut relist);
                }
                synced.store(true, Ordering::Relaxed);
            }
            Ok(Event::Apply(o)) => {
                if let Ok(mut m) = map.write() {
                    m.extend(entries(&o));
                }
            }
            Ok(Event::Delete(o)) => {
                if let Ok(mut m) = map.write() {
                    for (ip, v) in entries(&o) {
                        if m.get(&ip) == Some(&v) {
                            m.remove(&ip);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "{what} watch error (retrying)"),
        }
    }
}
