//! What the agent counts, shared by its threads, exported on `/metrics` and sent with every batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use faultline_core::ingest::AgentStats;

#[derive(Default)]
pub struct Counters {
    /// Frames the capture threads read.
    pub captured: AtomicU64,
    /// Kernel counters summed over interfaces (set by the capture threads).
    pub kernel_received: AtomicU64,
    pub kernel_dropped: AtomicU64,
    /// Frames dropped because the engine's queue was full when the agent stopped (while running, capture
    /// waits for room and the kernel's buffer takes the overflow, counted in `kernel_dropped`).
    pub queue_dropped: AtomicU64,
    /// Entries dropped because the outbox was over its memory budget.
    pub buffer_dropped: AtomicU64,
    pub entries: AtomicU64,
    pub decode_errors: AtomicU64,
    pub streams_timed_out: AtomicU64,
    pub missed_bytes: AtomicU64,
    pub flows: AtomicU64,
    pub batches_sent: AtomicU64,
    pub batches_failed: AtomicU64,
    /// Entries the operator refused even alone (a batch it refused was split down to them): dropped.
    pub entries_refused: AtomicU64,
    pub capture_errors: AtomicU64,
    /// Frames stamped more than a second in the future, taken as stamped when they were handled.
    pub clock_skewed_frames: AtomicU64,
    /// When the engine thread and the capture threads last went round their loops (ms since the epoch):
    /// each goes round at least every 100 ms while it works, so an old beat means a dead or stuck thread.
    pub engine_beat: AtomicU64,
    pub capture_beat: AtomicU64,
    /// Capture sockets open (an interface's fanout group counts each of its sockets) and engine threads.
    pub capture_sockets: AtomicU64,
    pub engine_threads: AtomicU64,
    backend_note: Mutex<Option<String>>,
    /// Every counter the engine keeps (what its dissectors dropped on purpose, gaps skipped, copies,
    /// …), as last published by the engine thread: served whole so that no loss is silent on a live node.
    engine: Mutex<faultline_core::Stats>,
}

/// How long a thread may go without a beat before the agent is not alive.
pub const STALE_BEAT_MS: u64 = 10_000;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Counters {
    pub fn add(&self, c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn beat(&self, which: &AtomicU64) {
        which.store(now_ms(), Ordering::Relaxed);
    }

    /// Liveness: the engine and capture threads beat within the last `STALE_BEAT_MS` (`now` in ms).
    pub fn alive(&self, now: u64) -> Result<(), String> {
        for (name, beat) in [("engine", &self.engine_beat), ("capture", &self.capture_beat)] {
            let last = beat.load(Ordering::Relaxed);
            if last == 0 {
                return Err(format!("the {name} thread has not started"));
            }
            if now.saturating_sub(last) > STALE_BEAT_MS {
                return Err(format!("the {name} thread has not run for {} ms", now - last));
            }
        }
        Ok(())
    }

    pub fn set_engine_stats(&self, s: &faultline_core::Stats) {
        if let Ok(mut g) = self.engine.lock() {
            g.clone_from(s);
        }
    }

    pub fn set_backend_note(&self, note: Option<String>) {
        if let Ok(mut g) = self.backend_note.lock() {
            *g = note;
        }
    }

    pub fn snapshot(&self) -> AgentStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Packets seen: what the kernel counted where it counts, else what we read.
        let received = g(&self.kernel_received).max(g(&self.captured));
        AgentStats {
            received,
            kernel_dropped: g(&self.kernel_dropped),
            queue_dropped: g(&self.queue_dropped),
            buffer_dropped: g(&self.buffer_dropped),
            entries: g(&self.entries),
            decode_errors: g(&self.decode_errors),
            streams_timed_out: g(&self.streams_timed_out),
            missed_bytes: g(&self.missed_bytes),
            backend_note: self.backend_note.lock().ok().and_then(|n| n.clone()),
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self, outbox_entries: usize, outbox_bytes: usize) -> String {
        let s = self.snapshot();
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            out.push_str(&format!("# HELP faultline_agent_{name} {help}\n# TYPE faultline_agent_{name} {kind}\n"));
            out.push_str(&format!("faultline_agent_{name} {v}\n"));
        };
        metric("packets_received_total", "counter", "Packets seen on the captured interfaces.", s.received);
        metric(
            "kernel_dropped_total",
            "counter",
            "Packets the kernel dropped before the agent read them.",
            s.kernel_dropped,
        );
        metric("queue_dropped_total", "counter", "Frames dropped because the engine queue was full.", s.queue_dropped);
        metric("buffer_dropped_total", "counter", "Entries dropped because the outbox was full.", s.buffer_dropped);
        metric("entries_total", "counter", "Entries found.", s.entries);
        metric("decode_errors_total", "counter", "Frames that did not decode.", s.decode_errors);
        metric(
            "streams_timed_out_total",
            "counter",
            "Streams whose protocol was not identified in time.",
            s.streams_timed_out,
        );
        metric("missed_bytes_total", "counter", "TCP bytes never seen (sequence gaps).", s.missed_bytes);
        metric("flows", "gauge", "Connections tracked.", g(&self.flows));
        metric("capture_sockets", "gauge", "Capture sockets (and their threads).", g(&self.capture_sockets));
        metric("engine_threads", "gauge", "Engine shards, each on a thread.", g(&self.engine_threads));
        metric(
            "clock_skewed_frames_total",
            "counter",
            "Frames stamped in the future, handled as stamped now.",
            g(&self.clock_skewed_frames),
        );
        metric("batches_sent_total", "counter", "Batches the operator accepted.", g(&self.batches_sent));
        metric(
            "batches_failed_total",
            "counter",
            "Batches that could not be sent (kept and retried).",
            g(&self.batches_failed),
        );
        metric(
            "entries_refused_total",
            "counter",
            "Entries the operator refused even alone (dropped).",
            g(&self.entries_refused),
        );
        metric("outbox_entries", "gauge", "Entries waiting to be sent.", outbox_entries as u64);
        metric("outbox_bytes", "gauge", "Memory held by entries waiting to be sent.", outbox_bytes as u64);
        // The engine's own counters, one series each, named as in analyze's summary JSON.
        let engine = self.engine.lock().ok().and_then(|s| serde_json::to_value(&*s).ok());
        if let Some(serde_json::Value::Object(fields)) = engine {
            out.push_str(
                "# HELP faultline_agent_engine_events_total What the engine counted, by counter (packets, \
                 dissector losses, copies, ...).\n# TYPE faultline_agent_engine_events_total counter\n",
            );
            for (name, v) in fields {
                if let Some(v) = v.as_u64() {
                    out.push_str(&format!("faultline_agent_engine_events_total{{counter=\"{name}\"}} {v}\n"));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_counter_is_served() {
        let c = Counters::default();
        c.set_engine_stats(&faultline_core::Stats { http2_lost_streams: 3, tls_broken: 2, ..Default::default() });
        let text = c.render(0, 0);
        assert!(text.contains("faultline_agent_engine_events_total{counter=\"http2LostStreams\"} 3\n"), "{text}");
        assert!(text.contains("faultline_agent_engine_events_total{counter=\"tlsBroken\"} 2\n"));
        let fields = serde_json::to_value(faultline_core::Stats::default()).expect("json");
        let n = fields.as_object().map_or(0, |o| o.len());
        assert_eq!(text.matches("faultline_agent_engine_events_total{").count(), n, "one series per counter");
    }

    #[test]
    fn alive_only_while_both_threads_beat() {
        let c = Counters::default();
        assert!(c.alive(1_000_000).is_err(), "nothing started yet");
        c.engine_beat.store(1_000_000, Ordering::Relaxed);
        c.capture_beat.store(1_000_000, Ordering::Relaxed);
        assert_eq!(c.alive(1_000_000 + STALE_BEAT_MS), Ok(()));
        c.capture_beat.store(1_000_000 + STALE_BEAT_MS, Ordering::Relaxed);
        let dead_engine = c.alive(1_000_001 + STALE_BEAT_MS).expect_err("engine stale");
        assert!(dead_engine.contains("engine"), "{dead_engine}");
    }
}
