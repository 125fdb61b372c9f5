//! Entries as Prometheus series SREs can alert on: `faultline_errors_total` by namespace, workload, kind,
//! peer and node, and `faultline_requests_total` (HTTP, HTTP/2, gRPC and DNS exchanges, failed or not) as
//! the denominator of an error ratio. Workloads, not pods: a pod's name changes with every rollout.
//!
//! Cardinality is bounded by construction: at most `max_series` label sets per metric; entries that would
//! make a new one past that are counted under `other` (every label `other`), and each time that happens
//! is counted in `faultline_operator_metric_series_capped_total{metric}`.

use std::collections::HashSet;
use std::sync::Mutex;

use faultline_model::entry::{Endpoint, Protocol, Workload, WorkloadKind};
use faultline_model::kind::Kind;
use faultline_model::Entry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The pod the error is about (the server; the receiver of an ICMP error): its namespace and workload.
    pub namespace: String,
    pub workload: String,
    /// SPEC's kinds: `tcp/Reset`, `icmp/DestinationUnreachable`, `half-connection`, `http/5xx`, `dns/…`, …
    pub kind: String,
    /// The other end; `external` when it is not a pod.
    pub peer_namespace: String,
    pub peer_workload: String,
    pub node: String,
    /// Why, where the cluster's state shows it (SPEC §3.7): the reason alone (`NetworkPolicyDenied`),
    /// empty when there is none — six values at most.
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub namespace: String,
    pub workload: String,
    pub protocol: String,
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabel {
    pub metric: &'static str,
}

const OTHER: &str = "other";
const EXTERNAL: &str = "external";

pub struct ErrorMetrics {
    errors: Family<ErrorLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    capped: Family<MetricLabel, Counter>,
    seen: Mutex<(HashSet<ErrorLabels>, HashSet<RequestLabels>)>,
    max_series: usize,
}

/// An exchange of a request/response protocol (the denominator of an error ratio).
fn is_request(e: &Entry) -> bool {
    matches!(e.protocol, Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::Dns)
        && (e.request.is_some() || e.dns.is_some())
}

/// A kind with a bounded set of values: codes outside the named ones (an unknown HTTP/2 error code, a gRPC
/// status past 16) are `<protocol>/other`.
fn bounded_kind(k: Kind<'_>) -> String {
    match k {
        Kind::Http2 { code, .. } if code.starts_with("error code 0x") => format!("http2/{OTHER}"),
        Kind::Grpc(Some(status)) if status.starts_with("CODE_") => format!("grpc/{OTHER}"),
        k => k.to_string(),
    }
}

/// An end's (namespace, workload): a pod's, the node's own (`Node/<node>`, no namespace), else external.
fn side(ep: &Endpoint) -> (String, String) {
    let namespace = ep.namespace.clone().unwrap_or_default();
    match (&ep.workload, ep.pod()) {
        (Some(w), _) => (namespace, w.to_string()),
        (None, Some((_, name))) => (namespace, Workload::new(WorkloadKind::Pod, name).to_string()),
        (None, None) => (String::new(), EXTERNAL.into()),
    }
}

impl ErrorMetrics {
    pub fn new(max_series: usize) -> ErrorMetrics {
        ErrorMetrics {
            errors: Family::default(),
            requests: Family::default(),
            capped: Family::default(),
            seen: Mutex::default(),
            max_series,
        }
    }

    /// Registers `errors` and `requests` (in the `faultline` registry: `faultline_errors_total`).
    pub fn register_entries(&self, registry: &mut Registry) {
        registry.register(
            "errors",
            "Network errors found, by the workload they are about, kind, peer workload and node",
            self.errors.clone(),
        );
        registry.register(
            "requests",
            "HTTP, HTTP/2, gRPC and DNS exchanges seen (failed or not), by workload, protocol and node",
            self.requests.clone(),
        );
    }

    /// Registers the capping counter among the operator's own metrics.
    pub fn register_capped(&self, operator: &mut Registry) {
        operator.register(
            "metric_series_capped",
            "Entries counted under the `other` series because a metric had reached its series cap",
            self.capped.clone(),
        );
    }

    /// Counts newly arrived entries.
    pub fn observe(&self, entries: &[std::sync::Arc<Entry>]) {
        for e in entries {
            let kind = Kind::of(e);
            let (err, req) = (kind.is_error(), is_request(e));
            if !err && !req {
                continue;
            }
            // The side the entry is about: the destination pod, else the source pod (as Events choose).
            let dst_is_pod = e.dst.namespace.is_some();
            let (me, peer) = if dst_is_pod || e.src.namespace.is_none() { (&e.dst, &e.src) } else { (&e.src, &e.dst) };
            let (namespace, workload) = side(me);
            let node = e.node.clone().unwrap_or_default();
            if err {
                let (peer_namespace, peer_workload) = side(peer);
                let labels = ErrorLabels {
                    namespace: namespace.clone(),
                    workload: workload.clone(),
                    kind: bounded_kind(kind),
                    peer_namespace,
                    peer_workload,
                    node: node.clone(),
                    cause: e.cause.as_ref().map(|c| c.reason.as_str().to_owned()).unwrap_or_default(),
                };
                let labels = self.admit(
                    labels,
                    |s| &mut s.0,
                    "errors",
                    |_| ErrorLabels {
                        namespace: OTHER.into(),
                        workload: OTHER.into(),
                        kind: OTHER.into(),
                        peer_namespace: OTHER.into(),
                        peer_workload: OTHER.into(),
                        node: OTHER.into(),
                        cause: OTHER.into(),
                    },
                );
                self.errors.get_or_create(&labels).inc();
            }
            if req {
                let labels = RequestLabels { namespace, workload, protocol: e.protocol.as_str().into(), node };
                let labels = self.admit(
                    labels,
                    |s| &mut s.1,
                    "requests",
                    |_| RequestLabels {
                        namespace: OTHER.into(),
                        workload: OTHER.into(),
                        protocol: OTHER.into(),
                        node: OTHER.into(),
                    },
                );
                self.requests.get_or_create(&labels).inc();
            }
        }
    }

    /// `labels` if it is a series already, or there is room for one more; else the `other` series.
    fn admit<L: Clone + Eq + std::hash::Hash>(
        &self,
        labels: L,
        set: impl Fn(&mut (HashSet<ErrorLabels>, HashSet<RequestLabels>)) -> &mut HashSet<L>,
        metric: &'static str,
        other: impl Fn(&L) -> L,
    ) -> L {
        let Ok(mut g) = self.seen.lock() else { return other(&labels) };
        let seen = set(&mut g);
        if seen.contains(&labels) {
            return labels;
        }
        if seen.len() < self.max_series {
            seen.insert(labels.clone());
            return labels;
        }
        self.capped.get_or_create(&MetricLabel { metric }).inc();
        let o = other(&labels);
        seen.insert(o.clone());
        o
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use faultline_model::entry::{EntryError, ErrorType, Request, Response};
    use faultline_model::Timestamp;

    use super::*;

    fn pod_ep(ip: &str, ns: &str, workload: &str) -> Endpoint {
        Endpoint {
            namespace: Some(ns.into()),
            name: Some(format!("{}-x", workload.to_lowercase())),
            workload: workload.parse().ok(),
            ..Endpoint::new(ip.parse().expect("ip"), Some(80))
        }
    }

    fn http(src: Endpoint, dst: Endpoint, status: u16) -> Arc<Entry> {
        let mut e = Entry::new(Protocol::Http, Timestamp(0), src, dst);
        e.node = Some("node-a".into());
        e.request = Some(Request {
            method: "GET".into(),
            path: "/".into(),
            version: "HTTP/1.1".into(),
            headers: Default::default(),
            body_size: 0,
        });
        e.response = Some(Response {
            status,
            status_text: String::new(),
            version: "HTTP/1.1".into(),
            headers: Default::default(),
            body_size: 0,
        });
        Arc::new(e)
    }

    fn render(reg: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, reg).expect("encodes");
        out
    }

    /// Metrics capped at `max_series`, with the registry they are served in and the operator's own.
    fn registered(max_series: usize) -> (ErrorMetrics, Registry, Registry) {
        let (mut reg, mut op) = (Registry::default(), Registry::default());
        let m = ErrorMetrics::new(max_series);
        m.register_entries(&mut reg);
        m.register_capped(&mut op);
        (m, reg, op)
    }

    fn sample(text: &str, name: &str, with: &[&str]) -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && with.iter().all(|w| l.contains(w)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    #[test]
    fn errors_and_requests_are_counted_by_workload_not_pod() {
        let (m, reg, _op) = registered(100);
        let client = pod_ep("10.0.0.1", "shop", "Deployment/client");
        let web = pod_ep("10.0.0.2", "shop", "Deployment/web");
        let mut half = (*http(client.clone(), web.clone(), 200)).clone();
        half.response = None;
        half.error = Some(EntryError { kind: ErrorType::PairNotFound, msg: "missing response".into() });
        m.observe(&[
            http(client.clone(), web.clone(), 200),
            http(client.clone(), web.clone(), 503),
            http(client.clone(), web.clone(), 502),
            Arc::new(half),
            http(client, Endpoint::new("203.0.113.9".parse().expect("ip"), Some(443)), 500),
        ]);
        let text = render(&reg);
        let web_errors = ["namespace=\"shop\"", "workload=\"Deployment/web\"", "peer_workload=\"Deployment/client\""];
        assert_eq!(sample(&text, "errors_total", &[&web_errors[..], &["kind=\"http/5xx\""]].concat()), 2.0, "{text}");
        assert_eq!(sample(&text, "errors_total", &[&web_errors[..], &["kind=\"half-connection\""]].concat()), 1.0);
        // To the outside world: about the client, the peer external.
        assert_eq!(
            sample(&text, "errors_total", &["workload=\"Deployment/client\"", "peer_workload=\"external\""]),
            1.0
        );
        assert_eq!(sample(&text, "requests_total", &["workload=\"Deployment/web\"", "protocol=\"http\""]), 4.0);
        assert_eq!(sample(&text, "errors_total", &[]), 4.0, "a 200 is no error");
    }

    #[test]
    fn errors_carry_their_cause_as_a_label_of_its_reason_alone() {
        let (m, reg, _op) = registered(100);
        let client = pod_ep("10.0.0.1", "shop", "Deployment/client");
        let web = pod_ep("10.0.0.2", "shop", "Deployment/web");
        let mut explained = (*http(client.clone(), web.clone(), 200)).clone();
        explained.response = None;
        explained.error = Some(EntryError { kind: ErrorType::PairNotFound, msg: "missing response".into() });
        let plain = explained.clone();
        explained.cause = Some(faultline_model::entry::Cause {
            reason: faultline_model::entry::CauseReason::PodTerminating,
            message: "pod shop/web-x was terminating (a message that must not become a label)".into(),
            objects: vec![],
            evidence: vec![],
        });
        m.observe(&[Arc::new(explained), Arc::new(plain)]);
        let text = render(&reg);
        assert_eq!(sample(&text, "errors_total", &["cause=\"PodTerminating\""]), 1.0, "{text}");
        assert_eq!(sample(&text, "errors_total", &["cause=\"\""]), 1.0, "{text}");
        assert!(!text.contains("must not become"));
    }

    #[test]
    fn ten_thousand_pods_make_no_more_series_than_the_cap_and_lose_no_count() {
        let (m, reg, op) = registered(1000);
        let web = pod_ep("10.0.0.2", "shop", "Deployment/web");
        let entries: Vec<_> = (0..10_000)
            .map(|i| {
                let ns = format!("team-{i}");
                let client = pod_ep("10.1.0.1", &ns, &format!("Deployment/client-{i}"));
                http(client, web.clone(), 503)
            })
            .collect();
        m.observe(&entries);
        m.observe(&entries[..10]);
        let text = render(&reg);
        let series = text.lines().filter(|l| l.starts_with("errors_total{")).count();
        assert_eq!(series, 1001, "the cap, plus the other series");
        assert_eq!(sample(&text, "errors_total", &[]), 10_010.0, "every entry counted once");
        assert_eq!(sample(&text, "errors_total", &["workload=\"other\""]), 9_000.0);
        assert_eq!(sample(&render(&op), "metric_series_capped_total", &["metric=\"errors\""]), 9_000.0);
    }
}
