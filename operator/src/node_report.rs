//! What one agent last said about its node, and enough of what it said before to know its recent packet
//! loss. Agents report cumulative counters (robust to lost or retried batches); a ratio over the agent's
//! whole life would let an early burst hold `PacketLoss` for hours and hide a late one, so the loss that
//! counts is the loss over the last `LOSS_WINDOW`.

use std::collections::VecDeque;

use faultline_model::ingest::AgentStats;
use faultline_model::Timestamp;

/// The interval packet loss is judged over.
pub const LOSS_WINDOW_NS: u64 = 60_000_000_000;
/// Counters are sampled at most this often (agents report every second).
const SAMPLE_EVERY_NS: u64 = 5_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    at: Timestamp,
    received: u64,
    lost: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeReport {
    pub stats: AgentStats,
    pub at: Timestamp,
    /// The agent process the counters belong to: a new one starts them from zero.
    run: String,
    /// Oldest first; the first is at least `LOSS_WINDOW` old once the agent has run that long.
    samples: VecDeque<Sample>,
}

impl NodeReport {
    pub fn new(run: &str, stats: AgentStats, at: Timestamp) -> NodeReport {
        let mut r = NodeReport { stats: AgentStats::default(), at, run: run.to_owned(), samples: VecDeque::new() };
        r.update(run, stats, at);
        r
    }

    pub fn update(&mut self, run: &str, stats: AgentStats, at: Timestamp) {
        if run != self.run || stats.received < self.stats.received {
            // A restarted agent: its counters began again.
            self.samples.clear();
            self.run = run.to_owned();
        }
        let lost = stats.kernel_dropped + stats.queue_dropped;
        if self.samples.back().is_none_or(|s| at.nanos().saturating_sub(s.at.nanos()) >= SAMPLE_EVERY_NS) {
            self.samples.push_back(Sample { at, received: stats.received, lost });
        }
        // Keep one sample at or beyond the window's start as the baseline.
        while self.samples.len() > 2 && at.nanos().saturating_sub(self.samples[1].at.nanos()) >= LOSS_WINDOW_NS {
            self.samples.pop_front();
        }
        self.stats = stats;
        self.at = at;
    }

    /// Packets lost before analysis over packets seen, over about the last `LOSS_WINDOW` (less when the
    /// agent or the operator started more recently).
    pub fn recent_drop_ratio(&self) -> f64 {
        let Some(base) = self.samples.front() else { return 0.0 };
        let received = self.stats.received.saturating_sub(base.received);
        let lost = (self.stats.kernel_dropped + self.stats.queue_dropped).saturating_sub(base.lost);
        if received == 0 {
            0.0
        } else {
            lost as f64 / received as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(received: u64, dropped: u64) -> AgentStats {
        AgentStats { received, kernel_dropped: dropped, ..AgentStats::default() }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn loss_is_judged_over_the_last_minute_not_the_agents_life() {
        // A burst early in the agent's life: 50% for its first 10 s.
        let mut r = NodeReport::new("run", stats(1000, 500), Timestamp(0));
        r.update("run", stats(2000, 1000), Timestamp(10 * S));
        assert!(r.recent_drop_ratio() > 0.4, "the burst shows while it is recent");
        // Then an hour without loss, reported every second.
        for t in 11..3600 {
            r.update("run", stats(2000 + (t - 10) * 1000, 1000), Timestamp(t * S));
        }
        assert_eq!(r.recent_drop_ratio(), 0.0, "an old burst no longer counts");
        assert!(r.stats.drop_ratio() > 0.0002, "though the lifetime ratio still carries it");
        // A burst late in the agent's life shows, though the lifetime ratio is tiny.
        let (mut rx, mut lost) = (r.stats.received, 1000);
        for t in 3600..3610 {
            rx += 1000;
            lost += 100;
            r.update("run", stats(rx, lost), Timestamp(t * S));
        }
        assert!(r.recent_drop_ratio() > 0.01, "recent: {}", r.recent_drop_ratio());
        assert!(r.stats.drop_ratio() < 0.01, "lifetime: {}", r.stats.drop_ratio());
        assert!(r.samples.len() <= (LOSS_WINDOW_NS / SAMPLE_EVERY_NS) as usize + 2, "bounded: {}", r.samples.len());
    }

    #[test]
    fn a_restarted_agent_starts_over() {
        let mut r = NodeReport::new("one", stats(1_000_000, 10), Timestamp(0));
        r.update("two", stats(100, 50), Timestamp(5 * S));
        assert_eq!(r.recent_drop_ratio(), 0.0, "the new run's first report is its baseline");
        r.update("two", stats(200, 100), Timestamp(10 * S));
        assert_eq!(r.recent_drop_ratio(), 0.5);
    }
}
