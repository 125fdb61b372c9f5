//! `faultline_export_*`, the same in the operator's and the agents' /metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    tapconfig: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TapLabels {
    tapconfig: String,
}

/// `faultline_export_*`: records taken by the receiver, dropped (by why), and requests retried.
#[derive(Clone, Default)]
pub struct ExportMetrics {
    sent: Family<TapLabels, Counter>,
    dropped: Family<DropLabels, Counter>,
    retries: Family<TapLabels, Counter>,
}

impl ExportMetrics {
    pub fn register(&self, faultline: &mut Registry) {
        faultline.register("export_records", "Entries the OTLP receiver took, as log records", self.sent.clone());
        faultline.register(
            "export_dropped",
            "Entries not exported, by why: queue_full (the queue bound bit), refused or rejected (by the \
             receiver), retries_exhausted, unconfigured (the export's configuration cannot be used), \
             reconfigured (held when the queue size changed or export was turned off), removed (held when \
             its TapConfig was deleted)",
            self.dropped.clone(),
        );
        faultline.register("export_retries", "OTLP requests sent again after a failure", self.retries.clone());
    }

    pub fn sent(&self, tapconfig: &str, n: u64) {
        self.sent.get_or_create(&TapLabels { tapconfig: tapconfig.to_owned() }).inc_by(n);
    }

    pub fn dropped(&self, tapconfig: &str, reason: &'static str, n: u64) {
        self.dropped.get_or_create(&DropLabels { tapconfig: tapconfig.to_owned(), reason }).inc_by(n);
    }

    pub(crate) fn retried(&self, tapconfig: &str) {
        self.retries.get_or_create(&TapLabels { tapconfig: tapconfig.to_owned() }).inc();
    }
}
