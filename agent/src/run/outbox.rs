//! Entries waiting for the operator, within a memory budget. When the operator cannot be reached the
//! outbox fills; past the budget the oldest entries go first (and are counted), so the agent's memory stays
//! bounded however long the outage lasts. Batches that fail to send are put back at the front, in order.

use std::collections::VecDeque;
use std::sync::Mutex;

use faultline_core::Entry;

pub struct Outbox {
    inner: Mutex<Inner>,
    budget: usize,
}

/// An entry waiting to be sent, with the pcap of its flow when recording errors.
pub struct Item {
    pub entry: Entry,
    pub pcap: Option<Vec<u8>>,
}

/// Entries are kept in the batches they came in, each read from its front. One queue of entries would
/// be one large block, copied whole every time it grew: with the operator behind during a burst, that
/// copying (and the fresh pages under it) took half of the engine thread's time.
#[derive(Default)]
struct Inner {
    batches: VecDeque<std::vec::IntoIter<Item>>,
    len: usize,
    bytes: usize,
    dropped: u64,
}

impl Inner {
    /// The cost of the oldest item.
    fn peek_cost(&mut self) -> Option<usize> {
        loop {
            let oldest = self.batches.front_mut()?;
            if let Some(item) = oldest.as_slice().first() {
                return Some(cost(item));
            }
            self.batches.pop_front();
        }
    }

    fn pop_oldest(&mut self) -> Option<Item> {
        loop {
            let oldest = self.batches.front_mut()?;
            if let Some(item) = oldest.next() {
                self.len -= 1;
                self.bytes -= cost(&item);
                return Some(item);
            }
            self.batches.pop_front();
        }
    }
}

/// An item's memory, near enough: its place in the queue and what its strings hold. (Serialising each
/// entry to measure it cost the engine thread as much as finding it.)
fn cost(i: &Item) -> usize {
    let e = &i.entry;
    let text = |s: &String| s.capacity();
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    let mut bytes = std::mem::size_of::<Item>() + text(&e.id) + opt(&e.node) + opt(&e.pcap);
    for ep in [&e.src, &e.dst] {
        bytes += opt(&ep.name) + opt(&ep.namespace);
    }
    bytes += e.error.as_ref().map_or(0, |err| text(&err.msg));
    bytes += e
        .icmp
        .as_ref()
        .map_or(0, |i| text(&i.type_name) + text(&i.code_name) + i.original.as_ref().map_or(0, |o| text(&o.protocol)));
    bytes +=
        e.request.as_ref().map_or(0, |r| text(&r.method) + text(&r.path) + text(&r.version) + r.headers.heap_bytes());
    bytes += e.response.as_ref().map_or(0, |r| text(&r.status_text) + text(&r.version) + r.headers.heap_bytes());
    bytes + i.pcap.as_ref().map_or(0, Vec::capacity)
}

impl Outbox {
    pub fn new(budget: usize) -> Outbox {
        Outbox { inner: Mutex::new(Inner::default()), budget }
    }

    /// Adds entries; returns how many old ones had to be dropped to stay within budget.
    pub fn push(&self, entries: Vec<Item>) -> u64 {
        let Ok(mut g) = self.inner.lock() else { return 0 };
        let before = g.dropped;
        g.len += entries.len();
        g.bytes += entries.iter().map(cost).sum::<usize>();
        g.batches.push_back(entries.into_iter());
        while g.bytes > self.budget && g.pop_oldest().is_some() {
            g.dropped += 1;
        }
        g.dropped - before
    }

    /// Takes up to `max` of the oldest entries.
    pub fn take(&self, max: usize) -> Vec<Item> {
        self.take_bounded(max, usize::MAX)
    }

    /// Takes up to `max` of the oldest entries and about `max_bytes` of them (at least one): a batch of
    /// entries with their recordings must stay well under what the operator accepts in one request.
    pub fn take_bounded(&self, max: usize, max_bytes: usize) -> Vec<Item> {
        let Ok(mut g) = self.inner.lock() else { return Vec::new() };
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < max {
            let Some(next_cost) = g.peek_cost() else { break };
            if !out.is_empty() && bytes + next_cost > max_bytes {
                break;
            }
            let Some(item) = g.pop_oldest() else { break };
            bytes += next_cost;
            out.push(item);
        }
        out
    }

    /// Puts a batch that could not be sent back at the front, dropping (oldest first) what no longer fits.
    pub fn put_back(&self, batch: Vec<Item>) -> u64 {
        let Ok(mut g) = self.inner.lock() else { return 0 };
        let mut kept = Vec::with_capacity(batch.len());
        let mut lost = 0;
        for e in batch.into_iter().rev() {
            let c = cost(&e);
            if g.bytes + c > self.budget {
                lost += 1;
                continue;
            }
            g.bytes += c;
            kept.push(e);
        }
        kept.reverse();
        g.len += kept.len();
        g.dropped += lost;
        g.batches.push_front(kept.into_iter());
        lost
    }

    pub fn len_and_bytes(&self) -> (usize, usize) {
        self.inner.lock().map_or((0, 0), |g| (g.len, g.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::entry::{Endpoint, Protocol};
    use faultline_core::Timestamp;

    fn entry(i: u64) -> Item {
        Item { entry: entry_only(i), pcap: None }
    }

    fn entry_only(i: u64) -> Entry {
        let src = Endpoint::new("10.0.0.1".parse().expect("ip"), Some(1));
        let dst = Endpoint::new("10.0.0.2".parse().expect("ip"), Some(2));
        Entry { id: format!("{i:03}"), ..Entry::new(Protocol::Tcp, Timestamp(i), src, dst) }
    }

    #[test]
    fn entries_come_out_oldest_first_across_the_batches_they_came_in() {
        let one = cost(&entry(1));
        let o = Outbox::new(one * 8);
        assert_eq!(o.push((0..3).map(entry).collect()), 0);
        assert_eq!(o.push(Vec::new()), 0);
        assert_eq!(o.push((3..7).map(entry).collect()), 0);
        let ids = |items: Vec<Item>| items.into_iter().map(|i| i.entry.id).collect::<Vec<_>>();
        assert_eq!(ids(o.take(5)), ["000", "001", "002", "003", "004"]);
        // Over budget: the oldest go, from the older batch first, then from the newer.
        assert_eq!(o.push((7..14).map(entry).collect()), 1);
        assert_eq!(o.len_and_bytes(), (8, one * 8));
        assert_eq!(ids(o.take(100)), ["006", "007", "008", "009", "010", "011", "012", "013"]);
        assert_eq!(o.len_and_bytes(), (0, 0));
        assert!(o.take(1).is_empty());
    }

    #[test]
    fn cost_counts_what_an_entry_holds() {
        let plain = cost(&entry(1));
        assert!(plain >= std::mem::size_of::<Entry>());
        let headers: faultline_core::entry::Headers = [("x-big", "v".repeat(5000))].into_iter().collect();
        let mut big = entry(1);
        big.entry.request = Some(faultline_core::entry::Request {
            method: "GET".into(),
            path: "/".repeat(10_000),
            version: "1.1".into(),
            headers,
            body_size: 0,
        });
        big.pcap = Some(vec![0; 3000]);
        assert!(cost(&big) >= plain + 18_000, "{} vs {plain}", cost(&big));
        assert!(cost(&big) < plain + 20_000, "{} vs {plain}", cost(&big));
    }

    #[test]
    fn stays_within_budget_dropping_the_oldest() {
        let one = cost(&entry(1));
        let o = Outbox::new(one * 10);
        assert_eq!(o.push((0..25).map(entry).collect()), 15);
        let (n, bytes) = o.len_and_bytes();
        assert!(n <= 10 && bytes <= one * 10);
        let batch = o.take(3);
        assert_eq!(batch.first().map(|e| e.entry.id.as_str()), Some("015"), "the newest survive");
        assert_eq!(o.put_back(batch), 0);
        assert_eq!(o.take(1)[0].entry.id, "015", "a failed batch goes back in front, in order");
    }
}
