//! Who the entries are about: the operator names both ends of every entry after their pods, and the
//! Service a client addressed, from one cluster-wide watch of Pods and one of Services (`watch`) — the
//! agents hold no API access at all, and the API server serves two watches however many nodes run an
//! agent. At ingest it also decides which agent's copy of a cross-node entry counts, and drops what the
//! TapConfig does not watch.

mod watch;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use faultline_crds::TapConfig;
use faultline_model::entry::{ServiceRef, Workload, WorkloadKind};
use faultline_model::Entry;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

pub use watch::{Also, PodRef, ServiceName};

use crate::tapconfig::build::{label_value, TAPCONFIG_LABEL};

/// What naming did to a batch.
#[derive(Debug, Default)]
pub struct Named {
    pub kept: Vec<Entry>,
    /// Cross-node traffic reported by the other end's agent.
    pub elsewhere: u64,
    /// About namespaces the TapConfig does not watch.
    pub unwatched: u64,
    /// The node's own probes of its pods while they were not serving (`probing_unready`).
    pub unready_probed: u64,
}

#[derive(Default)]
pub struct Names {
    pods: watch::ByIp<PodRef>,
    /// Pods deleted in the last minutes, by the addresses they had.
    gone: watch::Gone<std::net::IpAddr, PodRef>,
    /// Each node's own addresses, as its agent last reported them.
    node_addresses: RwLock<HashMap<String, Vec<std::net::IpAddr>>>,
    services: watch::ByIp<ServiceName>,
    /// Where each TapConfig's agents run (Running agent pods), by label value and node.
    agents: watch::Shared<watch::AgentPlace, String>,
    /// TapConfig → the namespaces it reports on (none: all).
    watched: RwLock<HashMap<String, BTreeSet<String>>>,
    pods_synced: Arc<AtomicBool>,
    services_synced: Arc<AtomicBool>,
    agents_synced: Arc<AtomicBool>,
    taps_synced: AtomicBool,
}

impl Names {
    /// Starts the watches; `ready()` once each has listed. `pods_too` and `services_too` are fed every
    /// event of the pod and Service watches (the causes' state), so that the API server serves one watch
    /// of each, not two.
    pub fn start(
        client: Client,
        pods_too: watch::Also<k8s_openapi::api::core::v1::Pod>,
        services_too: watch::Also<k8s_openapi::api::core::v1::Service>,
    ) -> Arc<Names> {
        let names = Arc::new(Names::default());
        tokio::spawn(watch::watch_index(
            Api::all(client.clone()),
            watcher::Config::default(),
            names.pods.clone(),
            watch::pod_entries,
            Some(names.gone.clone()),
            names.pods_synced.clone(),
            "pod",
            pods_too,
        ));
        tokio::spawn(watch::watch_index(
            Api::all(client.clone()),
            watcher::Config::default(),
            names.services.clone(),
            watch::service_entries,
            None,
            names.services_synced.clone(),
            "service",
            services_too,
        ));
        tokio::spawn(watch::watch_index(
            Api::all(client.clone()),
            watcher::Config::default().labels(TAPCONFIG_LABEL),
            names.agents.clone(),
            watch::agent_entries,
            None,
            names.agents_synced.clone(),
            "agent pod",
            None,
        ));
        tokio::spawn(watch_tapconfigs(Api::all(client), names.clone()));
        names
    }

    /// Whether every watch has listed once: before that, entries would be named wrongly (or not at all)
    /// and land in the wrong views.
    pub fn ready(&self) -> bool {
        self.pods_synced.load(Ordering::Relaxed)
            && self.services_synced.load(Ordering::Relaxed)
            && self.agents_synced.load(Ordering::Relaxed)
            && self.taps_synced.load(Ordering::Relaxed)
    }

    /// The pod at `ip`: one that has it now, else one that had it and was deleted in the last minutes.
    fn pod(&self, ip: &std::net::IpAddr) -> Option<PodRef> {
        if let Some(p) = self.pods.read().ok()?.get(ip) {
            return Some(p.clone());
        }
        let gone = self.gone.read().ok()?;
        gone.get(ip).filter(|(_, at)| at.elapsed() < watch::GONE_FOR).map(|(p, _)| p.clone())
    }

    /// Whether `ip` is one of `node`'s own addresses.
    fn is_node(&self, node: &str, ip: &std::net::IpAddr) -> bool {
        self.node_addresses.read().is_ok_and(|n| n.get(node).is_some_and(|a| a.contains(ip)))
    }

    fn service(&self, ip: &std::net::IpAddr) -> Option<ServiceName> {
        self.services.read().ok()?.get(ip).cloned()
    }

    /// Whether an agent of the TapConfig whose label value is `tap_label` runs on `node`.
    fn agent_runs(&self, tap_label: &str, node: &str) -> bool {
        // The key is owned; one allocation per cross-node entry is cheap next to the JSON it came in.
        self.agents.read().is_ok_and(|a| a.contains_key(&(tap_label.to_owned(), node.to_owned())))
    }

    /// Names the pods at both ends and the Service addressed; keeps what `node`'s agent should report
    /// and `tap` watches.
    ///
    /// Traffic between pods on two nodes is captured on both. To count it once, the entry that counts is
    /// the one from the destination pod's node (the server, or the receiver of an ICMP message), else the
    /// source pod's — if an agent of the TapConfig runs on that node (a Running agent pod there, which
    /// every replica and every lead term sees alike; or, for the moment the pod watch lags, an agent that
    /// has `reported` to this process). Traffic with no pod at either end counts from whoever saw it.
    ///
    /// `addresses` are `node`'s own (the agent says so in each batch): an end there is the node itself
    /// (`Node/<node>`: the kubelet, a host-network pod). The node's connection errors and failed requests
    /// to its own pods while they were not serving — starting, not Ready, or being deleted — are the
    /// kubelet's probes finding out just that (it reports them itself, as `Unhealthy` Events): counted, not
    /// errors (`unready_probed`).
    pub fn name(
        &self,
        tap: &str,
        node: &str,
        addresses: &[std::net::IpAddr],
        entries: Vec<Entry>,
        reported: impl Fn(&str) -> bool,
    ) -> Named {
        if !addresses.is_empty() {
            if let Ok(mut n) = self.node_addresses.write() {
                if n.get(node).is_none_or(|a| a != addresses) {
                    n.insert(node.to_owned(), addresses.to_vec());
                }
            }
        }
        let watched = self.watched.read().ok().and_then(|w| w.get(tap).cloned()).unwrap_or_default();
        let tap_label = label_value(tap);
        let mut out = Named::default();
        for mut e in entries {
            let (src, dst) = (self.pod(&e.src.ip), self.pod(&e.dst.ip));
            let owner = dst.as_ref().or(src.as_ref()).and_then(|p| p.node.as_deref());
            let reporter = e.node.as_deref().unwrap_or(node);
            let counts_there = |owner: &str| self.agent_runs(&tap_label, owner) || reported(owner);
            if owner.is_some_and(|owner| owner != reporter && counts_there(owner)) {
                out.elsewhere += 1;
                continue;
            }
            let from_node = src.is_none() && self.is_node(reporter, &e.src.ip);
            if from_node && probing_unready(&e, reporter, dst.as_ref()) {
                out.unready_probed += 1;
                continue;
            }
            for (ep, pod) in [(&mut e.src, src), (&mut e.dst, dst)] {
                if let Some(p) = pod {
                    ep.name = Some(p.name);
                    ep.namespace = Some(p.namespace);
                    ep.workload = Some(p.workload);
                } else if self.is_node(reporter, &ep.ip) {
                    ep.workload = Some(Workload::new(WorkloadKind::Node, reporter));
                }
            }
            // The Service the client addressed: seen before DNAT (the agent kept the translated address),
            // or only ever seen as the ClusterIP itself (no copy after DNAT where it was captured).
            if e.service.is_none() {
                if let (Some(port), Some(_)) = (e.dst.port, self.service(&e.dst.ip)) {
                    e.service = Some(ServiceRef { ip: e.dst.ip, port, name: None, namespace: None });
                }
            }
            if let Some(svc) = e.service.as_mut() {
                if let Some(s) = self.service(&svc.ip) {
                    svc.name = Some(s.name);
                    svc.namespace = Some(s.namespace);
                }
            }
            let seen = watched.is_empty()
                || [&e.src, &e.dst].iter().any(|ep| ep.namespace.as_ref().is_some_and(|ns| watched.contains(ns)));
            if seen {
                out.kept.push(e);
            } else {
                out.unwatched += 1;
            }
        }
        out
    }

    #[cfg(test)]
    fn with(pods: Vec<(&str, PodRef)>, services: Vec<(&str, ServiceName)>, watched: Vec<(&str, Vec<&str>)>) -> Names {
        Self::with_agents(pods, services, watched, vec![])
    }

    #[cfg(test)]
    fn with_agents(
        pods: Vec<(&str, PodRef)>,
        services: Vec<(&str, ServiceName)>,
        watched: Vec<(&str, Vec<&str>)>,
        agents: Vec<(&str, &str)>,
    ) -> Names {
        let n = Names::default();
        if let Ok(mut m) = n.agents.write() {
            m.extend(
                agents.into_iter().map(|(tap, node)| ((label_value(tap), node.to_owned()), format!("{tap}-{node}"))),
            );
        }
        if let Ok(mut m) = n.pods.write() {
            m.extend(pods.into_iter().filter_map(|(ip, p)| Some((ip.parse().ok()?, p))));
        }
        if let Ok(mut m) = n.services.write() {
            m.extend(services.into_iter().filter_map(|(ip, s)| Some((ip.parse().ok()?, s))));
        }
        if let Ok(mut w) = n.watched.write() {
            w.extend(watched.into_iter().map(|(t, ns)| (t.to_owned(), ns.into_iter().map(str::to_owned).collect())));
        }
        n
    }
}

/// An entry from the node itself (its kubelet) to one of its pods that was not serving at the time, and
/// that says something failed: a connection refused, unanswered or reset, a request unanswered, an
/// error status — what a probe of a starting or terminating pod meets.
fn probing_unready(e: &Entry, node: &str, server: Option<&PodRef>) -> bool {
    let failed = e.error.is_some() || e.response.as_ref().is_some_and(|r| r.status >= 400);
    let unready = server.is_some_and(|p| p.node.as_deref() == Some(node) && p.serving.not_serving_at(e.timestamp));
    failed && unready
}

/// Keeps `watched` equal to the TapConfigs' `watch.namespaces`.
async fn watch_tapconfigs(api: Api<TapConfig>, names: Arc<Names>) {
    let namespaces = |t: &TapConfig| -> BTreeSet<String> {
        t.spec.watch.iter().flat_map(|w| w.namespaces.iter().cloned()).collect()
    };
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut relist = HashMap::new();
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(t)) => {
                relist.insert(t.name_any(), namespaces(&t));
            }
            Ok(Event::InitDone) => {
                if let Ok(mut w) = names.watched.write() {
                    *w = std::mem::take(&mut relist);
                }
                names.taps_synced.store(true, Ordering::Relaxed);
            }
            Ok(Event::Apply(t)) => {
                if let Ok(mut w) = names.watched.write() {
                    w.insert(t.name_any(), namespaces(&t));
                }
            }
            Ok(Event::Delete(t)) => {
                if let Ok(mut w) = names.watched.write() {
                    w.remove(&t.name_any());
                }
            }
            Err(e) => tracing::warn!(error = %e, "TapConfig watch error (retrying)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_model::entry::{Endpoint, Protocol};
    use faultline_model::Timestamp;

    fn pod(name: &str, ns: &str, node: &str) -> PodRef {
        let serving = watch::Serving { ready: Some((true, Timestamp(0))), deleting: None };
        PodRef {
            name: name.into(),
            namespace: ns.into(),
            node: Some(node.into()),
            workload: Workload::new(WorkloadKind::Pod, name),
            serving,
        }
    }

    fn entry(src: &str, dst: &str, node: &str) -> Entry {
        let ep = |ip: &str, port| Endpoint::new(ip.parse().expect("ip"), Some(port));
        Entry { node: Some(node.into()), ..Entry::new(Protocol::Tcp, Timestamp(0), ep(src, 40000), ep(dst, 80)) }
    }

    #[test]
    fn cross_node_traffic_counts_once_from_the_destinations_node() {
        let n = Names::with(
            vec![("10.0.0.1", pod("client", "shop", "a")), ("10.0.1.1", pod("web", "shop", "b"))],
            vec![],
            vec![],
        );
        let both = |_: &str| true;
        let from_a = n.name("t", "a", &[], vec![entry("10.0.0.1", "10.0.1.1", "a")], both);
        assert_eq!((from_a.kept.len(), from_a.elsewhere), (0, 1), "node b reports it");
        let only_a = n.name("t", "a", &[], vec![entry("10.0.0.1", "10.0.1.1", "a")], |node| node == "a");
        assert_eq!(only_a.kept.len(), 1, "unless no agent of the TapConfig runs on node b");
        let from_b = n.name("t", "b", &[], vec![entry("10.0.0.1", "10.0.1.1", "b")], both);
        assert_eq!(from_b.kept.len(), 1);
        let e = &from_b.kept[0];
        assert_eq!((e.src.name.as_deref(), e.dst.name.as_deref()), (Some("client"), Some("web")));
        assert_eq!(e.dst.namespace.as_deref(), Some("shop"));
        // To the outside world: the client's node reports it; between unknown addresses: whoever saw it.
        assert_eq!(n.name("t", "a", &[], vec![entry("10.0.0.1", "203.0.113.9", "a")], both).kept.len(), 1);
        assert_eq!(n.name("t", "c", &[], vec![entry("198.51.100.1", "203.0.113.9", "c")], both).kept.len(), 1);
    }

    #[test]
    fn an_agent_pod_on_the_destinations_node_decides_even_before_it_reports() {
        // A process that has just started (a restart, a new lead term) has received nothing yet: if it
        // counted node a's copy because node b had not reported to it, node b's copy would count too.
        let n = Names::with_agents(
            vec![("10.0.0.1", pod("client", "shop", "a")), ("10.0.1.1", pod("web", "shop", "b"))],
            vec![],
            vec![],
            vec![("t", "a"), ("t", "b"), ("other", "a")],
        );
        let nothing_received = |_: &str| false;
        let from_a = n.name("t", "a", &[], vec![entry("10.0.0.1", "10.0.1.1", "a")], nothing_received);
        assert_eq!((from_a.kept.len(), from_a.elsewhere), (0, 1), "node b's agent runs: it reports it");
        let from_b = n.name("t", "b", &[], vec![entry("10.0.0.1", "10.0.1.1", "b")], nothing_received);
        assert_eq!(from_b.kept.len(), 1);
        let other = n.name("other", "a", &[], vec![entry("10.0.0.1", "10.0.1.1", "a")], nothing_received);
        assert_eq!(other.kept.len(), 1, "TapConfig other has no agent on node b: node a's copy is the only one");
    }

    #[test]
    fn the_service_addressed_is_named_and_unwatched_namespaces_dropped() {
        let svc = ServiceName { name: "web".into(), namespace: "shop".into() };
        let n = Names::with(
            vec![("10.0.0.1", pod("client", "shop", "a")), ("10.0.0.2", pod("job", "batch", "a"))],
            vec![("10.96.0.10", svc)],
            vec![("t", vec!["shop"])],
        );
        let batch = vec![entry("10.0.0.1", "10.96.0.10", "a"), entry("10.0.0.2", "203.0.113.9", "a")];
        let named = n.name("t", "a", &[], batch, |_| true);
        assert_eq!((named.kept.len(), named.unwatched), (1, 1));
        let s = named.kept[0].service.as_ref().expect("a Service");
        assert_eq!((s.name.as_deref(), s.namespace.as_deref(), s.port), (Some("web"), Some("shop"), 80));
        let other = n.name("other", "a", &[], vec![entry("10.0.0.2", "203.0.113.9", "a")], |_| true);
        assert_eq!(other.kept.len(), 1, "a TapConfig that names no namespace watches them all");
    }

    use std::net::IpAddr;

    fn at(secs: u64) -> Timestamp {
        Timestamp(secs * 1_000_000_000)
    }

    fn refused(src: &str, dst: &str, secs: u64) -> Entry {
        refused_on("a", src, dst, secs)
    }

    fn refused_on(node: &str, src: &str, dst: &str, secs: u64) -> Entry {
        let mut e = entry(src, dst, node);
        e.timestamp = at(secs);
        e.error = Some(faultline_model::entry::EntryError {
            kind: faultline_model::entry::ErrorType::Connection,
            msg: "SynSent".into(),
        });
        e
    }

    #[test]
    fn the_nodes_probes_of_a_pod_that_is_not_serving_are_not_errors_of_the_network() {
        // Became Ready at 100 s (to the second), deleted at 200 s.
        let mut web = pod("web", "shop", "a");
        web.serving = watch::Serving { ready: Some((true, at(100))), deleting: Some(at(200)) };
        let n = Names::with(vec![("10.0.0.2", web), ("10.0.0.1", pod("client", "shop", "a"))], vec![], vec![]);
        let bridge: IpAddr = "10.0.0.254".parse().expect("ip");
        let probe = |secs| n.name("t", "a", &[bridge], vec![refused("10.0.0.254", "10.0.0.2", secs)], |_| true);
        let starting = probe(99);
        assert_eq!((starting.kept.len(), starting.unready_probed), (0, 1), "refused before it was Ready");
        assert_eq!(probe(100).unready_probed, 1, "Ready at some moment of second 100: not before it ended");
        let serving = probe(150);
        assert_eq!((serving.kept.len(), serving.unready_probed), (1, 0), "a Ready pod refusing is an error");
        assert_eq!(serving.kept[0].src.workload.as_ref().map(Workload::as_str), Some("Node/a"), "the node itself");
        assert_eq!(probe(201).unready_probed, 1, "being deleted");
        // Another pod refused the same way is no probe; nor is the node's own address on another node.
        let from_pod = n.name("t", "a", &[bridge], vec![refused("10.0.0.1", "10.0.0.2", 99)], |_| true);
        assert_eq!((from_pod.kept.len(), from_pod.unready_probed), (1, 0));
        let unknown = n.name("t", "a", &[], vec![refused("10.0.0.254", "10.0.0.2", 99)], |_| true);
        assert_eq!(unknown.unready_probed, 1, "the node's addresses are remembered from its earlier batches");
        let elsewhere = n.name("t", "b", &[], vec![refused_on("b", "10.0.0.254", "10.0.0.2", 99)], |n| n == "b");
        assert_eq!(elsewhere.unready_probed, 0, "not node b's address, nor node b's pod");
    }

    #[test]
    fn a_deleted_pod_is_still_named_for_a_while() {
        let n = Names::default();
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        watch::bury(&n.gone, vec![(ip, pod("web", "shop", "a"))], std::time::Instant::now());
        let named = n.name("t", "a", &[], vec![entry("10.0.0.1", "10.0.0.2", "a")], |_| true);
        assert_eq!(named.kept[0].dst.name.as_deref(), Some("web"));
        let long_ago = std::time::Instant::now().checked_sub(watch::GONE_FOR + std::time::Duration::from_secs(1));
        if let Some(then) = long_ago {
            watch::bury(&n.gone, vec![(ip, pod("old", "shop", "a"))], then);
            let named = n.name("t", "a", &[], vec![entry("10.0.0.1", "10.0.0.2", "a")], |_| true);
            assert_eq!(named.kept[0].dst.name, None, "forgotten after GONE_FOR");
        }
    }
}
