//! One order for entries found at the same moment (by one sweep of the timers): by time, then by
//! endpoints, then by everything else. The order a hash table's walk gave them differed between runs and
//! between one engine and several shards; this one does not.

use std::cmp::Ordering;

use crate::entry::Entry;

pub fn canonical(a: &Entry, b: &Entry) -> Ordering {
    let cheap = |e: &Entry| (e.timestamp, e.src.ip, e.src.port, e.dst.ip, e.dst.port);
    cheap(a).cmp(&cheap(b)).then_with(|| {
        // Rare (one socket's queries sent together): the whole entry, as written.
        let text = |e: &Entry| serde_json::to_string(e).unwrap_or_default();
        text(a).cmp(&text(b))
    })
}
