//! Pod IPs to names and namespaces, and Service ClusterIPs to Service names, from watches (cluster-wide:
//! the peer of a pod on this node may run anywhere). Without access to the API server the agent still
//! runs, with names left empty.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

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

type ByIp<V> = Arc<RwLock<HashMap<IpAddr, V>>>;

#[derive(Clone, Default)]
pub struct Resolver {
    by_ip: ByIp<PodRef>,
    services: ByIp<ServiceName>,
}

impl Resolver {
    pub async fn start(enabled: bool) -> Resolver {
        let r = Resolver::default();
        if !enabled {
            return r;
        }
        match Client::try_default().await {
            Ok(client) => {
                let (pods, services) = (r.by_ip.clone(), r.services.clone());
                tokio::spawn(watch_ips(Api::<Pod>::all(client.clone()), pods, pod_entries, "pod"));
                tokio::spawn(watch_ips(Api::<Service>::all(client), services, service_entries, "service"));
            }
            Err(e) => tracing::warn!(error = %e, "no Kubernetes API: entries will not name their pods"),
        }
        r
    }

    /// A resolver that knows no pods (no API server).
    #[cfg(test)]
    pub fn disabled() -> Resolver {
        Resolver::default()
    }

    /// The pod with this IP.
    pub fn lookup(&self, ip: &IpAddr) -> Option<PodRef> {
        self.by_ip.read().ok()?.get(ip).cloned()
    }

    /// The Service with this ClusterIP.
    pub fn service(&self, ip: &IpAddr) -> Option<ServiceName> {
        self.services.read().ok()?.get(ip).cloned()
    }
}

/// A pod's IPs. Host-network pods share the node's address and cannot be told apart by IP; pods that have
/// finished (Succeeded, Failed: completed Jobs) keep their `podIP` in status, but CNIs give the address
/// to new pods — they are not who uses it now.
fn pod_entries(p: &Pod) -> Vec<(IpAddr, PodRef)> {
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

fn service_entries(s: &Service) -> Vec<(IpAddr, ServiceName)> {
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

/// Keeps `map` equal to what the objects of `api` say, IP by IP.
async fn watch_ips<K, V>(api: Api<K>, map: ByIp<V>, entries: fn(&K) -> Vec<(IpAddr, V)>, what: &'static str)
where
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
