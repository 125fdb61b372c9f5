//! The watches that keep `State`: Pods, Services, NetworkPolicies and Namespaces, cluster-wide. An
//! object deleted is kept (marked gone) for `GONE_FOR_MS`: its errors arrive after it.

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

pub fn start(client: Client, state: Arc<RwLock<State>>) {
    tokio::spawn(follow::<Pod>(Api::all(client.clone()), state.clone()));
    tokio::spawn(follow::<Service>(Api::all(client.clone()), state.clone()));
    tokio::spawn(follow::<NetworkPolicy>(Api::all(client.clone()), state.clone()));
    tokio::spawn(follow::<Namespace>(Api::all(client), state));
}

async fn follow<K: Kind>(api: Api<K>, state: Arc<RwLock<State>>) {
    let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listed: HashSet<(String, String)> = HashSet::new();
    let mut known: HashSet<(String, String)> = HashSet::new();
    while let Some(ev) = stream.next().await {
        let Ok(mut s) = state.write() else { return };
        match ev {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(o)) => {
                listed.insert(key(&o));
                K::apply(&mut s, &o);
            }
            Ok(Event::InitDone) => {
                // What a re-list no longer has was deleted while the watch was away.
                for (ns, name) in known.difference(&listed) {
                    K::delete(&mut s, ns, name);
                }
                known = std::mem::take(&mut listed);
                K::synced(&mut s.synced);
                s.prune(now());
            }
            Ok(Event::Apply(o)) => {
                known.insert(key(&o));
                K::apply(&mut s, &o);
            }
            Ok(Event::Delete(o)) => {
                let (ns, name) = key(&o);
                K::delete(&mut s, &ns, &name);
                known.remove(&(ns, name));
            }
            Err(e) => tracing::warn!(error = %e, what = K::WHAT, "cause watch error (retrying)"),
        }
    }
}
