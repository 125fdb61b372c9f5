//! Leader election on a `coordination.k8s.io/v1` Lease, so that two replicas can run and only one acts.
//! The holder renews every `renew`; a lease not renewed for `duration` may be taken over. A leader that
//! cannot renew in time steps down (the process exits and is restarted as a candidate), as
//! controller-runtime does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
    renew: Duration,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: String) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity,
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(2),
        }
    }

    /// Campaigns forever: `true` on the channel while this process leads, `false` once leadership is lost
    /// (another replica took the lease, or it could not be renewed within the lease duration) — and then
    /// campaigns again.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let mut last_renewal: Option<tokio::time::Instant> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewal = Some(tokio::time::Instant::now());
                    if !*leading.borrow() {
                        tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                    }
                    leading.send_replace(true);
                }
                Ok(false) => {
                    if *leading.borrow() {
                        tracing::error!("lost the lease to another replica");
                        leading.send_replace(false);
                        last_renewal = None;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease update failed");
                    if *leading.borrow() && last_renewal.is_some_and(|t| t.elapsed() > self.duration) {
                        tracing::error!("could not renew the lease in time; stepping down");
                        leading.send_replace(false);
                        last_renewal = None;
                    }
                }
            }
            tokio::time::sleep(self.renew).await;
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": self.duration.as_secs(),
                    "acquireTime": MicroTime(now), "renewTime": MicroTime(now), "leaseTransitions": 0,
                },
            }))
            .map_err(kube::Error::SerdeError)?;
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let held_by_me = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
        let expired = match &spec.renew_time {
            Some(MicroTime(t)) => now.as_second() - t.as_second() > duration,
            None => true,
        };
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
        spec.lease_duration_seconds = Some(self.duration.as_secs() as i32);
        // `replace` carries the resourceVersion we read: if another replica wrote in between, we lose.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up on shutdown so another replica need not wait for it to expire.
    pub async fn release(api_client: Client, namespace: &str, name: &str, identity: &str) {
        let api: Api<Lease> = Api::namespaced(api_client, namespace);
        if let Ok(Some(lease)) = api.get_opt(name).await {
            if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(identity) {
                let patch = json!({"spec": {"holderIdentity": null, "renewTime": null}});
                if let Err(e) = api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::warn!(error = %e, "could not release the lease");
                }
            }
        }
    }
}
