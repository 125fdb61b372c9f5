//! Causes (SPEC §3.7): why an error happened, from the entry and the cluster's state at the entry's
//! time. `state.rs` keeps the state (fed by `watch.rs`), `netpol.rs` evaluates NetworkPolicies under
//! the API's semantics, and `rules/` holds one pure rule per reason. Only what the state proves is
//! claimed; what the state cannot say (not yet synced, changed since) is no cause, counted.

mod netpol;
mod rules;
mod selector;
mod state;
mod watch;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use faultline_model::{Entry, Timestamp};

/// How long after an error the state may still be catching up with it: the kubelet reports a container
/// that died (an OOM kill) on its next relist, about a second after the resets it caused — and an agent
/// may report those resets sooner. An error about a pod that found no cause is held back (the rest of its
/// batch goes on at once) and asked again once this long has passed since it happened.
pub const SETTLE: Duration = Duration::from_millis(2_500);

pub use state::State;

/// What explaining a batch found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Explained {
    pub causes: u64,
    /// Errors a rule could not judge for want of state.
    pub unknown: u64,
}

/// Entries held back at once, at most (about 1 KiB each): past it, fresh errors are counted at once with
/// the cause they have (an error storm must not become a memory one), and counted as `not_held`.
pub const MAX_HELD: usize = 10_000;

pub struct Explainer {
    state: Arc<RwLock<State>>,
    /// Entries held back now.
    held: std::sync::atomic::AtomicUsize,
    not_held: std::sync::atomic::AtomicU64,
}

impl Explainer {
    /// Starts the watches of NetworkPolicies and Namespaces, and returns what feeds the state from the
    /// naming module's watches of Pods and Services; until each has listed, errors get no cause
    /// (counted as unknown).
    pub fn start(
        client: kube::Client,
        cluster_domain: String,
    ) -> (
        Explainer,
        crate::naming::Also<k8s_openapi::api::core::v1::Pod>,
        crate::naming::Also<k8s_openapi::api::core::v1::Service>,
    ) {
        let state = Arc::new(RwLock::new(State { cluster_domain, ..State::default() }));
        let (pods, services) = watch::start(client, state.clone());
        (Explainer { state, held: Default::default(), not_held: Default::default() }, pods, services)
    }

    #[cfg(test)]
    pub fn with(state: State) -> Explainer {
        Explainer { state: Arc::new(RwLock::new(state)), held: Default::default(), not_held: Default::default() }
    }

    /// Takes out of `entries` the errors that found no cause and may yet — errors about a pod, younger
    /// than `SETTLE` at `now` — with how long to wait before asking again. `None`: nothing to hold back.
    pub fn hold_unsettled(&self, entries: &mut Vec<Entry>, now: Timestamp) -> Option<(Vec<Entry>, Duration)> {
        use std::sync::atomic::Ordering;
        let settle_ms = SETTLE.as_millis() as u64;
        let unsettled = |e: &Entry| {
            e.error.is_some()
                && e.cause.is_none()
                && (e.src.namespace.is_some() || e.dst.namespace.is_some())
                && e.timestamp.plus_millis(settle_ms) > now
        };
        let n = entries.iter().filter(|e| unsettled(e)).count();
        if n == 0 || self.held.fetch_add(n, Ordering::Relaxed) + n > MAX_HELD {
            if n > 0 {
                self.held.fetch_sub(n, Ordering::Relaxed);
                self.not_held.fetch_add(n as u64, Ordering::Relaxed);
            }
            return None;
        }
        let (held, rest): (Vec<Entry>, Vec<Entry>) = std::mem::take(entries).into_iter().partition(unsettled);
        *entries = rest;
        let settled = held.iter().map(|e| e.timestamp.plus_millis(settle_ms)).max()?;
        let wait = Duration::from_nanos(settled.nanos().saturating_sub(now.nanos())).min(SETTLE);
        Some((held, wait))
    }

    /// Held entries asked again: no longer held.
    pub fn released(&self, n: usize) {
        self.held.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Fresh errors not held back because `MAX_HELD` were (since the last call).
    pub fn take_not_held(&self) -> u64 {
        self.not_held.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// Gives each error entry the first cause a rule finds.
    pub fn explain(&self, entries: &mut [Entry]) -> Explained {
        let mut out = Explained::default();
        let Ok(state) = self.state.read() else { return out };
        for e in entries.iter_mut().filter(|e| e.error.is_some() && e.cause.is_none()) {
            if !state.synced.all() {
                out.unknown += 1;
                continue;
            }
            for rule in rules::RULES {
                match rule(e, &state) {
                    Ok(Some(c)) => {
                        e.cause = Some(c);
                        out.causes += 1;
                        break;
                    }
                    Ok(None) => {}
                    Err(netpol::Unknown(why)) => {
                        tracing::debug!(%why, "no cause: state unknown");
                        out.unknown += 1;
                        break;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rules::fixtures::*;

    #[test]
    fn the_first_rule_that_explains_wins_and_unsynced_state_explains_nothing() {
        let mut s = shop().with_policy(
            "shop",
            "web-9090",
            r#"{"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 9090}]}]}"#,
        );
        let mut batch = vec![syn_timeout(CART_IP, WEB_IP, 8080), refused(CART_IP, WEB_IP, 9090)];
        let x = Explainer::with(s.clone());
        assert_eq!(x.explain(&mut batch), Explained { causes: 0, unknown: 2 }, "nothing synced yet");
        s.synced = state::Synced { pods: true, services: true, policies: true, namespaces: true };
        let x = Explainer::with(s);
        let mut ok = syn_timeout(CART_IP, WEB_IP, 8080);
        ok.error = None;
        batch.push(ok);
        assert_eq!(x.explain(&mut batch), Explained { causes: 2, unknown: 0 });
        let reasons: Vec<_> = batch.iter().map(|e| e.cause.as_ref().map(|c| c.reason.as_str())).collect();
        assert_eq!(reasons, [Some("NetworkPolicyDenied"), Some("PortNotServed"), None]);
    }

    #[test]
    fn fresh_errors_about_a_pod_without_a_cause_are_held_until_the_state_settles() {
        let x = Explainer::with(shop());
        let mut about_a_pod = reset(CART_IP, WEB_IP, 8080);
        about_a_pod.dst.namespace = Some("shop".into());
        let mut outside = about_a_pod.clone();
        outside.dst.namespace = None;
        let mut fine = about_a_pod.clone();
        fine.error = None;
        let now = Timestamp(about_a_pod.timestamp.nanos() + 1_000_000_000);
        let mut batch = vec![about_a_pod.clone(), outside, fine];
        let (held, wait) = x.hold_unsettled(&mut batch, now).expect("one held back");
        assert_eq!((held.len(), batch.len(), wait), (1, 2, Duration::from_millis(1_500)));
        // Bounded: past MAX_HELD, fresh errors go on at once (counted).
        let mut storm: Vec<Entry> = (0..MAX_HELD).map(|_| about_a_pod.clone()).collect();
        assert_eq!(x.hold_unsettled(&mut storm, now), None, "1 held + 10,000 is past the bound");
        assert_eq!((storm.len(), x.take_not_held()), (MAX_HELD, MAX_HELD as u64));
        x.released(held.len());
        assert!(x.hold_unsettled(&mut storm, now).is_some(), "room again once released");
        let later = Timestamp(about_a_pod.timestamp.nanos() + 3_000_000_000);
        assert_eq!(x.hold_unsettled(&mut vec![about_a_pod], later), None, "settled already");
    }
}
