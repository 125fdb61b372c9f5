//! What the operator needs to know about Pods and Services, kept by watches: pod IPs to names,
//! namespaces and nodes; Service ClusterIPs to Service names; which nodes run a TapConfig's agent.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, ResourceExt};

use faultline_model::entry::{Workload, WorkloadKind};
use faultline_model::Timestamp;

use crate::clock::from_api;
use crate::tapconfig::build::TAPCONFIG_LABEL;

/// A pod as far as entries care: its name, namespace, node and workload, and when it could serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub node: Option<String>,
    /// What runs the pod (see `workload`).
    pub workload: Workload,
    pub serving: Serving,
}

/// When a pod could serve, from its `Ready` condition and its deletion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Serving {
    /// The `Ready` condition: its status, and when it last changed (to the second, as the API keeps it).
    pub ready: Option<(bool, Timestamp)>,
    /// When the pod's deletion began.
    pub deleting: Option<Timestamp>,
}

impl Serving {
    fn of(p: &Pod) -> Serving {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status == "True", c.last_transition_time.as_ref().map_or(Timestamp(0), |t| from_api(&t.0))));
        Serving { ready, deleting: p.metadata.deletion_timestamp.as_ref().map(|t| from_api(&t.0)) }
    }

    /// Whether the pod was not serving at `t`: not yet Ready (starting), no longer Ready, or being deleted.
    /// A condition's time is kept to the second: a pod that became Ready during the second `since` is
    /// taken as not ready until the second is over; one that stopped being Ready then, as ready before.
    pub fn not_serving_at(&self, t: Timestamp) -> bool {
        if self.deleting.is_some_and(|d| d <= t) {
            return true;
        }
        match self.ready {
            Some((true, since)) => t < since.plus_millis(1_000),
            Some((false, since)) => t >= since,
            None => true,
        }
    }
}

/// The workload a pod belongs to, as `Kind/name`, from its controller (owner reference) alone — no
/// further lookups: a ReplicaSet whose name is its Deployment's plus the pod's `pod-template-hash` is
/// that Deployment; a Job named like a CronJob's run (`<cronjob>-<minutes since the epoch>`) is that
/// CronJob. These names are what stays the same across rollouts and runs, unlike pod names.
pub fn workload(p: &Pod) -> Workload {
    let owner = p.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    let Some(o) = owner else { return Workload::new(WorkloadKind::Pod, &p.name_any()) };
    match o.kind.as_str() {
        "ReplicaSet" => {
            let hash = p.labels().get("pod-template-hash");
            match hash.and_then(|h| o.name.strip_suffix(h.as_str())?.strip_suffix('-')) {
                Some(deployment) if !deployment.is_empty() => Workload::new(WorkloadKind::Deployment, deployment),
                _ => Workload::new(WorkloadKind::ReplicaSet, &o.name),
            }
        }
        "Job" => match o.name.rsplit_once('-') {
            Some((cron, run)) if !cron.is_empty() && run.len() >= 8 && run.bytes().all(|b| b.is_ascii_digit()) => {
                Workload::new(WorkloadKind::CronJob, cron)
            }
            _ => Workload::new(WorkloadKind::Job, &o.name),
        },
        kind => Workload::new(WorkloadKind::of(kind), &o.name),
    }
}

/// A Service: its name and namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceName {
    pub name: String,
    pub namespace: String,
}

/// An agent pod's place: the `faultline.dev/tapconfig` label value of its TapConfig, and its node.
pub type AgentPlace = (String, String);

pub type Shared<Key, V> = Arc<RwLock<HashMap<Key, V>>>;
pub type ByIp<V> = Shared<IpAddr, V>;

/// A pod's IPs. Host-network pods share the node's address and cannot be told apart by IP; pods that have
/// finished (Succeeded, Failed: completed Jobs) keep their `podIP` in status, but CNIs give the address
/// to new pods — they are not who uses it now. A pod that finished *because it is being deleted* (a
/// rollout's old pod) keeps its address until the delete: its connections' errors arrive after it ended,
/// and the deletion buries it with its name for the minutes they take.
pub fn pod_entries(p: &Pod) -> Vec<(IpAddr, PodRef)> {
    let Some(st) = &p.status else { return Vec::new() };
    if p.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
        return Vec::new();
    }
    if matches!(st.phase.as_deref(), Some("Succeeded" | "Failed")) && p.metadata.deletion_timestamp.is_none() {
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
        workload: workload(p),
        serving: Serving::of(p),
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

/// A running agent pod's place, valued by the pod's name (two pods can share a place during a rollout).
/// Only a Running pod captures; a Pending one has not started, a finished one has stopped.
pub fn agent_entries(p: &Pod) -> Vec<(AgentPlace, String)> {
    let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let tap = p.labels().get(TAPCONFIG_LABEL);
    let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
    match (running, tap, node) {
        (true, Some(tap), Some(node)) => {
            vec![((tap.clone(), node), format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))]
        }
        _ => Vec::new(),
    }
}

/// A map kept equal to what a set of objects say. Each object's keys are remembered, so that an object
/// that changes (a pod that finishes, moves or loses its label) takes its old keys with it, not only
/// when it is deleted; a key another object has taken since is left to that object.
pub struct Index<Obj, Key, V> {
    map: Shared<Key, V>,
    held: HashMap<Obj, Vec<(Key, V)>>,
    relist: Option<HashMap<Obj, Vec<(Key, V)>>>,
}

impl<Obj: Eq + Hash, Key: Eq + Hash + Clone, V: Clone + PartialEq> Index<Obj, Key, V> {
    pub fn new(map: Shared<Key, V>) -> Self {
        Index { map, held: HashMap::new(), relist: None }
    }

    /// A re-list (after a disconnect) builds a fresh map, so objects deleted meanwhile do not linger.
    pub fn relist_start(&mut self) {
        self.relist = Some(HashMap::new());
    }

    pub fn relisted(&mut self, obj: Obj, entries: Vec<(Key, V)>) {
        self.relist.get_or_insert_with(HashMap::new).insert(obj, entries);
    }

    pub fn relist_done(&mut self) {
        self.held = self.relist.take().unwrap_or_default();
        if let Ok(mut m) = self.map.write() {
            m.clear();
            for (k, v) in self.held.values().flatten() {
                m.insert(k.clone(), v.clone());
            }
        }
    }

    pub fn apply(&mut self, obj: Obj, entries: Vec<(Key, V)>) {
        let old = self.held.remove(&obj).unwrap_or_default();
        if let Ok(mut m) = self.map.write() {
            for (k, v) in &old {
                if m.get(k) == Some(v) {
                    m.remove(k);
                }
            }
            for (k, v) in &entries {
                m.insert(k.clone(), v.clone());
            }
        }
        if !entries.is_empty() {
            self.held.insert(obj, entries);
        }
    }

    /// Forgets `obj`; returns what it held.
    pub fn delete(&mut self, obj: &Obj) -> Vec<(Key, V)> {
        let old = self.held.remove(obj).unwrap_or_default();
        if let Ok(mut m) = self.map.write() {
            for (k, v) in &old {
                if m.get(k) == Some(v) {
                    m.remove(k);
                }
            }
        }
        old
    }
}

/// How long a deleted object is remembered: entries about a pod often arrive after it is gone (a timer
/// decided them, a batch was in flight, the pod's deletion caused them).
pub const GONE_FOR: std::time::Duration = std::time::Duration::from_secs(300);
/// Deleted objects remembered at most.
const MAX_GONE: usize = 65_536;

/// Objects deleted in the last `GONE_FOR`, by key, with when they went.
pub type Gone<Key, V> = Shared<Key, (V, std::time::Instant)>;

/// Remembers what a deleted object held, forgetting what went longer ago than `GONE_FOR`.
pub fn bury<Key: Eq + Hash, V>(gone: &Gone<Key, V>, entries: Vec<(Key, V)>, now: std::time::Instant) {
    if entries.is_empty() {
        return;
    }
    let Ok(mut g) = gone.write() else { return };
    if g.len() + entries.len() > MAX_GONE / 2 {
        g.retain(|_, (_, at)| now.duration_since(*at) < GONE_FOR);
    }
    for (k, v) in entries {
        if g.len() < MAX_GONE {
            g.insert(k, (v, now));
        }
    }
}

/// Keeps `map` equal to what the objects of `api` (those `config` selects) say; `synced` once it has
/// listed them. What a deleted object held goes to `gone`, if given (its last state: the object as
/// deleted, else as last seen).
/// Something else fed by the same watch (the causes' state reads every pod too): one watch on the API
/// server instead of two.
pub type Also<K> = Option<Box<dyn FnMut(&Event<K>) + Send>>;

#[allow(clippy::too_many_arguments)]
pub async fn watch_index<K, Key, V>(
    api: Api<K>,
    config: watcher::Config,
    map: Shared<Key, V>,
    entries: fn(&K) -> Vec<(Key, V)>,
    gone: Option<Gone<Key, V>>,
    synced: Arc<AtomicBool>,
    what: &'static str,
    mut also: Also<K>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    Key: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + PartialEq + Send + Sync + 'static,
{
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let id = |o: &K| (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default());
    let mut index = Index::new(map);
    while let Some(ev) = stream.next().await {
        if let (Some(also), Ok(ev)) = (also.as_mut(), &ev) {
            also(ev);
        }
        match ev {
            Ok(Event::Init) => index.relist_start(),
            Ok(Event::InitApply(o)) => index.relisted(id(&o), entries(&o)),
            Ok(Event::InitDone) => {
                index.relist_done();
                synced.store(true, Ordering::Relaxed);
            }
            Ok(Event::Apply(o)) => index.apply(id(&o), entries(&o)),
            Ok(Event::Delete(o)) => {
                let held = index.delete(&id(&o));
                if let Some(gone) = &gone {
                    let last = entries(&o);
                    bury(gone, if last.is_empty() { held } else { last }, std::time::Instant::now());
                }
            }
            Err(e) => tracing::warn!(error = %e, "{what} watch error (retrying)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, ip: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {TAPCONFIG_LABEL: "default"}},
            "spec": {"nodeName": "b", "containers": []},
            "status": {"phase": phase, "podIP": ip},
        }))
        .expect("a pod")
    }

    #[test]
    fn a_pod_that_finishes_gives_up_its_address_and_its_agent_place() {
        let ips: ByIp<PodRef> = Default::default();
        let places: Shared<AgentPlace, String> = Default::default();
        let (mut by_ip, mut by_place) = (Index::new(ips.clone()), Index::new(places.clone()));
        let running = pod("job", "Running", "10.0.0.7");
        by_ip.apply("job", pod_entries(&running));
        by_place.apply("job", agent_entries(&running));
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        let place = ("default".to_owned(), "b".to_owned());
        assert!(ips.read().expect("lock").contains_key(&ip));
        assert!(places.read().expect("lock").contains_key(&place));
        let done = pod("job", "Succeeded", "10.0.0.7");
        by_ip.apply("job", pod_entries(&done));
        by_place.apply("job", agent_entries(&done));
        assert!(!ips.read().expect("lock").contains_key(&ip), "finished: its address is someone else's now");
        // A rollout's old pod finishes because it is being deleted: named until the delete buries it.
        let mut deleting = pod("web", "Failed", "10.0.0.8");
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        by_ip.apply("web", pod_entries(&deleting));
        assert!(ips.read().expect("lock").contains_key(&"10.0.0.8".parse::<IpAddr>().expect("ip")));
        assert!(!places.read().expect("lock").contains_key(&place), "a finished agent captures nothing");
    }

    #[test]
    fn workloads_are_named_by_what_outlives_the_pod() {
        let owned = |kind: &str, name: &str, hash: Option<&str>| -> Pod {
            let mut labels = serde_json::Map::new();
            if let Some(h) = hash {
                labels.insert("pod-template-hash".into(), h.into());
            }
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "shop", "labels": labels, "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true}]},
            }))
            .expect("a pod")
        };
        assert_eq!(workload(&owned("ReplicaSet", "web-5d9c8b7f4", Some("5d9c8b7f4"))).as_str(), "Deployment/web");
        assert_eq!(workload(&owned("ReplicaSet", "web-5d9c8b7f4", None)).as_str(), "ReplicaSet/web-5d9c8b7f4");
        assert_eq!(workload(&owned("StatefulSet", "db", None)).as_str(), "StatefulSet/db");
        assert_eq!(workload(&owned("Job", "backup-29481230", None)).as_str(), "CronJob/backup");
        assert_eq!(workload(&owned("Job", "migrate", None)).as_str(), "Job/migrate");
        assert_eq!(workload(&pod("bare", "Running", "10.0.0.9")).as_str(), "Pod/bare");
    }

    #[test]
    fn a_key_taken_by_another_object_stays_with_it() {
        let places: Shared<AgentPlace, String> = Default::default();
        let mut index = Index::new(places.clone());
        let place = ("default".to_owned(), "b".to_owned());
        // A rollout: the new agent pod runs before the old one is deleted.
        index.apply("old", vec![(place.clone(), "old".to_owned())]);
        index.apply("new", vec![(place.clone(), "new".to_owned())]);
        index.delete(&"old");
        assert_eq!(places.read().expect("lock").get(&place).map(String::as_str), Some("new"));
        // A re-list that no longer has the new pod forgets it.
        index.relist_start();
        index.relist_done();
        assert!(places.read().expect("lock").is_empty());
    }
}
