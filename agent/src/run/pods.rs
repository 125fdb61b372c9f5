//! Pod IPs to names and namespaces, from a watch on Pods (cluster-wide: the peer of a pod on this node
//! may run anywhere). Without access to the API server the agent still runs, with names left empty.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
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

type ByIp = Arc<RwLock<HashMap<IpAddr, PodRef>>>;

#[derive(Clone, Default)]
pub struct Resolver {
    by_ip: ByIp,
}

impl Resolver {
    pub async fn start(enabled: bool) -> Resolver {
        let r = Resolver::default();
        if !enabled {
            return r;
        }
        match Client::try_default().await {
            Ok(client) => {
                let map = r.by_ip.clone();
                tokio::spawn(async move { watch(client, map).await });
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
}

fn ips(p: &Pod) -> Vec<IpAddr> {
    let Some(st) = &p.status else { return Vec::new() };
    // Host-network pods share the node's address: they cannot be told apart by IP.
    if p.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return Vec::new();
    }
    let mut out: Vec<IpAddr> = st.pod_ips.iter().flatten().filter_map(|i| i.ip.parse().ok()).collect();
    if let Some(ip) = st.pod_ip.as_deref().and_then(|i| i.parse().ok()) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

fn pod_ref(p: &Pod) -> PodRef {
    PodRef {
        name: p.name_any(),
        namespace: p.namespace().unwrap_or_default(),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}

async fn watch(client: Client, map: ByIp) {
    let pods: Api<Pod> = Api::all(client);
    let mut stream = watcher::watcher(pods, watcher::Config::default()).default_backoff().boxed();
    // A re-list (after a disconnect) builds a fresh map, so pods deleted meanwhile do not linger.
    let mut relist: HashMap<IpAddr, PodRef> = HashMap::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(p)) => {
                for ip in ips(&p) {
                    relist.insert(ip, pod_ref(&p));
                }
            }
            Ok(Event::InitDone) => {
                if let Ok(mut m) = map.write() {
                    *m = std::mem::take(&mut relist);
                }
            }
            Ok(Event::Apply(p)) => {
                if let Ok(mut m) = map.write() {
                    for ip in ips(&p) {
                        m.insert(ip, pod_ref(&p));
                    }
                }
            }
            Ok(Event::Delete(p)) => {
                if let Ok(mut m) = map.write() {
                    for ip in ips(&p) {
                        if m.get(&ip).is_some_and(|r| r.name == p.name_any()) {
                            m.remove(&ip);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "pod watch error (retrying)"),
        }
    }
}
