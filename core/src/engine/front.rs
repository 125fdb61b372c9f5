//! The front of the engine: every frame of the node passes here, in capture order, before it reaches the
//! shard that tracks its flow. It decodes and counts what is not a packet, drops copies of a packet seen
//! on another interface (`crate::nat::copies`), chooses the shard (`crate::engine::route`), keeps the clock and says
//! when timers are due — for every shard at once, so that timers fire at the same point of the capture
//! whatever the number of shards — and announces servers seen answering a SYN, which every shard uses to
//! tell the roles of connections picked up mid-stream.
//!
//! The front holds no flow state: one front serves one shard inline (`Engine`) or many on threads, and
//! the entries come out the same.

use std::collections::HashMap;

use crate::config::EngineConfig;
use crate::engine::route::RouteKey;
use crate::engine::stats::Stats;
use crate::flow::{Endpoint, FlowKey};
use crate::nat::aliases::MAX_ALIASES;
use crate::nat::copies::{CapturePoint, Copies, NatPair, Verdict};
use crate::time::Timestamp;
use crate::wire::{DecodeError, Decoded, Packet, Skip, Transport};

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// What to do with one frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    /// Timers are due: every shard sweeps at this time, before the frame is handled.
    pub sweep: Option<Timestamp>,
    /// This endpoint answered a SYN: every shard learns it is a server.
    pub listener: Option<Endpoint>,
    /// The shard that handles the packet, and the NATed tuple pair it revealed; `None`: nothing to handle.
    pub to: Option<(usize, Option<NatPair>)>,
    /// The packet's tuple was just found to be a NATed copy of a tuple tracked on another shard: the
    /// state of its earlier packets moves from the shard they went to (this one) to the packet's shard,
    /// before the frame is handled.
    pub moved: Option<(usize, FlowKey)>,
}

pub struct Front {
    shards: usize,
    copies: Copies,
    hasher: foldhash::fast::FixedState,
    /// The tuples of each NATed connection, all routed to one shard; last seen.
    overrides: Map<FlowKey, (usize, Timestamp)>,
    now: Timestamp,
    next_sweep: Option<Timestamp>,
    sweep_interval_ms: u64,
    idle_timeout_ms: u64,
    /// `copies.saturated` already added to the statistics.
    saturation_counted: u64,
}

impl Front {
    pub fn new(cfg: &EngineConfig, shards: usize) -> Front {
        Front {
            shards: shards.max(1),
            copies: Copies::default(),
            hasher: foldhash::fast::FixedState::with_seed(0x6661_756c_746c_696e),
            overrides: Map::default(),
            now: Timestamp(0),
            next_sweep: None,
            sweep_interval_ms: cfg.sweep_interval_ms(),
            idle_timeout_ms: cfg.idle_timeout_ms,
            saturation_counted: 0,
        }
    }

    /// Frames will come from several interfaces of one node (a live agent): look for copies from the
    /// first frame on.
    pub fn expect_several_interfaces(&mut self) {
        self.copies.expect_several_interfaces();
    }

    /// The latest capture time seen.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Routes one decoded frame captured at `point` at `ts`, counting what goes no further.
    pub fn route(
        &mut self,
        point: CapturePoint,
        ts: Timestamp,
        decoded: &Result<Decoded<'_>, DecodeError>,
        stats: &mut Stats,
    ) -> Routed {
        stats.packets += 1;
        let p = match decoded {
            Ok(Decoded::Packet(p)) => p,
            Ok(Decoded::Skipped(skip)) => {
                match skip {
                    Skip::NotIp => stats.not_ip += 1,
                    Skip::Fragment => stats.fragments += 1,
                    Skip::OtherProtocol => stats.other_protocols += 1,
                    Skip::TooDeep => stats.tunnels_too_deep += 1,
                }
                return Routed { sweep: self.tick(ts, stats), ..Routed::default() };
            }
            Err(_) => {
                stats.decode_errors += 1;
                return Routed::default();
            }
        };
        let verdict = self.copies.check(point, p);
        let sweep = self.tick(p.ts, stats);
        let nat = match verdict {
            Verdict::Keep => None,
            Verdict::Copy => {
                stats.duplicate_packets += 1;
                return Routed { sweep, ..Routed::default() };
            }
            Verdict::Nat(pair) => Some(pair),
        };
        let listener = match &p.transport {
            Transport::Tcp(t) if t.flags.syn() && t.flags.ack() => Some((p.src, t.src_port)),
            _ => None,
        };
        let (shard, moved) = self.shard_of(p, nat.as_ref(), stats);
        Routed { sweep, listener, to: Some((shard, nat)), moved }
    }

    /// Moves the clock to `now`; the time to sweep at, if timers are due.
    pub fn tick(&mut self, now: Timestamp, stats: &mut Stats) -> Option<Timestamp> {
        if now > self.now {
            self.now = now;
        }
        if self.next_sweep.is_some_and(|t| self.now < t) {
            return None;
        }
        self.next_sweep = Some(self.now.plus_millis(self.sweep_interval_ms));
        let (now, idle) = (self.now, self.idle_timeout_ms);
        self.overrides.retain(|_, (_, last)| now < last.plus_millis(idle));
        stats.copy_fingerprints_saturated += self.copies.saturated - self.saturation_counted;
        self.saturation_counted = self.copies.saturated;
        Some(self.now)
    }

    /// The packet's shard, and the shard that must forget its tuple (see `Routed::moved`).
    fn shard_of(
        &mut self,
        p: &Packet<'_>,
        nat: Option<&NatPair>,
        stats: &mut Stats,
    ) -> (usize, Option<(usize, FlowKey)>) {
        if self.shards == 1 {
            return (0, None);
        }
        let key = RouteKey::of(p);
        if let Some(pair) = nat {
            // Both tuples of the connection to one shard: the shard of a tuple already paired (a third
            // capture point adds a third tuple to a pair), else the shard of the one seen first. A tuple
            // whose earlier packets went elsewhere — usually none did: the pair shows on a connection's
            // first packet, but not when copies were missed — has its state moved there: left behind, it
            // would be reported apart (a second connection that never finished), and the pair decided
            // without it.
            let protocol = if matches!(p.transport, Transport::Tcp(_)) { 6 } else { 17 };
            let own = |k: FlowKey| RouteKey::of_flow(protocol, k).shard(&self.hasher, self.shards);
            let earlier = self.overrides.get(&pair.earlier).map(|(s, _)| *s);
            let this = self.overrides.get(&pair.this).map(|(s, _)| *s);
            let (shard, moved, was) = match (earlier, this) {
                (Some(shard), Some(this)) => {
                    if this != shard {
                        // Two pairs of one connection, decided on two shards, now linked (more than two
                        // tuples, or addresses rewritten mid-stream): this tuple's state moves, but what
                        // the other shard decided of its pair stays there. Counted, not silent.
                        stats.nat_tuples_apart += 1;
                    }
                    (shard, pair.this, this)
                }
                (Some(shard), None) => (shard, pair.this, own(pair.this)),
                (None, Some(shard)) => (shard, pair.earlier, own(pair.earlier)),
                (None, None) => (own(pair.earlier), pair.this, own(pair.this)),
            };
            // Both tuples are marked as the connection's: a third tuple paired with either joins them.
            for tuple in [pair.earlier, pair.this] {
                if self.overrides.len() < MAX_ALIASES || self.overrides.contains_key(&tuple) {
                    self.overrides.insert(tuple, (shard, p.ts));
                } else {
                    // Counted: the connection's tuples may be tracked apart, and reported twice.
                    stats.copy_fingerprints_saturated += 1;
                    return (shard, None);
                }
            }
            return (shard, (was != shard).then_some((was, moved)));
        }
        if !self.overrides.is_empty() {
            if let Some((shard, last)) = key.flow.and_then(|f| self.overrides.get_mut(&f)) {
                *last = (*last).max(p.ts);
                return (*shard, None);
            }
        }
        (key.shard(&self.hasher, self.shards), None)
    }
}
