//! What keeps `State`: Pods, Services, NetworkPolicies and Namespaces, cluster-wide — Pods and Services
//! from the naming module's own watches (fed through `Also`), the others watched here. An object
//! deleted is kept (marked gone) for `GONE_FOR_MS`: its errors arrive after it.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};

use super::state::{NamespaceState, PodState, PolicyState, ServiceState, State, Synced};
use crate::clock::now;
use crate::naming::Also;

/// How one kind updates the state.
trait Kind: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static {
    const WHAT: &'static str;
    fn apply(state: &mut State, obj: &Self);
    fn delete(state: &mut State, namespace: &str, name: &str);
    fn synced(s: &mut Synced);
}

impl Kind for Pod {
    const WHAT: &'static str = "pod";
    fn apply(state: &mut State, p: &Pod) {
        state.apply_pod(PodState::from_pod(p), now());
    }
    fn delete(state: &mut State, namespace: &str, name: &str) {
        state.delete_pod(namespace, name, now());
    }
    fn synced(s: &mut Synced) {
        s.pods = true;
    }
}

impl Kind for Service {
    const WHAT: &'static str = "service";
    fn apply(state: &mut State, s: &Service) {
        state.apply_service(ServiceState::from_service(s), now());
    }
    fn delete(state: &mut State, namespace: &str, name: &str) {
        state.delete_service(namespace, name, now());
    }
    fn synced(s: &mut Synced) {
        s.services = true;
    }
}

impl Kind for NetworkPolicy {
    const WHAT: &'static str = "networkpolicy";
    fn apply(state: &mut State, p: &NetworkPolicy) {
        let seen = now();
        state.apply_policy(PolicyState::from_policy(p, seen), seen);
    }
    fn delete(state: &mut State, namespace: &str, name: &str) {
        state.delete_policy(namespace, name, now());
    }
    fn synced(s: &mut Synced) {
        s.policies = true;
    }
}

impl Kind for Namespace {
    const WHAT: &'static str = "namespace";
    fn apply(state: &mut State, n: &Namespace) {
        state.apply_namespace(n.name_any(), NamespaceState::from_namespace(n), now());
    }
    fn delete(state: &mut State, _: &str, name: &str) {
        state.delete_namespace(name, now());
    }
    fn synced(s: &mut Synced) {
        s.namespaces = true;
    }
}

/// Pods and Services come from the naming module's watches (one watch of each kind on the API server);
/// NetworkPolicies and Namespaces are watched here.
pub fn start(client: Client, state: Arc<RwLock<State>>) -> (Also<Pod>, Also<Service>) {
    tokio::spawn(follow::<NetworkPolicy>(Api::all(client.clone()), state.clone()));
    tokio::spawn(follow::<Namespace>(Api::all(client), state.clone()));
    let mut pods = Follower::<Pod>::new(state.clone());
    let mut services = Follower::<Service>::new(state);
    (Some(Box::new(move |ev| pods.on(ev))), Some(Box::new(move |ev| services.on(ev))))
}

async fn follow<K: Kind>(api: Api<K>, state: Arc<RwLock<State>>) {
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut follower = Follower::<K>::new(state);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(ev) => follower.on(&ev),
            Err(e) => tracing::warn!(error = %e, what = K::WHAT, "cause watch error (retrying)"),
        }
    }
}

/// One kind's events applied to the state, re-lists included: what a re-list no longer has was deleted
/// while the watch was away.
struct Follower<K> {
    state: Arc<RwLock<State>>,
    listed: HashSet<(String, String)>,
    known: HashSet<(String, String)>,
    kind: std::marker::PhantomData<K>,
}

impl<K: Kind> Follower<K> {
    fn new(state: Arc<RwLock<State>>) -> Follower<K> {
        Follower { state, listed: HashSet::new(), known: HashSet::new(), kind: std::marker::PhantomData }
    }

    fn on(&mut self, ev: &Event<K>) {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        let Ok(mut s) = self.state.write() else { return };
        match ev {
            Event::Init => self.listed.clear(),
            Event::InitApply(o) => {
                self.listed.insert(key(o));
                K::apply(&mut s, o);
            }
            Event::InitDone => {
                for (ns, name) in self.known.difference(&self.listed) {
                    K::delete(&mut s, ns, name);
                }
                self.known = std::mem::take(&mut self.listed);
                K::synced(&mut s.synced);
                s.prune(now());
            }
            Event::Apply(o) => {
                self.known.insert(key(o));
                K::apply(&mut s, o);
            }
            Event::Delete(o) => {
                let (ns, name) = key(o);
                K::delete(&mut s, &ns, &name);
                self.known.remove(&(ns, name));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": []},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
        }))
        .expect("a pod")
    }

    #[test]
    fn a_relist_that_no_longer_has_a_pod_marks_it_gone_and_the_kind_synced() {
        let state = Arc::new(RwLock::new(State::default()));
        let mut f = Follower::<Pod>::new(state.clone());
        f.on(&Event::Init);
        f.on(&Event::InitApply(pod("a", "10.0.0.1")));
        f.on(&Event::InitApply(pod("b", "10.0.0.2")));
        f.on(&Event::InitDone);
        let gone = |name: &str| {
            state.read().expect("lock").pods.get(&("shop".to_owned(), name.to_owned())).map(|p| p.gone.is_some())
        };
        assert!(state.read().expect("lock").synced.pods);
        assert_eq!((gone("a"), gone("b")), (Some(false), Some(false)));
        // The watch was away while b was deleted: the next re-list says so.
        f.on(&Event::Init);
        f.on(&Event::InitApply(pod("a", "10.0.0.1")));
        f.on(&Event::InitDone);
        assert_eq!((gone("a"), gone("b")), (Some(false), Some(true)));
        f.on(&Event::Delete(pod("a", "10.0.0.1")));
        assert_eq!(gone("a"), Some(true));
    }
}
