//! Entries sent on to an OpenTelemetry pipeline (`spec.export.otlp` of a TapConfig): each entry the
//! operator accepts, named and explained, becomes one OTLP log record.
//!
//! The operator sends by default (`sender: operator`): names (pods, workloads, Services) and causes exist
//! only here, a record without them would say less than the Event about the same error, and an entry seen
//! by two nodes' agents is one record, not two. Ingest pushes to a bounded queue per TapConfig and never
//! waits on it; what does not fit, or is refused, is counted.
//!
//! The records, the transports and the bounded queue are the `faultline-otlp` crate (`otlp/`), which the
//! agents use too when a TapConfig has them send (`sender: agents`); here: which TapConfig exports where
//! (`Exports`), and `config.rs`, its Secrets read.

pub mod config;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use faultline_model::Entry;
pub use faultline_otlp::ExportMetrics;
use faultline_otlp::{Exporter, Target};

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

impl Running {
    /// Stops the senders; what the exporter still held is counted as dropped for `reason`.
    fn stop(&self, reason: &'static str) {
        if let Running::Sending { exporter, senders } = self {
            senders.iter().for_each(|s| s.abort());
            exporter.discard(reason);
        }
    }
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
    /// queue; a new target (a rotated token, another endpoint) is taken by the running exporter, queue
    /// and all; a new queue size replaces it (what it held is counted as dropped, `reconfigured`).
    pub fn configure(&self, tapconfig: &str, wanted: Option<(String, Wanted)>) {
        let Ok(mut slots) = self.slots.write() else { return };
        if let (Some(slot), Some((fingerprint, wanted))) = (slots.get_mut(tapconfig), &wanted) {
            if slot.fingerprint == *fingerprint {
                return;
            }
            if let (Running::Sending { exporter, .. }, Wanted::Send { target, queue_size }) = (&slot.running, wanted) {
                if exporter.bound() == *queue_size {
                    exporter.retarget(target.clone());
                    slot.fingerprint = fingerprint.clone();
                    tracing::info!(%tapconfig, "OTLP export reconfigured; the queue is kept");
                    return;
                }
            }
        }
        if let Some(old) = slots.remove(tapconfig) {
            old.running.stop("reconfigured");
        }
        let Some((fingerprint, wanted)) = wanted else { return };
        let running = match wanted {
            Wanted::Send { target, queue_size } => {
                let (exporter, senders) = Exporter::start(tapconfig, queue_size, self.metrics.clone(), &target);
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

    /// Stops the exporters of TapConfigs that are gone (deleted TapConfigs are not reconciled: they have
    /// no finalizer); what they held is counted as dropped, `removed`.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        let Ok(mut slots) = self.slots.write() else { return };
        slots.retain(|tapconfig, slot| {
            if exists(tapconfig) {
                return true;
            }
            slot.running.stop("removed");
            tracing::info!(%tapconfig, "the TapConfig is gone; its OTLP export stopped");
            false
        });
    }

    /// At shutdown: gives the exporters up to `within` to send what they hold, then says what is left
    /// (the process is going; its counters go with it, so the log is where that loss is told).
    pub async fn drain(&self, within: std::time::Duration) {
        let held = || -> Vec<(String, usize)> {
            let Ok(slots) = self.slots.read() else { return Vec::new() };
            slots
                .iter()
                .filter_map(|(tap, s)| match &s.running {
                    Running::Sending { exporter, .. } => Some((tap.clone(), exporter.held())).filter(|(_, n)| *n > 0),
                    Running::Broken(_) => None,
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

#[cfg(test)]
mod tests {
    use faultline_model::entry::{Endpoint, Protocol as EntryProtocol};
    use faultline_model::Timestamp;
    use faultline_otlp::Protocol;

    use super::*;

    fn entries(n: usize) -> Vec<Arc<Entry>> {
        let ep = Endpoint::new("10.0.0.1".parse().expect("ip"), Some(1));
        (0..n).map(|i| Arc::new(Entry::new(EntryProtocol::Tcp, Timestamp(i as u64), ep.clone(), ep.clone()))).collect()
    }

    /// A collector that is not there (nothing listens on port 9 here): what is pushed stays held.
    fn send(token: &str, queue_size: usize) -> Option<(String, Wanted)> {
        let headers = [("authorization".to_owned(), format!("Bearer {token}"))];
        let target = Target::new("http://127.0.0.1:9", Protocol::Grpc, &headers, None, None).expect("valid");
        Some((format!("{token}/{queue_size}"), Wanted::Send { target, queue_size }))
    }

    fn held(x: &Exports) -> usize {
        match &x.slots.read().expect("lock").get("t").expect("configured").running {
            Running::Sending { exporter, .. } => exporter.held(),
            Running::Broken(_) => 0,
        }
    }

    fn dropped(m: &ExportMetrics, reason: &str) -> bool {
        let mut registry = prometheus_client::registry::Registry::default();
        m.register(registry.sub_registry_with_prefix("faultline"));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out.contains(&format!("reason=\"{reason}\""))
    }

    #[tokio::test]
    async fn a_rotated_secret_keeps_the_queue_and_a_new_queue_size_replaces_it() {
        let m = ExportMetrics::default();
        let x = Exports::new(m.clone());
        x.configure("t", send("old", 10));
        x.observe("t", &entries(3));
        x.configure("t", send("new", 10));
        assert_eq!(held(&x), 3, "the running exporter took the new token, queue and all");
        assert!(!dropped(&m, "reconfigured"));
        x.configure("t", send("new", 20));
        assert_eq!(held(&x), 0, "a new queue");
        assert!(dropped(&m, "reconfigured"), "what the old queue held is counted");
    }

    #[tokio::test]
    async fn a_deleted_tapconfigs_exporter_stops_and_what_it_held_is_counted() {
        let m = ExportMetrics::default();
        let x = Exports::new(m.clone());
        x.configure("t", send("token", 10));
        x.observe("t", &entries(2));
        x.retain(|name| name == "t");
        assert_eq!(held(&x), 2, "a TapConfig that exists keeps its export");
        x.retain(|_| false);
        assert!(x.slots.read().expect("lock").is_empty());
        assert!(dropped(&m, "removed"));
    }
}
