//! `POST /api/v1/ingest`: batches from agents. Only agents may write: the bearer token must be a
//! ServiceAccount token (checked with a TokenReview) of a `faultline-agent-<tapconfig>` ServiceAccount in
//! the operator's namespace. Reviews are cached for a minute so the API server sees one per agent per
//! minute, not one per batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use faultline_core::ingest::Batch;
use kube::Client;
use sha2::{Digest, Sha256};

use crate::store::{Accepted, Store};

const CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Ingest {
    pub client: Client,
    pub namespace: String,
    pub store: Arc<Store>,
    /// Only the leader counts entries; a standby refuses them so agents retry (and reach the leader).
    pub leading: Arc<AtomicBool>,
    metrics: Arc<crate::metrics::Metrics>,
    cache: Arc<Mutex<ReviewCache>>,
}

/// Token digest → (the TapConfig its agent belongs to, or none; when reviewed).
type ReviewCache = HashMap<[u8; 32], (Option<String>, Instant)>;

impl Ingest {
    pub fn new(
        client: Client,
        namespace: String,
        store: Arc<Store>,
        leading: Arc<AtomicBool>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Ingest {
        Ingest { client, namespace, store, leading, metrics, cache: Arc::default() }
    }

    /// The TapConfig whose agent holds this token, or `None` when the token is not an agent's.
    async fn authenticate(&self, token: &str) -> Result<Option<String>, kube::Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((who, at)) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if at.elapsed() < CACHE_TTL {
                return Ok(who);
            }
        }
        let user = crate::auth::review(&self.client, token).await?.and_then(|u| u.username).unwrap_or_default();
        let prefix = format!("system:serviceaccount:{}:faultline-agent-", self.namespace);
        let who = user.strip_prefix(&prefix).filter(|tap| !tap.is_empty()).map(str::to_owned);
        if let Ok(mut c) = self.cache.lock() {
            c.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            c.insert(key, (who.clone(), Instant::now()));
        }
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
    if !ingest.leading.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not the leader; retry\n".into());
    }
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a batch: {e}\n")),
    };
    let node = batch.node.clone();
    match ingest.store.ingest(&tap, batch, crate::clock::now()) {
        Accepted::New(n) => {
            ingest.metrics.entries_ingested.inc_by(n as u64);
            tracing::debug!(%tap, %node, entries = n, "batch accepted");
            (StatusCode::OK, format!("accepted {n}\n"))
        }
        Accepted::Duplicate => (StatusCode::OK, "duplicate batch ignored\n".into()),
    }
}
