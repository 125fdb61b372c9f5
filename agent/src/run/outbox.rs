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

#[derive(Default)]
struct Inner {
    queue: VecDeque<(Item, usize)>,
    bytes: usize,
    dropped: u64,
}

/// An item's memory, near enough: its place in the queue and what its strings hold. (Serialising each
/// entry to measure it cost the engine thread as much as finding it.)
fn cost(i: &Item) -> usize {
    let e = &i.entry;
    let text = |s: &String| s.capacity();
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    let mut bytes = std::mem::size_of::<(Item, usize)>() + text(&e.id) + opt(&e.node) + opt(&e.pcap);
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
    pub fn push(&self, entries: impl IntoIterator<Item = Item>) -> u64 {
        let Ok(mut g) = self.inner.lock() else { return 0 };
        let before = g.dropped;
        for e in entries {
            let c = cost(&e);
            g.bytes += c;
            g.queue.push_back((e, c));
        }
        while g.bytes > self.budget {
            match g.queue.pop_front() {
                Some((_, c)) => {
                    g.bytes -= c;
                    g.dropped += 1;
                }
                None => break,
            }
        }
        g.dropped - before
    }

    /// Takes up to `max` of the oldest entries.
    pub fn take(&self, max: usize) -> Vec<Item> {
        let Ok(mut g) = self.inner.lock() else { return Vec::new() };
        let n = max.min(g.queue.len());
        let batch: Vec<(Item, usize)> = g.queue.drain(..n).collect();
        g.bytes -= batch.iter().map(|(_, c)| c).sum::<usize>();
        batch.into_iter().map(|(e, _)| e).collect()
    }

    /// Puts a batch that could not be sent back at the front, dropping (oldest first) what no longer fits.
    pub fn put_back(&self, batch: Vec<Item>) -> u64 {
        let Ok(mut g) = self.inner.lock() else { return 0 };
        let before = g.dropped;
        for e in batch.into_iter().rev() {
            let c = cost(&e);
            if g.bytes + c > self.budget {
                g.dropped += 1;
                continue;
            }
            g.bytes += c;
            g.queue.push_front((e, c));
        }
        g.dropped - before
    }

    pub fn len_and_bytes(&self) -> (usize, usize) {
        self.inner.lock().map_or((0, 0), |g| (g.queue.len(), g.bytes))
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
        assert_eq!(o.push((0..25).map(entry)), 15);
        let (n, bytes) = o.len_and_bytes();
        assert!(n <= 10 && bytes <= one * 10);
        let batch = o.take(3);
        assert_eq!(batch.first().map(|e| e.entry.id.as_str()), Some("015"), "the newest survive");
        assert_eq!(o.put_back(batch), 0);
        assert_eq!(o.take(1)[0].entry.id, "015", "a failed batch goes back in front, in order");
    }
}
