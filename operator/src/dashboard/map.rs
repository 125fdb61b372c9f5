//! `GET /api/map?q=KFL&minutes=15` — the error map: the workloads (and addresses outside the cluster)
//! that took part in errors in the last `minutes`, grouped by namespace, and an edge per client → server
//! pair with errors: how many, of which kinds, the cause most of them have (if any), and the KFL that
//! narrows the view to the pair. Only errors are drawn: a healthy pair is no edge.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query as UrlQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use faultline_model::entry::Endpoint;
use faultline_model::kind::Kind;
use faultline_model::{Entry, Timestamp};
use serde::Serialize;

use super::api::{matching, Dashboard};
use super::overview::{end, Params, DEFAULT_MINUTES, MAX_MINUTES, MINUTE_NS};

/// Edges drawn at most, the busiest first (a map of more is not read by anyone); the rest are counted.
pub const MAX_EDGES: usize = 200;

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Map {
    /// Namespaces in name order (`""`: addresses outside the cluster), each with its ends.
    pub namespaces: Vec<Namespace>,
    pub edges: Vec<Edge>,
    /// Errors on the map.
    pub total: u64,
    /// The window's errors that have a cause, by the cause's reason (each error counted by its own cause;
    /// the omitted pairs' too).
    pub causes: BTreeMap<String, u64>,
    /// Pairs left out past `MAX_EDGES`, and their errors.
    pub omitted_edges: usize,
    pub omitted_errors: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Namespace {
    pub name: String,
    /// The ends' ids (`namespace/Kind/name`, or an address), sorted.
    pub nodes: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub source: String,
    pub destination: String,
    pub count: u64,
    pub kinds: BTreeMap<String, u64>,
    /// The kind most of its errors are.
    pub top_kind: String,
    /// The cause's reason most of its errors have, where most have one.
    pub cause: Option<String>,
    /// The KFL that selects this pair's entries (to add to the current query).
    pub query: String,
}

#[derive(Default)]
struct Tally {
    count: u64,
    kinds: BTreeMap<String, u64>,
    causes: BTreeMap<String, u64>,
    query: String,
    namespaces: (String, String),
}

fn namespace(ep: &Endpoint) -> String {
    ep.namespace.clone().unwrap_or_default()
}

/// The map of `entries` (already those the caller may see and the query matches) for the `minutes` up
/// to `now`.
pub fn map<'a>(entries: impl Iterator<Item = &'a Entry>, now: Timestamp, minutes: u64) -> Map {
    let minutes = minutes.clamp(1, MAX_MINUTES);
    let since = now.0.saturating_sub(minutes * MINUTE_NS);
    let mut pairs: HashMap<(String, String), Tally> = HashMap::new();
    for e in entries.filter(|e| e.timestamp.0 >= since && e.timestamp <= now) {
        let kind = Kind::of(e);
        if !kind.is_error() {
            continue;
        }
        let ((src, src_q), (dst, dst_q)) = (end(&e.src, "src"), end(&e.dst, "dst"));
        let t = pairs.entry((src, dst)).or_insert_with(|| Tally {
            query: format!("{src_q} and {dst_q}"),
            namespaces: (namespace(&e.src), namespace(&e.dst)),
            ..Tally::default()
        });
        t.count += 1;
        *t.kinds.entry(kind.to_string()).or_default() += 1;
        if let Some(c) = &e.cause {
            *t.causes.entry(c.reason.as_str().to_owned()).or_default() += 1;
        }
    }
    let mut ranked: Vec<((String, String), Tally)> = pairs.into_iter().collect();
    ranked.sort_by(|(a, x), (b, y)| y.count.cmp(&x.count).then_with(|| a.cmp(b)));
    let mut causes = BTreeMap::new();
    for (reason, n) in ranked.iter().flat_map(|(_, t)| &t.causes) {
        *causes.entry(reason.clone()).or_default() += n;
    }
    let omitted = ranked.split_off(ranked.len().min(MAX_EDGES));
    let mut namespaces: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut total = 0;
    let edges = ranked
        .into_iter()
        .map(|((source, destination), t)| {
            namespaces.entry(t.namespaces.0.clone()).or_default().insert(source.clone());
            namespaces.entry(t.namespaces.1.clone()).or_default().insert(destination.clone());
            total += t.count;
            let most = |m: &BTreeMap<String, u64>| {
                m.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(k, n)| (k.clone(), *n))
            };
            let top_kind = most(&t.kinds).map(|(k, _)| k).unwrap_or_default();
            let cause = most(&t.causes).filter(|(_, n)| 2 * n > t.count).map(|(k, _)| k);
            Edge { source, destination, count: t.count, kinds: t.kinds, top_kind, cause, query: t.query }
        })
        .collect();
    Map {
        namespaces: namespaces
            .into_iter()
            .map(|(name, nodes)| Namespace { name, nodes: nodes.into_iter().collect() })
            .collect(),
        edges,
        total,
        causes,
        omitted_edges: omitted.len(),
        omitted_errors: omitted.iter().map(|(_, t)| t.count).sum(),
    }
}

pub async fn handle(State(a): State<Dashboard>, UrlQuery(p): UrlQuery<Params>, headers: HeaderMap) -> Response {
    let m = match matching(&a, &p.q, &headers).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let matched = m.entries.iter().map(|e| e.as_ref()).filter(|e| m.matches(e));
    Json(map(matched, crate::clock::now(), p.minutes.unwrap_or(DEFAULT_MINUTES))).into_response()
}

#[cfg(test)]
mod tests {
    use faultline_model::entry::{EntryError, ErrorType, Protocol, TcpInfo, TcpState, Workload, WorkloadKind};
    use faultline_model::{Cause, CauseReason};

    use super::*;

    fn entry(at: u64, client: (&str, &str), server: (&str, &str), error: bool) -> Entry {
        let pod = |ip: &str, (ns, w): (&str, &str)| Endpoint {
            namespace: (!ns.is_empty()).then(|| ns.to_owned()),
            name: (!ns.is_empty()).then(|| format!("{w}-1")),
            workload: (!ns.is_empty()).then(|| Workload::new(WorkloadKind::Deployment, w)),
            ..Endpoint::new(ip.parse().expect("ip"), Some(80))
        };
        let mut e = Entry::new(Protocol::Tcp, Timestamp(at), pod("10.0.0.1", client), pod("10.0.0.2", server));
        if error {
            e.tcp = Some(TcpInfo { state: TcpState::Reset, reason: None, by: None });
            e.error = Some(EntryError { kind: ErrorType::Connection, msg: "Reset".into() });
        }
        e
    }

    #[test]
    fn an_edge_per_failing_pair_with_its_count_kinds_cause_and_query() {
        let now = Timestamp(100 * MINUTE_NS);
        let mut denied = entry(now.0 - 5, ("shop", "cart"), ("shop", "web"), true);
        denied.cause = Some(Cause {
            reason: CauseReason::NetworkPolicyDenied,
            message: String::new(),
            objects: Vec::new(),
            evidence: Default::default(),
        });
        let entries = [
            denied.clone(),
            denied,
            entry(now.0 - 4, ("shop", "cart"), ("shop", "web"), true),
            entry(now.0 - 3, ("shop", "cart"), ("pay", "api"), true),
            entry(now.0 - 2, ("shop", "cart"), ("shop", "web"), false), // not an error: no edge
            entry(now.0 - 20 * MINUTE_NS, ("old", "a"), ("old", "b"), true), // before the window
            entry(now.0 - 1, ("shop", "cart"), ("", ""), true),
        ];
        let m = map(entries.iter(), now, 15);
        assert_eq!(m.total, 5);
        let edges: Vec<(&str, &str, u64, Option<&str>)> =
            m.edges.iter().map(|e| (e.source.as_str(), e.destination.as_str(), e.count, e.cause.as_deref())).collect();
        assert_eq!(
            edges,
            [
                ("shop/Deployment/cart", "shop/Deployment/web", 3, Some("NetworkPolicyDenied")),
                ("shop/Deployment/cart", "10.0.0.2", 1, None),
                ("shop/Deployment/cart", "pay/Deployment/api", 1, None),
            ]
        );
        let names: Vec<&str> = m.namespaces.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["", "pay", "shop"]);
        let q = faultline_kfl::Query::parse(&m.edges[0].query).expect("a query");
        assert_eq!(entries.iter().filter(|e| q.matches(*e) && e.error.is_some()).count(), 3);
        assert_eq!(m.edges[0].top_kind, "tcp/Reset");
        assert_eq!(m.causes, BTreeMap::from([("NetworkPolicyDenied".to_owned(), 2)]), "each error by its own cause");
    }

    #[test]
    fn past_the_bound_edges_are_counted_not_drawn() {
        let now = Timestamp(100 * MINUTE_NS);
        let names: Vec<String> = (0..MAX_EDGES + 3).map(|i| format!("w{i}")).collect();
        let entries: Vec<Entry> = names.iter().map(|n| entry(now.0 - 1, ("shop", "cart"), ("shop", n), true)).collect();
        let m = map(entries.iter(), now, 15);
        assert_eq!((m.edges.len(), m.omitted_edges, m.omitted_errors), (MAX_EDGES, 3, 3));
    }
}
