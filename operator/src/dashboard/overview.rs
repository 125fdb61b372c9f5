//! `GET /api/overview?q=KFL&minutes=15` — what the wall screen shows: the matching entries of the last
//! `minutes` (1 to 60) by minute and kind, and the workload pairs with the most of them, each with the KFL
//! query that narrows the view to it (click-to-filter). The page asks again every few seconds.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query as UrlQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use faultline_model::entry::Endpoint;
use faultline_model::kind::Kind;
use faultline_model::{Entry, Timestamp};
use serde::{Deserialize, Serialize};

use super::api::{matching, Dashboard};

pub(super) const DEFAULT_MINUTES: u64 = 15;
pub(super) const MAX_MINUTES: u64 = 60;
const TOP_PAIRS: usize = 10;
pub(super) const MINUTE_NS: u64 = 60_000_000_000;

/// A query and a window of minutes: the wall's and the map's parameters.
#[derive(Deserialize)]
pub struct Params {
    #[serde(default)]
    pub(super) q: String,
    pub(super) minutes: Option<u64>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Minute buckets, oldest first; `start` is the bucket's first instant.
    pub buckets: Vec<Bucket>,
    /// Every kind in the window with its total (the sum of the buckets).
    pub kinds: BTreeMap<String, u64>,
    pub total: u64,
    pub pairs: Vec<Pair>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Bucket {
    pub start: String,
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Pair {
    pub source: String,
    pub destination: String,
    pub count: u64,
    /// The KFL that selects this pair's entries (to add to the current query).
    pub query: String,
}

/// An end as the wall shows it (`namespace/Kind/name` for a pod, else its address) and the KFL that
/// selects it on side `side` (`src` or `dst`).
pub(super) fn end(ep: &Endpoint, side: &str) -> (String, String) {
    let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    match (&ep.namespace, &ep.workload, &ep.name) {
        (Some(ns), Some(w), _) => (
            format!("{ns}/{w}"),
            format!("{side}.namespace == {} and {side}.workload == {}", quoted(ns), quoted(w.as_str())),
        ),
        (Some(ns), None, Some(name)) => {
            (format!("{ns}/{name}"), format!("{side}.namespace == {} and {side}.name == {}", quoted(ns), quoted(name)))
        }
        _ => (ep.ip.to_string(), format!("{side}.ip == \"{}\"", ep.ip)),
    }
}

/// The overview of `entries` (already those the caller may see and the query matches) for the `minutes`
/// up to `now`.
pub fn overview<'a>(entries: impl Iterator<Item = &'a Entry>, now: Timestamp, minutes: u64) -> Overview {
    let minutes = minutes.clamp(1, MAX_MINUTES);
    // Buckets end with the minute that holds `now`.
    let last = now.0 / MINUTE_NS;
    let first = last + 1 - minutes;
    let mut counts: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); minutes as usize];
    let mut kinds = BTreeMap::new();
    let mut pairs: HashMap<(String, String), (u64, String)> = HashMap::new();
    let mut total = 0;
    for e in entries {
        let minute = e.timestamp.0 / MINUTE_NS;
        if minute < first || minute > last {
            continue;
        }
        let kind = Kind::of(e).to_string();
        *counts[(minute - first) as usize].entry(kind.clone()).or_default() += 1;
        *kinds.entry(kind).or_default() += 1;
        total += 1;
        let ((src, src_q), (dst, dst_q)) = (end(&e.src, "src"), end(&e.dst, "dst"));
        pairs.entry((src, dst)).or_insert_with(|| (0, format!("{src_q} and {dst_q}"))).0 += 1;
    }
    let buckets = counts
        .into_iter()
        .enumerate()
        .map(|(i, counts)| Bucket { start: Timestamp((first + i as u64) * MINUTE_NS).to_string(), counts })
        .collect();
    let mut pairs: Vec<Pair> = pairs
        .into_iter()
        .map(|((source, destination), (count, query))| Pair { source, destination, count, query })
        .collect();
    pairs.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| (&a.source, &a.destination).cmp(&(&b.source, &b.destination)))
    });
    pairs.truncate(TOP_PAIRS);
    Overview { buckets, kinds, total, pairs }
}

pub async fn handle(State(a): State<Dashboard>, UrlQuery(p): UrlQuery<Params>, headers: HeaderMap) -> Response {
    let m = match matching(&a, &p.q, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let matched = m.entries.iter().map(|e| e.as_ref()).filter(|e| m.matches(e));
    Json(overview(matched, crate::clock::now(), p.minutes.unwrap_or(DEFAULT_MINUTES))).into_response()
}

#[cfg(test)]
mod tests {
    use faultline_model::entry::{EntryError, ErrorType, Protocol, SynReason, TcpInfo, TcpState};

    use super::*;

    fn reset(at_ns: u64, client: &str, server: &str) -> Entry {
        let pod = |ip: &str, w: &str| Endpoint {
            namespace: Some("shop".into()),
            name: Some(format!("{}-1", w.to_lowercase())),
            workload: Some(faultline_model::entry::Workload::new(faultline_model::entry::WorkloadKind::Deployment, w)),
            ..Endpoint::new(ip.parse().expect("ip"), Some(80))
        };
        let mut e = Entry::new(Protocol::Tcp, Timestamp(at_ns), pod("10.0.0.1", client), pod("10.0.0.2", server));
        e.tcp = Some(TcpInfo { state: TcpState::Reset, reason: None, by: None });
        e.error = Some(EntryError { kind: ErrorType::Connection, msg: "Reset".into() });
        e
    }

    #[test]
    fn entries_are_bucketed_by_minute_and_kind_and_pairs_ranked_with_their_query() {
        let now = Timestamp(100 * MINUTE_NS + 30_000_000_000);
        let mut refused = reset(100 * MINUTE_NS, "client", "web");
        refused.tcp = Some(TcpInfo { state: TcpState::SynSent, reason: Some(SynReason::Refused), by: None });
        let entries = [
            reset(99 * MINUTE_NS + 1, "client", "web"),
            reset(100 * MINUTE_NS + 2, "client", "web"),
            refused,
            reset(98 * MINUTE_NS, "batch", "db"),
            reset(80 * MINUTE_NS, "old", "db"), // before the window
        ];
        let o = overview(entries.iter(), now, 15);
        assert_eq!(o.buckets.len(), 15);
        assert_eq!(o.total, 4);
        assert_eq!(o.kinds, BTreeMap::from([("tcp/Reset".into(), 3), ("tcp/SynSent".into(), 1)]));
        let last = &o.buckets[14];
        assert_eq!(last.start, Timestamp(100 * MINUTE_NS).to_string());
        assert_eq!(last.counts, BTreeMap::from([("tcp/Reset".into(), 1), ("tcp/SynSent".into(), 1)]));
        assert_eq!(o.buckets[13].counts.get("tcp/Reset"), Some(&1));
        assert_eq!(o.pairs[0].source, "shop/Deployment/client");
        assert_eq!((o.pairs[0].destination.as_str(), o.pairs[0].count), ("shop/Deployment/web", 3));
        let q = faultline_kfl::Query::parse(&o.pairs[0].query).expect("a query");
        assert_eq!(entries.iter().filter(|e| q.matches(*e)).count(), 3, "the pair's query selects its entries");
        assert_eq!(overview(entries.iter(), now, 0).buckets.len(), 1, "at least a minute");
    }
}
