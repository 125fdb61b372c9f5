//! `POST /api/v1/ingest`: batches from agents. Only agents may write: the bearer token must be a
//! ServiceAccount token for audience `faultline.dev/ingest` (checked with a TokenReview) of a
//! `faultline-agent-<tapconfig>` ServiceAccount in the operator's namespace.
//!
//! Whoever can reach the Service can call this, so nothing is spent on a caller before it is known:
//! the token is checked before the body is read; answers are cached (a minute for agents, ten seconds for
//! strangers) so the API server sees one review per agent per minute, not one per batch; reviews of
//! unknown tokens are rate-limited; and only so many batches are read and applied at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use faultline_model::ingest::{Batch, INGEST_AUDIENCE};
use kube::Client;
use tokio::sync::Semaphore;

use crate::review_cache::{token_digest, ReviewCache};
use crate::store::{Accepted, Store};
use crate::throttle::TokenBucket;

/// The largest batch accepted (agents cap theirs at 8 MiB).
pub const MAX_BODY_BYTES: usize = 32 << 20;
const AGENT_TTL: Duration = Duration::from_secs(60);
const STRANGER_TTL: Duration = Duration::from_secs(10);
/// Batches read and applied at once; more wait for their agent's retry.
const CONCURRENT_BATCHES: usize = 32;
/// TokenReviews for tokens not in the cache: a burst (every agent after a restart) and then a rate.
const REVIEW_BURST: u32 = 200;
const REVIEWS_PER_SECOND: u32 = 25;

/// What the operator knows of the cluster that entries need.
#[derive(Clone)]
pub struct Cluster {
    /// Names entries' pods and Services, and decides which copy of a cross-node entry counts.
    pub names: Arc<crate::naming::Names>,
    /// Gives errors their cause from the cluster's state (SPEC §3.7).
    pub causes: Arc<crate::cause::Explainer>,
}

/// Where accepted entries go besides the store and the metrics.
#[derive(Clone)]
pub struct Outputs {
    /// The views that count every accepted entry as it arrives.
    pub views: Arc<crate::errorview::live::Views>,
    /// The OTLP exporters, per TapConfig.
    pub exports: Arc<crate::export::Exports>,
}

#[derive(Clone)]
pub struct Ingest {
    pub client: Client,
    pub namespace: String,
    pub store: Arc<Store>,
    /// Only the leader counts entries; a standby refuses them so agents retry (and reach the leader).
    pub leading: Arc<AtomicBool>,
    pub outputs: Outputs,
    pub cluster: Cluster,
    metrics: Arc<crate::metrics::Metrics>,
    /// Token digest → the TapConfig its agent belongs to.
    agents: ReviewCache<[u8; 32], String>,
    /// Digests of tokens that are not an agent's.
    strangers: ReviewCache<[u8; 32], ()>,
    reviews: Arc<TokenBucket>,
    batches: Arc<Semaphore>,
}

/// Who is calling, as far as ingest is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Caller {
    Agent(String),
    Stranger,
    /// Too many unknown tokens right now: the review was not made.
    Throttled,
}

impl Ingest {
    pub fn new(
        client: Client,
        namespace: String,
        store: Arc<Store>,
        leading: Arc<AtomicBool>,
        outputs: Outputs,
        cluster: Cluster,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Ingest {
        Ingest {
            client,
            namespace,
            store,
            leading,
            outputs,
            cluster,
            metrics,
            agents: ReviewCache::new(AGENT_TTL),
            strangers: ReviewCache::new(STRANGER_TTL),
            reviews: Arc::new(TokenBucket::new(REVIEW_BURST, REVIEWS_PER_SECOND)),
            batches: Arc::new(Semaphore::new(CONCURRENT_BATCHES)),
        }
    }

    async fn authenticate(&self, token: &str) -> Result<Caller, kube::Error> {
        let key = token_digest(token);
        if let Some(tap) = self.agents.get(&key) {
            return Ok(Caller::Agent(tap));
        }
        if self.strangers.get(&key).is_some() {
            return Ok(Caller::Stranger);
        }
        if !self.reviews.take() {
            self.metrics.refused("throttled");
            return Ok(Caller::Throttled);
        }
        let user = crate::auth::review(&self.client, token, Some(INGEST_AUDIENCE)).await?;
        match agent_of(user.and_then(|u| u.username).as_deref(), &self.namespace) {
            Some(tap) => {
                self.agents.put(key, tap.clone());
                Ok(Caller::Agent(tap))
            }
            None => {
                self.strangers.put(key, ());
                Ok(Caller::Stranger)
            }
        }
    }
}

/// The TapConfig whose agent a ServiceAccount user name is, if it is one.
fn agent_of(user: Option<&str>, namespace: &str) -> Option<String> {
    let prefix = format!("system:serviceaccount:{namespace}:faultline-agent-");
    user?.strip_prefix(&prefix).filter(|tap| !tap.is_empty()).map(str::to_owned)
}

fn answer(code: StatusCode, text: impl Into<String>) -> Response {
    (code, text.into()).into_response()
}

/// A refusal that tells the agent to come back through the Service, where the leader is: closing the
/// connection stops a kept-alive connection from pinning the agent to this replica.
fn elsewhere(text: &'static str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CONNECTION, "close"), (header::RETRY_AFTER, "1")], text).into_response()
}

pub async fn handle(State(ingest): State<Ingest>, req: Request) -> Response {
    let Some(token) = crate::auth::bearer(req.headers()) else {
        return answer(StatusCode::UNAUTHORIZED, "a bearer token of an agent ServiceAccount is required\n");
    };
    let tap = match ingest.authenticate(token).await {
        Ok(Caller::Agent(tap)) => tap,
        Ok(Caller::Stranger) => {
            ingest.metrics.refused("forbidden");
            return answer(StatusCode::FORBIDDEN, "only Faultline agents may send entries\n");
        }
        Ok(Caller::Throttled) => {
            return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "too many new tokens; retry\n")
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "TokenReview failed");
            return answer(StatusCode::SERVICE_UNAVAILABLE, "cannot verify the token now; retry\n");
        }
    };
    // Not before the views are counting: an entry accepted now would be counted nowhere.
    if !ingest.leading.load(Ordering::Relaxed) || !ingest.outputs.views.active() {
        ingest.metrics.refused("standby");
        return elsewhere("not the leader; retry\n");
    }
    // Nor before pods can be named: an entry named wrongly would be counted in the wrong namespace.
    if !ingest.cluster.names.ready() {
        ingest.metrics.refused("naming");
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "not ready; retry\n").into_response();
    }
    let Ok(_permit) = ingest.batches.clone().try_acquire_owned() else {
        ingest.metrics.refused("busy");
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], "busy; retry\n").into_response();
    };
    let body = match axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            ingest.metrics.refused("too_large");
            return answer(StatusCode::PAYLOAD_TOO_LARGE, format!("batch not read: {e}\n"));
        }
    };
    let mut batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            ingest.metrics.refused("malformed");
            return answer(StatusCode::BAD_REQUEST, format!("not a batch: {e}\n"));
        }
    };
    drop(body);
    let node = batch.node.clone();
    let reporting = |other: &str| ingest.store.reports(&tap, other);
    let entries = std::mem::take(&mut batch.entries);
    let named = ingest.cluster.names.name(&tap, &node, &batch.node_addresses, entries, reporting);
    ingest.metrics.entries_not_counted(named.elsewhere, named.unwatched, named.unready_probed);
    batch.entries = named.kept;
    let explained = ingest.cluster.causes.explain(&mut batch.entries);
    ingest.metrics.causes(&explained);
    let kept: std::collections::HashSet<&str> = batch.entries.iter().map(|e| e.id.as_str()).collect();
    batch.pcaps.retain(|id, _| kept.contains(id.as_str()));
    drop(kept);
    // The state may not have caught up with errors this fresh (a container's death is reported a relist
    // later): those are held back and asked again, the rest of the batch goes on now — their recordings
    // are stored with it.
    let held = ingest.cluster.causes.hold_unsettled(&mut batch.entries, crate::clock::now());
    ingest.metrics.causes_not_held(ingest.cluster.causes.take_not_held());
    match ingest.store.ingest(&tap, batch, crate::clock::now()) {
        Accepted::New(entries) => {
            let n = entries.len() + held.as_ref().map_or(0, |(h, _)| h.len());
            counted(&ingest, &tap, &entries);
            if let Some((mut held, wait)) = held {
                let (ingest, tap) = (ingest.clone(), tap.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    ingest.metrics.causes(&ingest.cluster.causes.explain(&mut held));
                    ingest.cluster.causes.released(held.len());
                    let entries = ingest.store.add_later(held);
                    counted(&ingest, &tap, &entries);
                });
            }
            tracing::debug!(%tap, %node, entries = n, "batch accepted");
            answer(StatusCode::OK, format!("accepted {n}\n"))
        }
        Accepted::Duplicate => {
            // Counted when the batch first came: what was held of it now is not.
            if let Some((h, _)) = &held {
                ingest.cluster.causes.released(h.len());
            }
            answer(StatusCode::OK, "duplicate batch ignored\n")
        }
    }
}

/// Stored entries, counted where they are counted: the views, the metrics, the export.
fn counted(ingest: &Ingest, tap: &str, entries: &[std::sync::Arc<faultline_model::Entry>]) {
    ingest.outputs.views.observe(entries);
    ingest.outputs.exports.observe(tap, entries);
    ingest.metrics.entries.observe(entries);
    ingest.metrics.entries_ingested.inc_by(entries.len() as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_agent_service_accounts_of_this_namespace_are_agents() {
        let ns = "faultline-system";
        assert_eq!(
            agent_of(Some("system:serviceaccount:faultline-system:faultline-agent-web"), ns),
            Some("web".into())
        );
        assert_eq!(agent_of(Some("system:serviceaccount:other:faultline-agent-web"), ns), None);
        assert_eq!(agent_of(Some("system:serviceaccount:faultline-system:faultline-agent-"), ns), None);
        assert_eq!(agent_of(Some("system:serviceaccount:faultline-system:faultline-operator"), ns), None);
        assert_eq!(agent_of(Some("admin"), ns), None);
        assert_eq!(agent_of(None, ns), None);
    }
}
