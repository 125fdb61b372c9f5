//! Entries from several shards back into one stream: in the order one engine would have found them. Each
//! entry is tagged with the position of the frame (or timer sweep) that found it; entries of one frame
//! come from the one shard that handled it, in that shard's order; entries of one sweep come from every
//! shard and are put in one canonical order (`crate::entry_order::canonical`), as one engine's sweep
//! puts them. An entry is released once every shard has handled everything before its position.

use std::cmp::Ordering;
use std::collections::HashMap;

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
    waiting: Vec<Found>,
    recordings: HashMap<String, Vec<u8>>,
    id_prefix: String,
    next_id: u64,
}

impl Merger {
    pub fn new(shards: usize, id_prefix: String) -> Merger {
        Merger { handled: vec![0; shards], waiting: Vec::new(), recordings: HashMap::new(), id_prefix, next_id: 0 }
    }

    /// What shard `shard` found, having handled every position below `handled`.
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
        self.waiting.extend(found);
        self.recordings.extend(recordings);
    }

    /// Entries every shard is past, in order, with their final ids; their recordings by those ids.
    pub fn release(&mut self, out: &mut Vec<Entry>, recordings: &mut Vec<(String, Vec<u8>)>) {
        let upto = self.handled.iter().copied().min().unwrap_or(0);
        if self.waiting.is_empty() {
            return;
        }
        // Stable: one frame's entries keep their shard's order. Those not ready sort after those ready.
        self.waiting.sort_by(order);
        let ready = self.waiting.partition_point(|f| f.pos < upto);
        let ready = self.waiting.drain(..ready);
        for f in ready {
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
}

fn order(a: &Found, b: &Found) -> Ordering {
    // A sweep comes before the frame at its position.
    let at = |f: &Found| (f.pos, !f.by_sweep);
    at(a).cmp(&at(b)).then_with(|| {
        if a.by_sweep && b.by_sweep {
            crate::entry_order::canonical(&a.entry, &b.entry)
        } else {
            Ordering::Equal
        }
    })
}
