//! Entries sent on to an OpenTelemetry pipeline (`spec.export.otlp` of a TapConfig): each entry the
//! operator accepts, named and explained, becomes one OTLP log record.
//!
//! The operator sends, not the agents: names (pods, workloads, Services) and causes exist only here, a
//! record without them would say less than the Event about the same error, and an entry seen by two
//! nodes' agents is one record, not two. Ingest pushes to a bounded queue per TapConfig and never waits
//! on it; what does not fit, or is refused, is counted.
//!
//! - `proto.rs` — the OTLP messages (prost);
//! - `record.rs` — an entry as a log record (semantic conventions, severity);
//! - `transport.rs` — gRPC and HTTP/protobuf, TLS, what the receiver's answer means;
//! - `exporter.rs` — the queue, batches, retries with backoff.

pub mod config;
pub mod exporter;
pub mod proto;
pub mod record;
pub mod transport;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use faultline_model::Entry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use exporter::Exporter;
use transport::{Sender, Target};

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
             reconfigured (held when the configuration changed)",
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

    fn retried(&self, tapconfig: &str) {
        self.retries.get_or_create(&TapLabels { tapconfig: tapconfig.to_owned() }).inc();
    }
}

/// What a TapConfig asks for, once its Secrets are read: a target, or why there cannot be one.
pub enum Wanted {
    Send {
        target: Target,
        queue_size: usize,
    },
    /// Export is asked for but cannot be done (a missing Secret, a bad header): entries are dropped and
    /// counted as `unconfigured` until the TapConfig or its Secret is fixed.
    Broken(String),
}

enum Running {
    Sending { exporter: Arc<Exporter>, senders: Vec<tokio::task::JoinHandle<()>> },
    Broken(String),
}

struct Slot {
    /// What the running exporter was made from; the same fingerprint again changes nothing.
    fingerprint: String,
    running: Running,
}

/// Every TapConfig's exporter, by TapConfig name.
pub struct Exports {
    slots: RwLock<HashMap<String, Slot>>,
    metrics: ExportMetrics,
}

impl Exports {
    pub fn new(metrics: ExportMetrics) -> Exports {
        Exports { slots: RwLock::default(), metrics }
    }

    /// Entries just accepted from `tapconfig`'s agents: queued for its exporter, if it has one.
    pub fn observe(&self, tapconfig: &str, entries: &[Arc<Entry>]) {
        if entries.is_empty() {
            return;
        }
        let Ok(slots) = self.slots.read() else { return };
        match slots.get(tapconfig).map(|s| &s.running) {
            Some(Running::Sending { exporter, .. }) => exporter.push(entries),
            Some(Running::Broken(_)) => self.metrics.dropped(tapconfig, "unconfigured", entries.len() as u64),
            None => {}
        }
    }

    /// Sets `tapconfig`'s export to `wanted` (none: no export). `fingerprint` identifies the
    /// configuration with its Secrets' contents: the same one again keeps the running exporter and its
    /// queue; another replaces it (what it held is counted as dropped, `reconfigured`).
    pub fn configure(&self, tapconfig: &str, wanted: Option<(String, Wanted)>) {
        let Ok(mut slots) = self.slots.write() else { return };
        if let (Some(slot), Some((fingerprint, _))) = (slots.get(tapconfig), &wanted) {
            if slot.fingerprint == *fingerprint {
                return;
            }
        }
        if let Some(old) = slots.remove(tapconfig) {
            if let Running::Sending { exporter, senders } = old.running {
                senders.iter().for_each(|s| s.abort());
                exporter.discard("reconfigured");
            }
        }
        let Some((fingerprint, wanted)) = wanted else { return };
        let running = match wanted {
            Wanted::Send { target, queue_size } => {
                let exporter = Exporter::new(tapconfig, queue_size, self.metrics.clone());
                let senders = (0..exporter::SENDERS)
                    .map(|_| tokio::spawn(exporter.clone().run(Sender::new(target.clone()))))
                    .collect();
                tracing::info!(%tapconfig, queue_size, "exporting entries over OTLP");
                Running::Sending { exporter, senders }
            }
            Wanted::Broken(why) => {
                tracing::warn!(%tapconfig, %why, "OTLP export configured but not usable; entries are not exported");
                Running::Broken(why)
            }
        };
        slots.insert(tapconfig.to_owned(), Slot { fingerprint, running });
    }

    /// At shutdown: gives the exporters up to `within` to send what they hold, then says what is left
    /// (the process is going; its counters go with it, so the log is where that loss is told).
    pub async fn drain(&self, within: std::time::Duration) {
        let held = || -> Vec<(String, usize)> {
            let Ok(slots) = self.slots.read() else { return Vec::new() };
            slots
                .iter()
                .filter_map(|(tap, s)| match &s.running {
                    Running::Sending { exporter, .. } if exporter.held() > 0 => Some((tap.clone(), exporter.held())),
                    _ => None,
                })
                .collect()
        };
        let deadline = tokio::time::Instant::now() + within;
        while !held().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        for (tapconfig, n) in held() {
            tracing::warn!(%tapconfig, entries = n, "entries not exported at shutdown");
        }
    }

    /// Why `tapconfig`'s export cannot run, if it cannot.
    pub fn problem(&self, tapconfig: &str) -> Option<String> {
        let slots = self.slots.read().ok()?;
        match &slots.get(tapconfig)?.running {
            Running::Broken(why) => Some(why.clone()),
            Running::Sending { .. } => None,
        }
    }
}
