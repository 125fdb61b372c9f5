//! The flow table: connections by 4-tuple, bounded. Keys are direction-free (the smaller endpoint first)
//! so both directions of a connection find the same entry.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::tcp::conn::Conn;

pub type Endpoint = (IpAddr, u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    lo: Endpoint,
    hi: Endpoint,
}

impl FlowKey {
    pub fn new(a: Endpoint, b: Endpoint) -> FlowKey {
        if a <= b {
            FlowKey { lo: a, hi: b }
        } else {
            FlowKey { lo: b, hi: a }
        }
    }
}

pub type FlowTable = HashMap<FlowKey, Conn, foldhash::fast::RandomState>;

/// Makes room for one more flow by dropping the least recently seen sixteenth of the table. Returns how
/// many were dropped. Amortised: one O(n) pass buys n/16 inserts. The table is then rebuilt at its size:
/// removals leave tombstones in a hash table, and a full table of tombstones would otherwise double its
/// allocation on the next insert — a SYN flood would cost twice the memory budgeted for it.
pub fn evict_oldest(table: &mut FlowTable) -> u64 {
    let n = table.len();
    if n == 0 {
        return 0;
    }
    let drop = (n / 16).max(1);
    let mut ages: Vec<u64> = table.values().map(|c| c.last_ts.nanos()).collect();
    let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    let mut dropped = 0u64;
    table.retain(|_, c| {
        if dropped < drop as u64 && c.last_ts.nanos() <= cutoff {
            dropped += 1;
            false
        } else {
            true
        }
    });
    table.shrink_to(0);
    dropped
}
