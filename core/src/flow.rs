//! The flow table: connections by 4-tuple, bounded. Keys are direction-free (the smaller endpoint first)
//! so both directions of a connection find the same entry.
//!
//! A connection that is over stays known for a while (see [`Lingering`]); on a busy node those are most
//! of the flows tracked (every connection lingers for `closeTimeoutMs`), so they move to a table of their
//! own whose entries are a few words instead of a whole connection. That keeps the table of live
//! connections small enough to stay in cache, and makes growing either table a small copy.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use crate::tcp::conn::Conn;
use crate::time::Timestamp;

pub type Endpoint = (IpAddr, u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    lo: Endpoint,
    hi: Endpoint,
}

/// Hashes each endpoint as one or two words. The derived hash fed the hasher a variant tag, a length and
/// the address bytes separately, several calls per endpoint for every packet's lookup.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        for (ip, port) in [self.lo, self.hi] {
            match ip {
                IpAddr::V4(a) => h.write_u64((u64::from(a.to_bits()) << 16) | u64::from(port)),
                IpAddr::V6(a) => {
                    h.write_u128(a.to_bits());
                    h.write_u16(port);
                }
            }
        }
    }
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

/// What is left of a connection that is over (closed, reset, or its error reported): enough to absorb
/// its late retransmissions and RSTs until `until`, rather than mistake them for a new connection, and
/// to tell a new attempt on the same 4-tuple (a SYN with another initial sequence number) from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lingering {
    /// The initial sequence number of the client's SYN, if one was seen.
    pub client_isn: Option<u32>,
    pub last_ts: Timestamp,
    pub until: Timestamp,
}

type Map<V> = HashMap<FlowKey, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub struct FlowTable {
    pub live: Map<Conn>,
    pub lingering: Map<Lingering>,
}

impl FlowTable {
    /// Flows tracked, live or lingering: what the flow budget counts.
    pub fn len(&self) -> usize {
        self.live.len() + self.lingering.len()
    }

    /// Moves a connection that is over to the lingering table.
    pub fn retire(&mut self, key: FlowKey, what_is_left: Lingering) {
        self.live.remove(&key);
        self.lingering.insert(key, what_is_left);
    }

    /// Makes room for one more flow by dropping the least recently seen sixteenth of one table; returns
    /// how many were dropped. Lingering flows go first while they are at least a sixteenth of all: they
    /// were reported already, and forgetting one early risks only reading a very late packet as a new
    /// flow. Otherwise (a SYN flood) the oldest live connections go.
    pub fn evict_oldest(&mut self) -> u64 {
        if self.lingering.len() * 16 >= self.len() {
            evict_oldest(&mut self.lingering, |l| l.last_ts)
        } else {
            evict_oldest(&mut self.live, |c| c.last_ts)
        }
    }
}

/// Drops the least recently seen sixteenth of `table` (at least one). Amortised: one O(n) pass buys n/16
/// inserts. The table is then rebuilt at its size: removals leave tombstones in a hash table, and a full
/// table of tombstones would otherwise double its allocation on the next insert — a SYN flood would cost
/// twice the memory budgeted for it.
fn evict_oldest<V>(table: &mut Map<V>, last_seen: impl Fn(&V) -> Timestamp) -> u64 {
    let n = table.len();
    if n == 0 {
        return 0;
    }
    let drop = (n / 16).max(1);
    let mut ages: Vec<u64> = table.values().map(|v| last_seen(v).nanos()).collect();
    let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
    let cutoff = *cutoff;
    let mut dropped = 0u64;
    table.retain(|_, v| {
        if dropped < drop as u64 && last_seen(v).nanos() <= cutoff {
            dropped += 1;
            false
        } else {
            true
        }
    });
    table.shrink_to(0);
    dropped
}
