//! Entries from several shards back into one stream: in the order one engine would have found them. Each
//! entry is tagged with the position of the frame (or timer sweep) that found it; entries of one frame
//! come from the one shard that handled it, in that shard's order; entries of one sweep come from every
//! shard and are put in one canonical order (`crate::engine::order::canonical`), as one engine's sweep
//! puts them. An entry is released once every shard has handled everything before its position.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};

use crate::entry::Entry;

/// An entry as a shard found it.
pub struct Found {
    /// The frame's position in the capture (its sweep comes before it).
    pub pos: u64,
    pub by_sweep: bool,
    /// The shard's own id for it (recordings are named by it).
    pub shard_id: String,
    /// The entry, its id empty.
    pub entry: Entry,
}

impl Found {
    /// What a shard found at `pos` (by the sweep there, or by its frame), drained from `entries` and
    /// tagged for the merger.
    pub fn tag(entries: &mut Vec<Entry>, pos: u64, by_sweep: bool) -> impl Iterator<Item = Found> + '_ {
        entries.drain(..).map(move |mut entry| Found { pos, by_sweep, shard_id: std::mem::take(&mut entry.id), entry })
    }
}

pub struct Merger {
    /// Per shard: every position below this is handled.
    handled: Vec<u64>,
    /// Per shard: what it found, in the order it found it — by position, a sweep's entries before its
    /// frame's, and a sweep's own entries in canonical order (`Shard::sweep` sorts them). Releasing is
    /// then a merge of these queues, never a sort of the entries (large structs) themselves.
    queues: Vec<VecDeque<Found>>,
    recordings: HashMap<String, Vec<u8>>,
    id_prefix: String,
    next_id: u64,
}

impl Merger {
    pub fn new(shards: usize, id_prefix: String) -> Merger {
        Merger {
            handled: vec![0; shards],
            queues: (0..shards).map(|_| VecDeque::new()).collect(),
            recordings: HashMap::new(),
            id_prefix,
            next_id: 0,
        }
    }

    /// What shard `shard` found, in the order it found it, having handled every position below `handled`.
    pub fn add(
        &mut self,
        shard: usize,
        handled: u64,
        found: impl IntoIterator<Item = Found>,
        recordings: Vec<(String, Vec<u8>)>,
    ) {
        if let Some(h) = self.handled.get_mut(shard) {
            *h = (*h).max(handled);
        }
        if let Some(q) = self.queues.get_mut(shard) {
            q.extend(found);
        }
        self.recordings.extend(recordings);
    }

    /// Entries every shard is past, in order, with their final ids; their recordings by those ids.
    pub fn release(&mut self, out: &mut Vec<Entry>, recordings: &mut Vec<(String, Vec<u8>)>) {
        let upto = self.handled.iter().copied().min().unwrap_or(0);
        // The earliest of the queues' heads, each time: the same order a stable sort of all of them by
        // `order` gives (among equals, the lower shard first — only sweep entries equal in every field,
        // which print the same).
        while let Some(k) = self.next_ready(upto) {
            let Some(f) = self.queues.get_mut(k).and_then(VecDeque::pop_front) else { break };
            let mut e = f.entry;
            self.next_id += 1;
            e.id = format!("{}{}", self.id_prefix, self.next_id);
            if !self.recordings.is_empty() {
                if let Some(pcap) = self.recordings.remove(&f.shard_id) {
                    recordings.push((e.id.clone(), pcap));
                }
            }
            out.push(e);
        }
    }

    /// The shard whose next entry comes first, if it is before `upto`.
    fn next_ready(&self, upto: u64) -> Option<usize> {
        let mut best: Option<(usize, &Found)> = None;
        for (k, q) in self.queues.iter().enumerate() {
            let Some(head) = q.front() else { continue };
            if head.pos >= upto {
                continue;
            }
            if best.is_none_or(|(_, b)| order(head, b) == Ordering::Less) {
                best = Some((k, head));
            }
        }
        best.map(|(k, _)| k)
    }
}

fn order(a: &Found, b: &Found) -> Ordering {
    // A sweep comes before the frame at its position.
    let at = |f: &Found| (f.pos, !f.by_sweep);
    at(a).cmp(&at(b)).then_with(|| {
        if a.by_sweep && b.by_sweep {
            crate::engine::order::canonical(&a.entry, &b.entry)
        } else {
            Ordering::Equal
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Endpoint, Protocol};
    use crate::time::Timestamp;

    /// An entry at `ms` from port `port`, found at `pos` (by a sweep or a frame), with the shard's id `id`.
    fn found(pos: u64, by_sweep: bool, ms: u64, port: u16, id: &str) -> Found {
        let ip = "10.0.0.1".parse().expect("ip");
        let entry = Entry::new(
            Protocol::Tcp,
            Timestamp(ms * 1_000_000),
            Endpoint::new(ip, Some(port)),
            Endpoint::new(ip, Some(80)),
        );
        Found { pos, by_sweep, shard_id: id.into(), entry }
    }

    fn ports(out: &[Entry]) -> Vec<u16> {
        out.iter().filter_map(|e| e.src.port).collect()
    }

    #[test]
    fn entries_come_out_in_capture_order_once_every_shard_is_past_them() {
        let mut m = Merger::new(2, "n-".into());
        let (mut out, mut rec) = (Vec::new(), Vec::new());
        // Shard 1 reports first, past position 4; shard 0 is only past 3: only positions 0..3 go out.
        m.add(1, 4, [found(2, false, 5, 12, "1/1")], vec![]);
        m.add(0, 3, [found(1, false, 4, 1, "0/1")], vec![]);
        m.release(&mut out, &mut rec);
        assert_eq!(ports(&out), [1, 12]);
        // A sweep at 5 found entries on both shards (each in canonical order); its frame's entry follows.
        m.add(0, 11, [found(5, true, 3, 5, "0/2"), found(5, true, 8, 6, "0/3"), found(5, false, 9, 50, "0/4")], vec![]);
        m.add(
            1,
            11,
            [found(5, true, 6, 7, "1/3"), found(7, false, 9, 17, "1/4")],
            vec![("1/3".into(), b"pcap".to_vec())],
        );
        m.release(&mut out, &mut rec);
        // By position; at 5 the sweep's entries by time across shards, then the frame's; then 7.
        assert_eq!(ports(&out), [1, 12, 5, 7, 6, 50, 17]);
        let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["n-1", "n-2", "n-3", "n-4", "n-5", "n-6", "n-7"]);
        // A recording follows its entry to the final id.
        assert_eq!(rec, [("n-4".to_string(), b"pcap".to_vec())]);
    }
}
