//! Prometheus metrics of the operator, served on `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: &'static str,
}

/// One node's capture under one TapConfig.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    pub tapconfig: String,
    pub node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TapLabels {
    pub tapconfig: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: Family<ReconcileLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub leader: Gauge<i64, AtomicI64>,
    /// API writes caused by entries (Events, ErrorView status, capture statistics): bounded by design.
    pub api_writes: Family<WriteLabels, Counter>,
    pub entries_ingested: Counter,
    /// Ingest requests refused, by why: forbidden, throttled, standby, naming, busy, too_large, malformed.
    pub ingest_refused: Family<ReasonLabels, Counter>,
    /// Entries received but not counted, by why: elsewhere (another node's agent reports it), unwatched.
    pub entries_not_counted: Family<ReasonLabels, Counter>,
    /// ErrorView status writes put off to a later round by the write budget.
    pub status_writes_deferred: Counter,
    /// Error entries given a cause (`explained`), or not judged for want of cluster state (`unknown`).
    pub causes: Family<ReasonLabels, Counter>,
    /// The entries themselves: `faultline_errors_total`, `faultline_requests_total`.
    pub entries: crate::error_metrics::ErrorMetrics,
    /// Per node and TapConfig, as the agents last reported: the drop ratio over the last reports (what
    /// `PacketLoss` compares with the threshold) and the packets received and dropped since the agent
    /// started. Nodes forgotten are removed.
    pub capture_drop_ratio: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    pub capture_received: Family<NodeLabels, Gauge<i64, AtomicI64>>,
    pub capture_dropped: Family<NodeLabels, Gauge<i64, AtomicI64>>,
    /// 1 while every agent of the TapConfig reports (its `AgentsReporting` condition), else 0.
    pub agents_reporting: Family<TapLabels, Gauge<i64, AtomicI64>>,
    /// The nodes whose capture gauges exist, per TapConfig: a node forgotten takes its series with it.
    pub capture_nodes: std::sync::Mutex<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>>,
    /// `faultline_export_*`: what the OTLP exporters sent and dropped.
    pub export: crate::export::ExportMetrics,
}

/// Label sets per entry metric unless configured (`--metric-series`).
pub const DEFAULT_MAX_SERIES: usize = 10_000;

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(DEFAULT_MAX_SERIES)
    }
}

impl Metrics {
    pub fn new(max_series: usize) -> Metrics {
        let mut root = Registry::default();
        let entries = crate::error_metrics::ErrorMetrics::new(max_series);
        let faultline = root.sub_registry_with_prefix("faultline");
        entries.register_entries(faultline);
        let capture_drop_ratio = Family::<NodeLabels, Gauge<f64, AtomicU64>>::default();
        faultline.register(
            "capture_drop_ratio",
            "Share of packets the node's capture dropped over the agent's last reports",
            capture_drop_ratio.clone(),
        );
        let capture_received = Family::<NodeLabels, Gauge<i64, AtomicI64>>::default();
        faultline.register(
            "capture_packets_received",
            "Packets the node's agent has seen since it started",
            capture_received.clone(),
        );
        let capture_dropped = Family::<NodeLabels, Gauge<i64, AtomicI64>>::default();
        faultline.register(
            "capture_packets_dropped",
            "Packets the node's capture dropped (kernel and queue) since the agent started",
            capture_dropped.clone(),
        );
        let agents_reporting = Family::<TapLabels, Gauge<i64, AtomicI64>>::default();
        faultline.register(
            "agents_reporting",
            "1 while every agent of the TapConfig reports (condition AgentsReporting), else 0",
            agents_reporting.clone(),
        );
        let export = crate::export::ExportMetrics::default();
        export.register(faultline);
        let registry = root.sub_registry_with_prefix("faultline_operator");
        entries.register_capped(registry);
        let reconciliations = Family::<ReconcileLabels, Counter>::default();
        registry.register("reconciliations", "Reconciliations by controller and result", reconciliations.clone());
        let reconcile_seconds = Histogram::new([0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]);
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_seconds.clone());
        let leader = Gauge::<i64, AtomicI64>::default();
        registry.register("leader", "Whether this replica holds the leader lease (1) or waits (0)", leader.clone());
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register("api_writes", "API writes caused by entries, by kind", api_writes.clone());
        let entries_ingested = Counter::default();
        registry.register("entries_ingested", "Entries accepted from agents", entries_ingested.clone());
        let ingest_refused = Family::<ReasonLabels, Counter>::default();
        registry.register("ingest_refused", "Ingest requests refused, by reason", ingest_refused.clone());
        let entries_not_counted = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "entries_not_counted",
            "Entries received but not counted: reported by another node's agent, not watched, or the node's \
             probes of a pod that was not serving",
            entries_not_counted.clone(),
        );
        let status_writes_deferred = Counter::default();
        registry.register(
            "errorview_status_writes_deferred",
            "ErrorView status writes put off to a later round by the write budget",
            status_writes_deferred.clone(),
        );
        let causes = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "causes",
            "Error entries given a cause (explained), not judged for want of cluster state (unknown), or not \
             held back to be asked again because too many were (not_held)",
            causes.clone(),
        );
        Metrics {
            registry: root,
            causes,
            reconciliations,
            reconcile_seconds,
            leader,
            api_writes,
            entries_ingested,
            ingest_refused,
            entries_not_counted,
            status_writes_deferred,
            entries,
            capture_drop_ratio,
            capture_received,
            capture_dropped,
            agents_reporting,
            capture_nodes: Default::default(),
            export,
        }
    }
}

impl Metrics {
    pub fn count(&self, controller: &'static str, result: &'static str) {
        self.reconciliations.get_or_create(&ReconcileLabels { controller, result }).inc();
    }

    pub fn entries_not_counted(&self, elsewhere: u64, unwatched: u64, unready_probed: u64) {
        for (reason, n) in [("elsewhere", elsewhere), ("unwatched", unwatched), ("unready_probed", unready_probed)] {
            if n > 0 {
                self.entries_not_counted.get_or_create(&ReasonLabels { reason }).inc_by(n);
            }
        }
    }

    pub fn causes(&self, x: &crate::cause::Explained) {
        for (reason, n) in [("explained", x.causes), ("unknown", x.unknown)] {
            if n > 0 {
                self.causes.get_or_create(&ReasonLabels { reason }).inc_by(n);
            }
        }
    }

    pub fn causes_not_held(&self, n: u64) {
        if n > 0 {
            self.causes.get_or_create(&ReasonLabels { reason: "not_held" }).inc_by(n);
        }
    }

    pub fn refused(&self, reason: &'static str) {
        self.ingest_refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn wrote(&self, kind: &'static str) {
        self.api_writes.get_or_create(&WriteLabels { kind }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
