//! The operator's memory of recent entries: a bounded ring (what the dashboard and recordings serve;
//! ErrorViews count entries as they arrive, not from here), numbered so that a live stream can read what
//! is new since it last looked, plus the latest statistics of every agent. Batches are deduplicated by
//! (agent run, sequence number): a batch retried after a lost reply counts once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use faultline_model::ingest::Batch;
use faultline_model::{Entry, Timestamp};

pub use crate::node_report::NodeReport;

#[derive(Debug, PartialEq)]
pub enum Accepted {
    /// The batch's entries, as stored (for the views to count).
    New(Vec<Arc<Entry>>),
    Duplicate,
}

/// What a reader that fell behind gets: a bounded slice, and how much it missed.
pub struct Since {
    pub entries: Vec<Arc<Entry>>,
    pub cursor: u64,
    pub missed: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
    capacity: usize,
    /// The number of the newest entry, for readers that wait for new ones (the dashboard's live stream).
    head: tokio::sync::watch::Sender<u64>,
}

/// Recordings kept at most, in bytes; the oldest go first.
const PCAP_BYTES: usize = 64 << 20;

/// Where an entry's recording is served.
pub fn pcap_path(id: &str) -> String {
    format!("/api/v1/entries/{id}/pcap")
}

#[derive(Default)]
struct Inner {
    entries: VecDeque<(u64, Arc<Entry>)>,
    next_seq: u64,
    /// Highest batch sequence accepted per agent run.
    runs: HashMap<String, u64>,
    /// (TapConfig, node) → latest report.
    nodes: BTreeMap<(String, String), NodeReport>,
    evicted: u64,
    pcaps: HashMap<String, Arc<Vec<u8>>>,
    pcap_order: VecDeque<String>,
    pcap_bytes: usize,
}

impl Store {
    pub fn new(capacity: usize) -> Store {
        Store {
            inner: Mutex::new(Inner { next_seq: 1, ..Inner::default() }),
            capacity,
            head: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn ingest(&self, tapconfig: &str, mut batch: Batch, now: Timestamp) -> Accepted {
        let Ok(mut g) = self.inner.lock() else { return Accepted::Duplicate };
        let last = g.runs.get(&batch.agent_run).copied().unwrap_or(0);
        if batch.seq <= last {
            return Accepted::Duplicate;
        }
        g.runs.insert(batch.agent_run.clone(), batch.seq);
        let key = (tapconfig.to_owned(), batch.node.clone());
        match g.nodes.get_mut(&key) {
            Some(r) => r.update(&batch.agent_run, std::mem::take(&mut batch.stats), now),
            None => {
                let r = NodeReport::new(&batch.agent_run, std::mem::take(&mut batch.stats), now);
                g.nodes.insert(key, r);
            }
        }
        for (id, pcap) in std::mem::take(&mut batch.pcaps) {
            g.pcap_bytes += pcap.len();
            g.pcaps.insert(id.clone(), Arc::new(pcap));
            g.pcap_order.push_back(id);
        }
        while g.pcap_bytes > PCAP_BYTES {
            let Some(old) = g.pcap_order.pop_front() else { break };
            if let Some(p) = g.pcaps.remove(&old) {
                g.pcap_bytes -= p.len();
            }
        }
        Accepted::New(self.push(&mut g, batch.entries))
    }

    /// Entries of a batch already accepted, held back until the cluster's state settled (their cause
    /// asked again): stored now, with the recordings their batch brought.
    pub fn add_later(&self, entries: Vec<Entry>) -> Vec<Arc<Entry>> {
        let Ok(mut g) = self.inner.lock() else { return Vec::new() };
        self.push(&mut g, entries)
    }

    fn push(&self, g: &mut Inner, entries: Vec<Entry>) -> Vec<Arc<Entry>> {
        let mut added = Vec::with_capacity(entries.len());
        for mut e in entries {
            if g.pcaps.contains_key(&e.id) {
                e.pcap = Some(pcap_path(&e.id));
            }
            let seq = g.next_seq;
            g.next_seq += 1;
            let e = Arc::new(e);
            added.push(e.clone());
            g.entries.push_back((seq, e));
        }
        while g.entries.len() > self.capacity {
            g.entries.pop_front();
            g.evicted += 1;
        }
        self.head.send_replace(g.next_seq - 1);
        added
    }

    /// At most `max` entries numbered after `cursor` (and the cursor to pass next time), oldest first, and how many after `cursor` the
    /// reader will never see because the ring overwrote them before it came back.
    pub fn since_bounded(&self, cursor: u64, max: usize) -> Since {
        let Ok(g) = self.inner.lock() else { return Since { entries: Vec::new(), cursor, missed: 0 } };
        let start = g.entries.partition_point(|(s, _)| *s <= cursor);
        let oldest = g.entries.get(start).map_or(g.next_seq, |(s, _)| *s);
        let missed = oldest.saturating_sub(cursor + 1);
        let entries: Vec<Arc<Entry>> = g.entries.range(start..).take(max).map(|(_, e)| e.clone()).collect();
        let cursor = if entries.len() == max { g.entries[start + max - 1].0 } else { g.next_seq - 1 };
        Since { entries, cursor, missed }
    }

    /// Wakes when entries arrive; pair with `since`.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Every entry held, oldest first.
    pub fn snapshot(&self) -> Vec<Arc<Entry>> {
        self.inner.lock().map(|g| g.entries.iter().map(|(_, e)| e.clone()).collect()).unwrap_or_default()
    }

    /// The newest entry with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        let g = self.inner.lock().ok()?;
        g.entries.iter().rev().find(|(_, e)| e.id == id).map(|(_, e)| e.clone())
    }

    /// An entry's recording, with the entry (for its namespaces).
    pub fn pcap(&self, id: &str) -> Option<(Arc<Entry>, Arc<Vec<u8>>)> {
        let g = self.inner.lock().ok()?;
        let pcap = g.pcaps.get(id)?.clone();
        drop(g);
        Some((self.get(id)?, pcap))
    }

    pub fn node_reports(&self) -> BTreeMap<(String, String), NodeReport> {
        self.inner.lock().map(|g| g.nodes.clone()).unwrap_or_default()
    }

    /// Whether an agent of `tapconfig` reports from `node`.
    pub fn reports(&self, tapconfig: &str, node: &str) -> bool {
        self.inner.lock().is_ok_and(|g| g.nodes.contains_key(&(tapconfig.to_owned(), node.to_owned())))
    }

    /// Forgets a node's statistics (its agent is gone for good).
    pub fn forget_node(&self, tapconfig: &str, node: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.nodes.remove(&(tapconfig.to_owned(), node.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_model::entry::{Endpoint, Protocol};
    use faultline_model::ingest::AgentStats;

    fn batch(run: &str, seq: u64, n: usize) -> Batch {
        let src = Endpoint::new("10.0.0.1".parse().expect("ip"), Some(1));
        let dst = Endpoint::new("10.0.0.2".parse().expect("ip"), Some(2));
        let e = Entry { id: "x".into(), ..Entry::new(Protocol::Tcp, Timestamp(0), src, dst) };
        Batch {
            node: "n1".into(),
            agent_run: run.into(),
            seq,
            stats: AgentStats::default(),
            entries: vec![e; n],
            pcaps: Default::default(),
            ..Batch::default()
        }
    }

    #[test]
    fn batches_count_once_and_readers_see_only_what_is_new() {
        let s = Store::new(100);
        assert!(matches!(s.ingest("t", batch("a", 1, 3), Timestamp(1)), Accepted::New(v) if v.len() == 3));
        assert_eq!(s.ingest("t", batch("a", 1, 3), Timestamp(2)), Accepted::Duplicate, "a retried batch");
        assert!(
            matches!(s.ingest("t", batch("b", 1, 2), Timestamp(3)), Accepted::New(v) if v.len() == 2),
            "another run"
        );
        let Since { entries: all, cursor, .. } = s.since_bounded(0, usize::MAX);
        assert_eq!((all.len(), cursor), (5, 5));
        s.ingest("t", batch("a", 2, 1), Timestamp(4));
        let Since { entries: new, cursor, .. } = s.since_bounded(cursor, usize::MAX);
        assert_eq!((new.len(), cursor), (1, 6));
        assert_eq!(s.node_reports().len(), 1, "one (tapconfig, node)");
    }

    #[test]
    fn entries_held_back_join_later_with_their_batchs_recording() {
        let s = Store::new(100);
        let mut b = batch("a", 1, 1);
        b.pcaps.insert("held".into(), vec![1, 2, 3]);
        let mut held = b.entries[0].clone();
        held.id = "held".into();
        assert!(matches!(s.ingest("t", b, Timestamp(1)), Accepted::New(v) if v.len() == 1));
        let later = s.add_later(vec![held]);
        assert_eq!(later[0].pcap.as_deref(), Some("/api/v1/entries/held/pcap"));
        let Since { entries, cursor, .. } = s.since_bounded(0, usize::MAX);
        assert_eq!((entries.len(), cursor), (2, 2), "a reader sees it as new");
    }

    #[test]
    fn capacity_is_bounded() {
        let s = Store::new(10);
        s.ingest("t", batch("a", 1, 25), Timestamp(1));
        let Since { entries: all, cursor, .. } = s.since_bounded(0, usize::MAX);
        assert_eq!((all.len(), cursor), (10, 25));
    }

    #[test]
    fn a_reader_that_falls_behind_reads_a_bounded_slice_and_learns_what_it_missed() {
        let s = Store::new(10);
        s.ingest("t", batch("a", 1, 4), Timestamp(1));
        let first = s.since_bounded(0, 3);
        assert_eq!((first.entries.len(), first.cursor, first.missed), (3, 3, 0));
        s.ingest("t", batch("a", 2, 20), Timestamp(2));
        // Entries 4..=14 were overwritten before the reader came back; 15..=24 are held.
        let next = s.since_bounded(first.cursor, 3);
        assert_eq!((next.entries.len(), next.cursor, next.missed), (3, 17, 11));
        let rest = s.since_bounded(next.cursor, 100);
        assert_eq!((rest.entries.len(), rest.cursor, rest.missed), (7, 24, 0));
    }
}
