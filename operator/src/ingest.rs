//! `POST /api/v1/ingest`: batches from agents. Only agents may write: the bearer token must be a
//! ServiceAccount token (checked with a TokenReview) of a `faultline-agent-<tapconfig>` ServiceAccount in
//! the operator's namespace. Reviews are cached for a minute so the API server sees one per agent per
//! minute, not one per batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use faultline_core::ingest::Batch;
use kube::Client;

use crate::review_cache::{token_digest, ReviewCache};
use crate::store::{Accepted, Store};

const CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Ingest {
    pub client: Client,
    pub namespace: String,
    pub store: Arc<Store>,
    /// Only the leader counts entries; a standby refuses them so agents retry (and reach the leader).
    pub leading: Arc<AtomicBool>,
    /// The views that count every accepted entry as it arrives.
    pub views: Arc<crate::errorview::live::Views>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Token digest → the TapConfig its agent belongs to, or none.
    cache: ReviewCache<[u8; 32], Option<String>>,
}

impl Ingest {
    pub fn new(
        client: Client,
        namespace: String,
        store: Arc<Store>,
        leading: Arc<AtomicBool>,
        views: Arc<crate::errorview::live::Views>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Ingest {
        Ingest { client, namespace, store, leading, views, metrics, cache: ReviewCache::new(CACHE_TTL) }
    }

    /// The TapConfig whose agent holds this token, or `None` when the token is not an agent's.
    async fn authenticate(&self, token: &str) -> Result<Option<String>, kube::Error> {
        let key = token_digest(token);
        if let Some(who) = self.cache.get(&key) {
            return Ok(who);
        }
        let user = crate::auth::review(&self.client, token).await?.and_then(|u| u.username).unwrap_or_default();
        let prefix = format!("system:serviceaccount:{}:faultline-agent-", self.namespace);
        let who = user.strip_prefix(&prefix).filter(|tap| !tap.is_empty()).map(str::to_owned);
        self.cache.put(key, who.clone());
        Ok(who)
    }
}

pub async fn handle(State(ingest): State<Ingest>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let Some(token) = crate::auth::bearer(&headers) else {
        return (StatusCode::UNAUTHORIZED, "a bearer token of an agent ServiceAccount is required\n".into());
    };
    let tap = match ingest.authenticate(token).await {
        Ok(Some(tap)) => tap,
        Ok(None) => return (StatusCode::FORBIDDEN, "only Faultline agents may send entries\n".into()),
        Err(e) => {
            tracing::warn!(error = %e, "TokenReview failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "cannot verify the token now; retry\n".into());
        }
    };
    // Not before the views are counting: an entry accepted now would be counted nowhere.
    if !ingest.leading.load(Ordering::Relaxed) || !ingest.views.active() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not the leader; retry\n".into());
    }
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a batch: {e}\n")),
    };
    let node = batch.node.clone();
    match ingest.store.ingest(&tap, batch, crate::clock::now()) {
        Accepted::New(entries) => {
            let n = entries.len();
            ingest.views.observe(&entries);
            ingest.metrics.entries_ingested.inc_by(n as u64);
            tracing::debug!(%tap, %node, entries = n, "batch accepted");
            (StatusCode::OK, format!("accepted {n}\n"))
        }
        Accepted::Duplicate => (StatusCode::OK, "duplicate batch ignored\n".into()),
    }
}
