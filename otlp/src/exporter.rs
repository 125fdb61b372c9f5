//! One TapConfig's OTLP exporter: a bounded queue that ingest pushes to without waiting, and `SENDERS`
//! tasks, each with a connection of its own, that send it in batches, retrying with backoff what the
//! receiver could not take now. Several requests in flight keep a collector busy while the next batch
//! is encoded, and a slow round trip from stalling the rest.
//!
//! The bound (`queueSize`) counts every entry the exporter holds, the batches being sent included: while
//! a collector is down, exactly that many are kept for when it comes back and every further one is
//! dropped and counted (`faultline_export_dropped_total{reason="queue_full"}`). Ingest never waits on
//! the exporter: a push is a lock and a length check.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use faultline_model::Entry;
use prost::Message;
use tokio::sync::{watch, Notify};

use super::proto::{
    AnyValue, ExportLogsServiceRequest, InstrumentationScope, KeyValue, Resource, ResourceLogs, ScopeLogs,
};
use super::record::record;
use super::transport::{Outcome, Sender, Target};
use super::ExportMetrics;

/// Records per request, at most (~0.6 MB of protobuf; a collector takes 4 MiB by default).
const MAX_BATCH: usize = 1024;
/// Requests in flight at once, each on its own connection.
pub const SENDERS: usize = 4;
/// After the first entry of a batch arrives, how long to wait for more before sending.
const LINGER: Duration = Duration::from_millis(200);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A batch not taken after retrying this long is dropped (`retries_exhausted`), as OTLP exporters do.
const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

struct Queue {
    waiting: VecDeque<Arc<Entry>>,
    /// Entries of the batches being sent: held, so counted against the bound.
    sending: usize,
}

pub struct Exporter {
    tapconfig: String,
    bound: usize,
    queue: Mutex<Queue>,
    wake: Notify,
    metrics: ExportMetrics,
    /// Where the senders send; changed in place (a rotated token, a new CA) so that what the queue holds
    /// is sent to the new target rather than lost with the old exporter.
    target: watch::Sender<Target>,
}

impl Exporter {
    pub fn new(tapconfig: &str, bound: usize, metrics: ExportMetrics, target: &Target) -> Arc<Exporter> {
        Arc::new(Exporter {
            tapconfig: tapconfig.to_owned(),
            bound: bound.max(1),
            queue: Mutex::new(Queue { waiting: VecDeque::new(), sending: 0 }),
            wake: Notify::new(),
            metrics,
            target: watch::Sender::new(target.clone()),
        })
    }

    /// An exporter with its `SENDERS` tasks started on the current runtime, each with a connection to
    /// `target` of its own; aborting the handles stops it.
    pub fn start(
        tapconfig: &str,
        bound: usize,
        metrics: ExportMetrics,
        target: &Target,
    ) -> (Arc<Exporter>, Vec<tokio::task::JoinHandle<()>>) {
        let exporter = Exporter::new(tapconfig, bound, metrics, target);
        let senders = (0..SENDERS).map(|_| tokio::spawn(exporter.clone().run())).collect();
        (exporter, senders)
    }

    /// Sends from now on to `target`: each sender takes it before its next attempt (a batch in flight
    /// finishes on its connection); the queue is kept.
    pub fn retarget(&self, target: Target) {
        self.target.send_replace(target);
    }

    /// Queues what fits under the bound; the rest is dropped and counted. Never waits.
    pub fn push(&self, entries: &[Arc<Entry>]) {
        let dropped = {
            let Ok(mut q) = self.queue.lock() else { return };
            let room = self.bound.saturating_sub(q.waiting.len() + q.sending);
            let taken = room.min(entries.len());
            q.waiting.extend(entries[..taken].iter().cloned());
            entries.len() - taken
        };
        if dropped > 0 {
            self.metrics.dropped(&self.tapconfig, "queue_full", dropped as u64);
        }
        self.wake.notify_one();
    }

    /// How many entries it may hold.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// Entries held now, waiting or being sent.
    pub fn held(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.waiting.len() + q.sending)
    }

    /// What is still held when the exporter is replaced or removed is lost: counted.
    pub fn discard(&self, reason: &'static str) {
        let n = self.held();
        if n > 0 {
            self.metrics.dropped(&self.tapconfig, reason, n as u64);
        }
    }

    fn take_batch(&self) -> Vec<Arc<Entry>> {
        let Ok(mut q) = self.queue.lock() else { return Vec::new() };
        let n = q.waiting.len().min(MAX_BATCH);
        let batch: Vec<Arc<Entry>> = q.waiting.drain(..n).collect();
        q.sending += batch.len();
        let more = !q.waiting.is_empty();
        drop(q);
        if more {
            // Another sender may take the rest now.
            self.wake.notify_one();
        }
        batch
    }

    fn batch_done(&self, n: usize) {
        if let Ok(mut q) = self.queue.lock() {
            q.sending = q.sending.saturating_sub(n);
        }
    }

    fn waiting(&self) -> usize {
        self.queue.lock().map_or(0, |q| q.waiting.len())
    }

    /// One sender: sends until its task is aborted (the exporter replaced or removed), to the target of
    /// the moment.
    pub async fn run(self: Arc<Exporter>) {
        let mut target = self.target.subscribe();
        let mut sender = Sender::new(target.borrow_and_update().clone());
        loop {
            if self.waiting() == 0 {
                self.wake.notified().await;
            }
            // A full batch goes at once; a short one waits a little for company.
            if self.waiting() < MAX_BATCH {
                tokio::time::sleep(LINGER).await;
            }
            let batch = self.take_batch();
            if batch.is_empty() {
                continue;
            }
            let (taken, n) = (batch.len(), batch.len() as u64);
            let message = Bytes::from(encode(&batch, &self.tapconfig).encode_to_vec());
            drop(batch);
            let started = Instant::now();
            let mut backoff = FIRST_BACKOFF;
            loop {
                if target.has_changed().unwrap_or(false) {
                    sender = Sender::new(target.borrow_and_update().clone());
                }
                match sender.send(message.clone()).await {
                    Outcome::Sent { rejected } => {
                        let rejected = rejected.min(n);
                        self.metrics.sent(&self.tapconfig, n - rejected);
                        if rejected > 0 {
                            tracing::warn!(tapconfig = %self.tapconfig, rejected, "the OTLP receiver refused some records");
                            self.metrics.dropped(&self.tapconfig, "rejected", rejected);
                        }
                        break;
                    }
                    Outcome::Refused(why) => {
                        tracing::warn!(tapconfig = %self.tapconfig, records = n, %why, "the OTLP receiver refused a batch");
                        self.metrics.dropped(&self.tapconfig, "refused", n);
                        break;
                    }
                    Outcome::Retry(why) if started.elapsed() >= GIVE_UP_AFTER => {
                        tracing::warn!(tapconfig = %self.tapconfig, records = n, %why, "OTLP export gave up on a batch");
                        self.metrics.dropped(&self.tapconfig, "retries_exhausted", n);
                        break;
                    }
                    Outcome::Retry(why) => {
                        tracing::debug!(tapconfig = %self.tapconfig, %why, ?backoff, "OTLP export will retry");
                        self.metrics.retried(&self.tapconfig);
                        tokio::time::sleep(jittered(backoff)).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            self.batch_done(taken);
        }
    }
}

/// Up to a fifth less than `d`, so exporters that failed together do not retry together.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    d.mul_f64(1.0 - f64::from(nanos % 200) / 1000.0)
}

/// One request: one resource (Faultline's operator), one scope, a record per entry.
pub fn encode(batch: &[Arc<Entry>], tapconfig: &str) -> ExportLogsServiceRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let attr = |k: &str, v: &str| KeyValue { key: k.to_owned(), value: Some(AnyValue::string(v)) };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", "faultline"),
                    attr("service.version", env!("CARGO_PKG_VERSION")),
                    attr("faultline.tapconfig", tapconfig),
                ],
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "faultline".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                }),
                log_records: batch.iter().map(|e| record(e, now)).collect(),
            }],
        }],
    }
}

#[cfg(test)]
mod tests {
    use faultline_model::entry::{Endpoint, Protocol};
    use faultline_model::Timestamp;

    use super::*;

    fn entries(n: usize) -> Vec<Arc<Entry>> {
        let ep = Endpoint::new("10.0.0.1".parse().expect("ip"), Some(1));
        (0..n).map(|i| Arc::new(Entry::new(Protocol::Tcp, Timestamp(i as u64), ep.clone(), ep.clone()))).collect()
    }

    fn dropped(m: &ExportMetrics) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        m.register(registry.sub_registry_with_prefix("faultline"));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out.lines().filter(|l| l.starts_with("faultline_export_dropped_total{")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn the_bound_counts_the_batch_being_sent_and_what_does_not_fit_is_counted() {
        let m = ExportMetrics::default();
        let target = Target::new("http://127.0.0.1:9", crate::Protocol::Grpc, &[], None, None).expect("valid");
        let x = Exporter::new("t", 5, m.clone(), &target);
        x.push(&entries(3));
        let batch = x.take_batch();
        assert_eq!((batch.len(), x.held()), (3, 3), "a batch being sent is still held");
        x.push(&entries(4));
        assert_eq!(x.held(), 5);
        assert_eq!(dropped(&m), r#"faultline_export_dropped_total{tapconfig="t",reason="queue_full"} 2"#);
        x.batch_done(batch.len());
        assert_eq!(x.held(), 2);
        x.discard("reconfigured");
        assert!(dropped(&m).contains(r#"reason="reconfigured"} 2"#), "{}", dropped(&m));
    }

    #[test]
    fn a_request_holds_one_record_per_entry() {
        let req = encode(&entries(3), "t");
        let scope = &req.resource_logs[0].scope_logs[0];
        assert_eq!(scope.log_records.len(), 3);
        let decoded = ExportLogsServiceRequest::decode(req.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, req);
    }
}
