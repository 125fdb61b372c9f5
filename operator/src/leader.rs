//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas can run and only one acts —
//! the client-go algorithm:
//! - a holder renews every `retry`, and every attempt is bounded in time (a hung request is a failed one);
//! - a holder that has not renewed within `renew_deadline` steps down, and the deadline is shorter than
//!   the lease duration, so it has stopped acting before anyone else may take the lease;
//! - a candidate takes the lease only when the record has not changed for `duration` by its own clock
//!   (never by comparing its clock with the holder's `renewTime`, which clock skew would fool).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A holder that could not renew for this long steps down (< `LEASE_DURATION`).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Time between attempts.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// The longest one attempt may take while not leading.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The lease record last read (holder, renew time, transitions), and when this process first saw it.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Elector {
        Elector { api: Api::namespaced(client, namespace), name: name.to_owned(), identity, observed: None }
    }

    /// Campaigns until `stop`: `true` on the channel while this process leads, `false` once leadership is
    /// lost (another replica took the lease, or it could not be renewed before the renew deadline) — and
    /// then campaigns again. Sends `false` before it returns.
    pub async fn run(mut self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            // A holder's attempt ends by its renew deadline; a candidate's in `ATTEMPT_TIMEOUT`.
            let budget = match last_renewal {
                Some(t) if *leading.borrow() => {
                    RENEW_DEADLINE.saturating_sub(t.elapsed()).max(Duration::from_millis(100))
                }
                _ => ATTEMPT_TIMEOUT,
            };
            let attempt = tokio::time::timeout(budget, self.try_acquire_or_renew());
            let outcome = tokio::select! {
                r = attempt => r,
                _ = stop.wait_for(|s| *s) => break,
            };
            match outcome {
                Ok(Ok(true)) => {
                    last_renewal = Some(Instant::now());
                    if !*leading.borrow() {
                        tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    }
                    leading.send_replace(true);
                }
                Ok(Ok(false)) => {
                    if *leading.borrow() {
                        tracing::error!("lost the lease to another replica");
                        leading.send_replace(false);
                        last_renewal = None;
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease update failed"),
                Err(_) => tracing::warn!(after = ?budget, "lease update timed out"),
            }
            if *leading.borrow() && last_renewal.is_none_or(|t| t.elapsed() >= RENEW_DEADLINE) {
                tracing::error!("could not renew the lease before the renew deadline; stepping down");
                leading.send_replace(false);
                last_renewal = None;
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_PERIOD) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        leading.send_replace(false);
    }

    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let record = format!("{:?}/{:?}/{:?}", spec.holder_identity, spec.renew_time, spec.lease_transitions);
        let first_seen = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let held_by_me = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let duration = u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15);
        let expired = first_seen.elapsed() > Duration::from_secs(duration);
        let vacant = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        if !held_by_me && !expired && !vacant {
            return Ok(false);
        }
        if !held_by_me {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        // `replace` carries the resourceVersion we read: if another replica wrote in between, we lose.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up on shutdown so another replica need not wait for it to expire. Only after the
    /// elector has stopped, or it would take the lease straight back.
    pub async fn release(api_client: Client, namespace: &str, name: &str, identity: &str) {
        let api: Api<Lease> = Api::namespaced(api_client, namespace);
        let release = async {
            if let Ok(Some(lease)) = api.get_opt(name).await {
                if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(identity) {
                    let patch = json!({"spec": {"holderIdentity": null, "renewTime": null}});
                    if let Err(e) = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                        tracing::warn!(error = %e, "could not release the lease");
                    }
                }
            }
        };
        if tokio::time::timeout(ATTEMPT_TIMEOUT, release).await.is_err() {
            tracing::warn!("releasing the lease timed out; it will expire");
        }
    }
}

/// The label the leader puts on its own pod; the Service selects it, so agents and dashboard users reach
/// the replica that holds the data.
pub const LEADER_LABEL: &str = "faultline.dev/leader";

/// Marks (or unmarks) this replica's pod as the leader. Best effort: a standby answers 503 with
/// `Connection: close`, so a stale mark costs a retry, not data.
pub async fn mark_pod(client: &Client, namespace: &str, pod: &str, leading: bool) {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let value = if leading { json!("true") } else { serde_json::Value::Null };
    let patch = json!({"metadata": {"labels": {LEADER_LABEL: value}}});
    match tokio::time::timeout(ATTEMPT_TIMEOUT, api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))).await {
        Ok(Ok(_)) => tracing::info!(%pod, leading, "leader label set"),
        Ok(Err(e)) => tracing::warn!(%pod, error = %e, "could not label this pod"),
        Err(_) => tracing::warn!(%pod, "labelling this pod timed out"),
    }
}
