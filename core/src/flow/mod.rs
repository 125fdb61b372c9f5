//! The flow table: connections by 4-tuple, bounded. Keys are direction-free (the smaller endpoint first)
//! so both directions of a connection find the same entry.
//!
//! A connection that is over stays known for a while (see [`Lingering`]); on a busy node those are most
//! of the flows tracked (every connection lingers for `closeTimeoutMs`), so they move to a table of their
//! own whose entries are a few words instead of a whole connection. That keeps the table of live
//! connections small enough to stay in cache, and makes growing either table a small copy.

pub(crate) mod recorder;

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

    /// Both endpoints, the smaller first.
    pub fn ends(&self) -> (Endpoint, Endpoint) {
        (self.lo, self.hi)
    }

    /// The endpoint of this flow that is not `one`.
    pub fn other_end(&self, one: Endpoint) -> Endpoint {
        if self.lo == one {
            self.hi
        } else {
            self.lo
        }
    }
}

/// What is left of a connection that is over (closed, reset, or its error reported): enough to absorb
/// its late retransmissions and RSTs for a while after its last packet, rather than mistake them for a new
/// connection, and to tell a new attempt on the same 4-tuple (a SYN with another initial sequence number)
/// from them. Sixteen bytes: a busy node has every connection of the last minute lingering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lingering {
    /// The latest packet (or decision) of the connection; it is forgotten a linger time after this.
    pub last_ts: Timestamp,
    client_isn: u32,
    has_isn: bool,
}

impl Lingering {
    pub fn new(client_isn: Option<u32>, last_ts: Timestamp) -> Lingering {
        Lingering { last_ts, client_isn: client_isn.unwrap_or(0), has_isn: client_isn.is_some() }
    }

    /// The initial sequence number of the client's SYN, if one was seen.
    pub fn client_isn(&self) -> Option<u32> {
        self.has_isn.then_some(self.client_isn)
    }
}

/// The lingering table's key: a 64-bit digest of the 4-tuple rather than the 40-byte tuple itself. Two
/// tuples with one digest (one chance in 2^64 per pair) would only make a new connection's first packets
/// look late.
pub type Digest = u64;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One flow's state out of its table (`FlowTable::take`). Moved to another shard, its buffered bytes stay
/// charged to the budget of the shard that held them until they are released.
pub struct TakenFlow {
    live: Option<Conn>,
    lingering: Option<Lingering>,
}

#[derive(Default)]
pub(crate) struct FlowTable {
    pub(crate) live: Map<FlowKey, Conn>,
    pub(crate) lingering: Map<Digest, Lingering>,
    digests: foldhash::fast::FixedState,
}

impl FlowTable {
    /// Flows tracked, live or lingering: what the flow budget counts.
    pub fn len(&self) -> usize {
        self.live.len() + self.lingering.len()
    }

    pub fn digest(&self, key: &FlowKey) -> Digest {
        use std::hash::BuildHasher;
        self.digests.hash_one(key)
    }

    /// Takes whatever is known of flow `key`, live or lingering, out of the table: to forget it (the alias
    /// of a NAT pair) or to hand it to another shard (`put`).
    pub fn take(&mut self, key: &FlowKey) -> TakenFlow {
        let d = self.digest(key);
        TakenFlow { live: self.live.remove(key), lingering: self.lingering.remove(&d) }
    }

    /// Puts back what `take` took (from this table or another's).
    pub fn put(&mut self, key: FlowKey, flow: TakenFlow) {
        if let Some(conn) = flow.live {
            self.live.insert(key, conn);
        }
        if let Some(l) = flow.lingering {
            let d = self.digest(&key);
            self.lingering.insert(d, l);
        }
    }

    /// Moves a connection that is over to the lingering table.
    pub fn retire(&mut self, key: FlowKey, what_is_left: Lingering) {
        self.live.remove(&key);
        let d = self.digest(&key);
        self.lingering.insert(d, what_is_left);
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
fn evict_oldest<K: Eq + Hash, V>(table: &mut Map<K, V>, last_seen: impl Fn(&V) -> Timestamp) -> u64 {
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
    // `shrink_to` rehashes only into a smaller allocation; at the same size the tombstones stay, eat the
    // room left, and the table doubles on a later insert (seen as 674 instead of 337 bytes per flow,
    // depending on where in that cycle the flood stopped). When the room left cannot take the table back
    // to where it was, it is rebuilt at its size.
    table.shrink_to(0);
    if table.capacity() < n {
        let mut fresh = Map::with_capacity_and_hasher(n, table.hasher().clone());
        fresh.extend(table.drain());
        *table = fresh;
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full table under churn (a SYN flood): insert to the cap, evict a sixteenth, again and again. The
    /// allocation must never double, wherever in the cycle one looks.
    #[test]
    fn churn_at_the_cap_never_doubles_the_table() {
        const CAP: usize = 20_000;
        let mut table: Map<u64, Timestamp> = Map::default();
        let mut largest = 0;
        for i in 0..400_000u64 {
            if table.len() >= CAP {
                evict_oldest(&mut table, |t| *t);
            }
            table.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), Timestamp(i));
            largest = largest.max(table.capacity());
        }
        // 20,000 items fit in 32,768 buckets (a capacity of 28,672); doubled would be 57,344.
        assert!(largest < 2 * CAP, "capacity reached {largest}");
    }
}
