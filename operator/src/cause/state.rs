//! The cluster as causes need it, at the time of each entry: pods (with their ports, readiness,
//! deletion and container terminations, kept for `GONE_FOR` after they are deleted), Services,
//! NetworkPolicies and namespaces — each kept with when it came and went, so that an object created
//! after an error is never taken for its cause. Built from typed objects by pure functions; the
//! watches (`watch.rs`) only apply them.
//!
//! The API keeps these times to the second: a policy created at 12.6 s says 12 s, and an error at
//! 12.4 s would seem to come after it. So a moment the API states is taken as the end of its second —
//! or, when that is later, the moment the watch saw the change (it cannot have happened after that).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use faultline_model::Timestamp;

use super::selector::Labels;
use crate::clock::from_api;

/// How long deleted objects are remembered (entries arrive seconds after what they saw; a rollout's
/// errors come while its old pods go).
pub const GONE_FOR_MS: u64 = 5 * 60 * 1000;
/// Terminations remembered per pod.
const MAX_TERMINATIONS: usize = 8;

/// (namespace, name)
pub type Key = (String, String);

/// A container port a pod declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub container: String,
    pub name: Option<String>,
    pub port: u16,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
}

/// A container that terminated: which, why, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Termination {
    pub container: String,
    /// `OOMKilled`, `Error`, `Completed`, …
    pub reason: Option<String>,
    pub exit_code: i32,
    pub finished: Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodState {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub ips: Vec<IpAddr>,
    pub node: Option<String>,
    pub host_network: bool,
    pub ports: Vec<Port>,
    pub created: Timestamp,
    /// The `Ready` condition and when it last changed.
    pub ready: Option<(bool, Timestamp)>,
    /// When its deletion began (`deletionTimestamp` minus the grace period asked: the moment of the
    /// delete call), and what asked for it (an eviction's `DisruptionTarget` reason).
    pub deleting: Option<Timestamp>,
    pub disruption: Option<String>,
    /// Its controller, as (kind, name).
    pub owner: Option<(String, String)>,
    pub terminations: Vec<Termination>,
    /// When it left the API (deleted for good), as the watch saw it.
    pub gone: Option<Timestamp>,
}

impl PodState {
    pub fn from_pod(p: &Pod) -> PodState {
        let spec = p.spec.as_ref();
        let status = p.status.as_ref();
        let ports = spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| {
                c.ports.iter().flatten().filter_map(move |port| {
                    Some(Port {
                        container: c.name.clone(),
                        name: port.name.clone(),
                        port: u16::try_from(port.container_port).ok()?,
                        protocol: port.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    })
                })
            })
            .collect();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| (c.status == "True", c.last_transition_time.as_ref().map_or(Timestamp(0), |t| from_api(&t.0))));
        let disruption = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "DisruptionTarget" && c.status == "True"))
            .and_then(|c| c.reason.clone());
        let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(0).max(0) as u64;
        let deleting = p.metadata.deletion_timestamp.as_ref().map(|t| {
            let at = from_api(&t.0);
            Timestamp(at.0.saturating_sub(grace.saturating_mul(1_000_000_000)))
        });
        let mut terminations = Vec::new();
        for cs in status.iter().flat_map(|s| s.container_statuses.iter().flatten()) {
            let states = [cs.state.as_ref(), cs.last_state.as_ref()];
            for t in states.into_iter().flatten().filter_map(|s| s.terminated.as_ref()) {
                if let Some(finished) = &t.finished_at {
                    terminations.push(Termination {
                        container: cs.name.clone(),
                        reason: t.reason.clone(),
                        exit_code: t.exit_code,
                        finished: from_api(&finished.0),
                    });
                }
            }
        }
        let owner = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| (o.kind.clone(), o.name.clone()));
        PodState {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            labels: p.labels().clone(),
            ips: status.iter().flat_map(|s| s.pod_ips.iter().flatten()).filter_map(|i| i.ip.parse().ok()).collect(),
            node: spec.and_then(|s| s.node_name.clone()),
            host_network: spec.and_then(|s| s.host_network) == Some(true),
            ports,
            created: p.metadata.creation_timestamp.as_ref().map_or(Timestamp(0), |t| from_api(&t.0)),
            ready,
            deleting,
            disruption,
            owner,
            terminations,
            gone: None,
        }
    }

    /// Whether the pod existed at `t`.
    pub fn existed_at(&self, t: Timestamp) -> bool {
        self.created <= t && self.gone.is_none_or(|g| t <= g)
    }

    /// Why the pod was not serving at `t`, if it was not: being deleted, not Ready, or never Ready.
    pub fn not_serving_at(&self, t: Timestamp) -> Option<String> {
        if let Some(d) = self.deleting.filter(|d| *d <= t) {
            return Some(format!("terminating since {d}"));
        }
        match self.ready {
            Some((true, since)) if t < since => Some("not Ready yet".to_owned()),
            Some((true, _)) => None,
            Some((false, since)) if t >= since => Some(format!("not Ready since {since} (readiness failing)")),
            Some((false, _)) => None,
            None => Some("no Ready condition (not started)".to_owned()),
        }
    }

    /// The ports declared for `protocol`.
    pub fn declares(&self, port: u16, protocol: &str) -> bool {
        self.ports.iter().any(|p| p.port == port && p.protocol == protocol)
    }

    /// A named port, resolved for `protocol`.
    pub fn named_port(&self, name: &str, protocol: &str) -> Option<u16> {
        self.ports.iter().find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol).map(|p| p.port)
    }

    /// Merges terminations seen before (a restart replaces `lastState`; the earlier one still happened).
    pub fn keep_terminations(&mut self, before: &PodState) {
        for t in &before.terminations {
            if !self.terminations.contains(t) {
                self.terminations.push(t.clone());
            }
        }
        self.terminations.sort_by_key(|t| std::cmp::Reverse(t.finished));
        self.terminations.truncate(MAX_TERMINATIONS);
    }
}

/// A Service port: its number, name, protocol and target on the pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: String,
    pub target: Target,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Number(u16),
    Name(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceState {
    pub namespace: String,
    pub name: String,
    pub cluster_ips: Vec<IpAddr>,
    pub selector: Option<Labels>,
    pub ports: Vec<ServicePort>,
    pub created: Timestamp,
    pub gone: Option<Timestamp>,
}

impl ServiceState {
    pub fn from_service(s: &Service) -> ServiceState {
        let spec = s.spec.as_ref();
        let ports = spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                let target = match &p.target_port {
                    Some(IntOrString::String(name)) => Target::Name(name.clone()),
                    Some(IntOrString::Int(n)) => Target::Number(u16::try_from(*n).ok()?),
                    None => Target::Number(port),
                };
                Some(ServicePort {
                    name: p.name.clone(),
                    port,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    target,
                })
            })
            .collect();
        let cluster_ips = spec
            .iter()
            .flat_map(|s| s.cluster_ips.iter().flatten().chain(s.cluster_ip.iter()))
            .filter_map(|ip| ip.parse().ok())
            .collect::<std::collections::BTreeSet<IpAddr>>()
            .into_iter()
            .collect();
        ServiceState {
            namespace: s.namespace().unwrap_or_default(),
            name: s.name_any(),
            cluster_ips,
            selector: spec.and_then(|s| s.selector.clone()).filter(|s| !s.is_empty()),
            ports,
            created: s.metadata.creation_timestamp.as_ref().map_or(Timestamp(0), |t| from_api(&t.0)),
            gone: None,
        }
    }

    pub fn existed_at(&self, t: Timestamp) -> bool {
        self.created <= t && self.gone.is_none_or(|g| t <= g)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyState {
    pub namespace: String,
    pub name: String,
    pub spec: NetworkPolicySpec,
    pub created: Timestamp,
    /// When its spec last changed, as the watch saw it: before that, what it said is not known.
    pub changed: Timestamp,
    pub gone: Option<Timestamp>,
}

impl PolicyState {
    pub fn from_policy(p: &NetworkPolicy, seen: Timestamp) -> PolicyState {
        let created = p.metadata.creation_timestamp.as_ref().map_or(Timestamp(0), |t| from_api(&t.0));
        PolicyState {
            namespace: p.namespace().unwrap_or_default(),
            name: p.name_any(),
            spec: p.spec.clone().unwrap_or_default(),
            created,
            changed: if p.metadata.generation.unwrap_or(1) <= 1 { created } else { seen },
            gone: None,
        }
    }

    /// Whether it was in force at `t`; `None` when its spec at `t` is not known (it changed since).
    pub fn in_force_at(&self, t: Timestamp) -> Option<bool> {
        if t < self.created || self.gone.is_some_and(|g| t > g) {
            return Some(false);
        }
        (t >= self.changed).then_some(true)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceState {
    pub labels: Labels,
    pub created: Timestamp,
    pub gone: Option<Timestamp>,
}

impl NamespaceState {
    pub fn from_namespace(n: &Namespace) -> NamespaceState {
        NamespaceState {
            labels: n.labels().clone(),
            created: n.metadata.creation_timestamp.as_ref().map_or(Timestamp(0), |t| from_api(&t.0)),
            gone: None,
        }
    }
}

/// Everything the rules read. Each collection is complete once its watch has listed (`synced`).
#[derive(Clone, Debug, Default)]
pub struct State {
    pub pods: HashMap<Key, PodState>,
    /// Pods by address: every pod that had it in the last minutes (a new pod may reuse a deleted
    /// pod's address).
    pub pod_ips: HashMap<IpAddr, Vec<Key>>,
    pub services: HashMap<Key, ServiceState>,
    pub service_ips: HashMap<IpAddr, Key>,
    pub policies: HashMap<String, BTreeMap<String, PolicyState>>,
    pub namespaces: HashMap<String, NamespaceState>,
    /// The cluster's DNS domain (`cluster.local`).
    pub cluster_domain: String,
    pub synced: Synced,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    pub pods: bool,
    pub services: bool,
    pub policies: bool,
    pub namespaces: bool,
}

impl Synced {
    pub fn all(&self) -> bool {
        self.pods && self.services && self.policies && self.namespaces
    }
}

impl State {
    /// The pod that had `ip` at `t` (host-network pods share their node's address: never one of them).
    pub fn pod_at(&self, ip: &IpAddr, t: Timestamp) -> Option<&PodState> {
        self.pod_ips.get(ip)?.iter().filter_map(|k| self.pods.get(k)).find(|p| p.existed_at(t) && !p.host_network)
    }

    /// The Service whose ClusterIP is `ip`, if it existed at `t`.
    pub fn service_at(&self, ip: &IpAddr, t: Timestamp) -> Option<&ServiceState> {
        self.service_ips.get(ip).and_then(|k| self.services.get(k)).filter(|s| s.existed_at(t))
    }

    /// The pods of `namespace` a Service's selector chose at `t`.
    pub fn selected_pods<'a>(&'a self, svc: &'a ServiceState, t: Timestamp) -> impl Iterator<Item = &'a PodState> {
        self.pods.values().filter(move |p| {
            p.namespace == svc.namespace
                && p.existed_at(t)
                && super::selector::service_selects(svc.selector.as_ref(), &p.labels)
        })
    }

    /// A pod as the watch saw it at `observed`: its times settled (see the module's comment) the first
    /// time each is seen, and kept after.
    pub fn apply_pod(&mut self, mut p: PodState, observed: Timestamp) {
        let key = (p.namespace.clone(), p.name.clone());
        let settle = |t: Timestamp| settled(t, observed);
        let before = self.pods.get(&key);
        p.created = before.map_or_else(|| settle(p.created), |b| b.created);
        p.deleting = match (p.deleting, before.and_then(|b| b.deleting)) {
            (Some(_), Some(earlier)) => Some(earlier),
            (now, _) => now.map(settle),
        };
        p.ready = match (p.ready, before.and_then(|b| b.ready)) {
            (Some((status, _)), Some((was, since))) if status == was => Some((status, since)),
            (now, _) => now.map(|(status, since)| (status, settle(since))),
        };
        if let Some(before) = before {
            p.keep_terminations(before);
        }
        for ip in &p.ips {
            let holders = self.pod_ips.entry(*ip).or_default();
            if !holders.contains(&key) {
                holders.push(key.clone());
            }
        }
        self.pods.insert(key, p);
    }

    pub fn delete_pod(&mut self, namespace: &str, name: &str, at: Timestamp) {
        if let Some(p) = self.pods.get_mut(&(namespace.to_owned(), name.to_owned())) {
            p.gone.get_or_insert(at);
        }
    }

    pub fn apply_service(&mut self, mut s: ServiceState, observed: Timestamp) {
        let key = (s.namespace.clone(), s.name.clone());
        s.created = self.services.get(&key).map_or_else(|| settled(s.created, observed), |b| b.created);
        for ip in &s.cluster_ips {
            self.service_ips.insert(*ip, key.clone());
        }
        self.services.insert(key, s);
    }

    pub fn delete_service(&mut self, namespace: &str, name: &str, at: Timestamp) {
        if let Some(s) = self.services.get_mut(&(namespace.to_owned(), name.to_owned())) {
            s.gone.get_or_insert(at);
        }
    }

    pub fn apply_policy(&mut self, mut p: PolicyState, observed: Timestamp) {
        let namespace = self.policies.entry(p.namespace.clone()).or_default();
        match namespace.get(&p.name) {
            Some(before) => {
                p.created = before.created;
                if before.spec == p.spec && before.gone.is_none() {
                    p.changed = before.changed;
                }
            }
            None => {
                p.created = settled(p.created, observed);
                p.changed = p.changed.max(p.created);
            }
        }
        namespace.insert(p.name.clone(), p);
    }

    pub fn delete_policy(&mut self, namespace: &str, name: &str, at: Timestamp) {
        if let Some(p) = self.policies.get_mut(namespace).and_then(|ns| ns.get_mut(name)) {
            p.gone.get_or_insert(at);
        }
    }

    pub fn apply_namespace(&mut self, name: String, mut n: NamespaceState, observed: Timestamp) {
        n.created = self.namespaces.get(&name).map_or_else(|| settled(n.created, observed), |b| b.created);
        self.namespaces.insert(name, n);
    }

    pub fn delete_namespace(&mut self, name: &str, at: Timestamp) {
        if let Some(n) = self.namespaces.get_mut(name) {
            n.gone.get_or_insert(at);
        }
    }

    /// Forgets what went more than `GONE_FOR_MS` before `now`.
    pub fn prune(&mut self, now: Timestamp) {
        let old = |g: &Option<Timestamp>| g.is_some_and(|g| g.plus_millis(GONE_FOR_MS) < now);
        self.pods.retain(|_, p| !old(&p.gone));
        let pods = &self.pods;
        self.pod_ips.retain(|_, keys| {
            keys.retain(|k| pods.contains_key(k));
            !keys.is_empty()
        });
        self.services.retain(|_, s| !old(&s.gone));
        let services = &self.services;
        self.service_ips.retain(|_, k| services.contains_key(k));
        for ns in self.policies.values_mut() {
            ns.retain(|_, p| !old(&p.gone));
        }
        self.policies.retain(|_, ns| !ns.is_empty());
        self.namespaces.retain(|_, n| !old(&n.gone));
    }
}

/// A moment the API states to the second, taken as the end of that second — or as `observed`, when the
/// watch saw it sooner.
fn settled(t: Timestamp, observed: Timestamp) -> Timestamp {
    t.plus_millis(1_000).min(observed)
}
