//! The dashboard's JSON API over the store of recent entries:
//! - `GET /api/entries?q=KFL&limit=N` — matching entries, newest (by timestamp) first, with counts by kind
//!   of all matches;
//! - `GET /api/entries/stream?q=KFL` — new matching entries as server-sent events (`event: entry`), and
//!   `event: dropped` (data: how many) when the client fell so far behind that entries were overwritten;
//! - `GET /api/entries/{id}` — one entry;
//! - `GET /api/errorviews` — the ErrorViews (saved queries) the caller may read.
//!
//! A query that does not parse is answered 400 with the parser's message and column.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use faultline_crds::ErrorView;
use faultline_kfl::{ParseError, Query};
use faultline_model::Entry;
use futures::Stream;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};

use super::access::{namespaces_of, Access, Scope, Viewer};
use crate::errorview::view::{kind_of, summary};
use crate::store::Store;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Entries a live stream reads from the store at a time. The stream is only polled when the client has
/// taken what was sent before (TCP back-pressure), so this bounds what a slow client costs; what the
/// store overwrites before the client catches up is announced as `event: dropped`, never silently lost.
const STREAM_STEP: usize = 256;

#[derive(Clone)]
pub struct Dashboard {
    pub client: Client,
    pub store: Arc<Store>,
    pub access: Access,
    /// Becomes true when the process stops: live streams end so that shutdown need not wait for them.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

#[derive(Deserialize)]
pub struct Params {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

impl Params {
    /// The parameters of a call made in-process (the MCP tools).
    pub fn new(q: String, limit: Option<usize>) -> Params {
        Params { q, limit }
    }
}

/// An entry as the dashboard shows it: every field of the entry, plus its kind and a one-line summary.
#[derive(Serialize)]
pub struct Shown<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
    kind: String,
    summary: String,
}

impl<'a> Shown<'a> {
    fn of(entry: &'a Entry) -> Shown<'a> {
        Shown { entry, kind: kind_of(entry), summary: summary(entry) }
    }
}

#[derive(Serialize)]
struct Listing<'a> {
    query: &'a str,
    /// Matching entries the store holds (the list shows at most `limit` of them).
    total: usize,
    counts: BTreeMap<String, u64>,
    entries: Vec<Shown<'a>>,
}

/// The query of a request; an empty one matches everything.
fn parse(q: &str) -> Result<Option<Query>, ParseError> {
    if q.trim().is_empty() {
        return Ok(None);
    }
    Query::parse(q).map(Some)
}

fn bad_query(e: ParseError) -> Response {
    let body = serde_json::json!({"error": e.to_string(), "message": e.message, "column": e.column});
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// What every query endpoint starts with: the query (a bad one is the caller's 400, checked first so
/// that it costs no review) and who is asking.
async fn query_and_viewer(a: &Dashboard, q: &str, headers: &HeaderMap) -> Result<(Option<Query>, Viewer), Response> {
    let query = parse(q).map_err(bad_query)?;
    let viewer = a.access.viewer(headers).await.map_err(IntoResponse::into_response)?;
    Ok((query, viewer))
}

fn matches(q: &Option<Query>, scope: &Scope, e: &Entry) -> bool {
    scope.sees(e) && q.as_ref().is_none_or(|q| q.matches(e))
}

/// What an endpoint over the whole store works on: every entry held (in arrival order), and which of
/// them the caller asked for and may see.
pub(super) struct Matching {
    pub entries: Vec<Arc<Entry>>,
    query: Option<Query>,
    scope: Scope,
}

impl Matching {
    pub fn matches(&self, e: &Entry) -> bool {
        matches(&self.query, &self.scope, e)
    }
}

pub(super) async fn matching(a: &Dashboard, q: &str, headers: &HeaderMap) -> Result<Matching, Response> {
    let (query, viewer) = query_and_viewer(a, q, headers).await?;
    let entries = a.store.snapshot();
    let scope = a
        .access
        .scope(&viewer, namespaces_of(entries.iter().map(|e| e.as_ref())))
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Matching { entries, query, scope })
}

pub async fn list(State(a): State<Dashboard>, UrlQuery(p): UrlQuery<Params>, headers: HeaderMap) -> Response {
    let m = match matching(&a, &p.q, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let mut listing = Listing { query: &p.q, total: 0, counts: BTreeMap::new(), entries: Vec::new() };
    // Newest by when the trouble began, not by when it was decided: a SYN timeout arrives seconds after
    // the SYN. Arrival order breaks ties (the store is in arrival order; iterated newest first).
    let mut matched: Vec<&Entry> = m.entries.iter().rev().map(|e| e.as_ref()).filter(|e| m.matches(e)).collect();
    for e in &matched {
        *listing.counts.entry(kind_of(e)).or_default() += 1;
    }
    listing.total = matched.len();
    matched.sort_by_key(|e| std::cmp::Reverse(e.timestamp));
    listing.entries = matched.into_iter().take(limit).map(Shown::of).collect();
    Json(listing).into_response()
}

pub async fn one(State(a): State<Dashboard>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let viewer = match a.access.viewer(&headers).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let not_found = || (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "no such entry"}))).into_response();
    let Some(e) = a.store.get(&id) else { return not_found() };
    match a.access.scope(&viewer, namespaces_of([e.as_ref()])).await {
        // An entry the caller may not see is answered as if it did not exist: no hint of other namespaces.
        Ok(scope) if scope.sees(&e) => Json(Shown::of(&e)).into_response(),
        Ok(_) => not_found(),
        Err(r) => r.into_response(),
    }
}

pub async fn stream(State(a): State<Dashboard>, UrlQuery(p): UrlQuery<Params>, headers: HeaderMap) -> Response {
    let (query, viewer) = match query_and_viewer(&a, &p.q, &headers).await {
        Ok(qv) => qv,
        Err(r) => return r,
    };
    let scope = match a.access.scope(&viewer, []).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let mut head = a.store.subscribe();
    let cursor = *head.borrow_and_update();
    let closing = a.closing.clone();
    let state = Live { api: a, viewer, scope, query, cursor, head, closing, pending: VecDeque::new() };
    Sse::new(live(state)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}

struct Live {
    api: Dashboard,
    viewer: Viewer,
    scope: Scope,
    query: Option<Query>,
    cursor: u64,
    head: tokio::sync::watch::Receiver<u64>,
    closing: tokio::sync::watch::Receiver<bool>,
    /// Matching entries read but not yet sent, oldest first (at most `STREAM_STEP` + 1).
    pending: VecDeque<Event>,
}

/// New matching entries, oldest first, as they arrive; ends when the caller's access can no longer be
/// checked (the page reconnects) or the process stops.
fn live(state: Live) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(ev) = s.pending.pop_front() {
                return Some((Ok(ev), s));
            }
            if *s.closing.borrow() {
                return None;
            }
            let caught_up = s.cursor >= *s.head.borrow();
            if caught_up {
                tokio::select! {
                    changed = s.head.changed() => if changed.is_err() { return None },
                    _ = closed(&mut s.closing) => return None,
                }
            }
            let read = s.api.store.since_bounded(s.cursor, STREAM_STEP);
            s.cursor = read.cursor;
            if read.missed > 0 {
                s.pending.push_back(Event::default().event("dropped").data(read.missed.to_string()));
            }
            for e in &read.entries {
                if s.api.access.extend(&s.viewer, &mut s.scope, e).await.is_err() {
                    return None;
                }
                if matches(&s.query, &s.scope, e) {
                    let json = serde_json::to_string(&Shown::of(e)).unwrap_or_default();
                    s.pending.push_back(Event::default().event("entry").data(json));
                }
            }
        }
    })
}

/// Resolves once the process stops (never, if nobody can stop it).
async fn closed(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[derive(Serialize)]
struct SavedQuery {
    namespace: String,
    name: String,
    query: String,
    matched: i64,
}

pub async fn errorviews(State(a): State<Dashboard>, headers: HeaderMap) -> Response {
    let viewer = match a.access.viewer(&headers).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let views = match Api::<ErrorView>::all(a.client.clone()).list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            let body = serde_json::json!({"error": format!("cannot list ErrorViews: {e}")});
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    };
    let scope = match a.access.scope(&viewer, views.iter().filter_map(|v| v.metadata.namespace.as_deref())).await {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let mut out: Vec<SavedQuery> = views
        .iter()
        .filter(|v| scope.everything || v.namespace().is_some_and(|ns| scope.namespaces.contains(&ns)))
        .map(|v| SavedQuery {
            namespace: v.namespace().unwrap_or_default(),
            name: v.name_any(),
            query: v.spec.query.clone(),
            matched: v.status.as_ref().map_or(0, |s| s.matched),
        })
        .collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Json(out).into_response()
}
