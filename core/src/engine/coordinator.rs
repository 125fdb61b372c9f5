//! The front's decisions, one way for every engine. A frame is decoded and routed by the front, and what
//! that decides — timers due on every shard, a server learnt, a tuple's state moving, the packet itself —
//! goes to the shards in capture order, each step numbered by its position so that what shards find can
//! be merged back in the order one engine finds it. How a step reaches a shard is `Shards`'s business:
//! one shard on the caller's thread (`Engine`), several there (`ShardedInline`), or threads of their own
//! (the agent's engine threads). The front, the clock and the steps are the same for all.

use std::sync::Arc;

use super::frames::FrameSource;
use super::front::Front;
use super::stats::Stats;
use super::Analyzer;
use crate::config::EngineConfig;
use crate::entry::Entry;
use crate::flow::{Endpoint, FlowKey};
use crate::nat::copies::{CapturePoint, NatPair};
use crate::time::Timestamp;
use crate::wire::{self, DecodeError, Decoded, LinkType, Packet};

/// A frame for one shard: its bytes, as decoded, and where they are kept when the shard is on another
/// thread.
pub struct ShardFrame<'a> {
    pub link: LinkType,
    pub data: &'a [u8],
    pub ts: Timestamp,
    pub packet: &'a Packet<'a>,
    /// The buffer the frame is in and its number there, when the caller shares it (no copy needed).
    pub shared: Option<(&'a Arc<dyn FrameSource>, usize)>,
}

/// How the front's steps reach the shards. Positions grow by one per frame and per sweep of the clock.
pub trait Shards: Send {
    fn count(&self) -> usize;
    /// Every shard's timers at `now`, at position `pos` (at the end of input, everything pending).
    fn sweep(&mut self, pos: u64, now: Timestamp, end_of_input: bool, out: &mut Vec<Entry>);
    /// `server` answered a SYN: every shard learns it.
    fn listener(&mut self, server: Endpoint);
    /// Tuple `key`'s state, tracked on shard `from`, moves to shard `to` before frame `pos` reaches it.
    fn move_flow(&mut self, key: FlowKey, from: usize, to: usize, pos: u64, out: &mut Vec<Entry>);
    /// Frame `pos`'s packet, for shard `shard`.
    fn packet(&mut self, shard: usize, pos: u64, frame: &ShardFrame<'_>, nat: Option<NatPair>, out: &mut Vec<Entry>);
    /// Every position below `upto` has been handed out (`by_clock`: by a tick of the clock, not a frame):
    /// what is ready may go to `out`.
    fn handed(&mut self, upto: u64, by_clock: bool, out: &mut Vec<Entry>);
    /// End of input, at position `pos` and time `now`: everything pending is decided and goes to `out`.
    fn finish(&mut self, pos: u64, now: Timestamp, out: &mut Vec<Entry>);
    /// Hands out what is gathered (shards on other threads); nothing to do on the caller's thread.
    fn hand_out(&mut self, _out: &mut Vec<Entry>) {}
    fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)>;
    /// Every shard's counters, summed.
    fn stats(&self) -> Stats;
    fn flow_count(&self) -> usize;
}

/// The front, and shards reached through `S`.
pub struct Coordinator<S: Shards> {
    front: Front,
    /// What the front counts: frames, copies, what does not decode.
    front_stats: Stats,
    /// The next step's position.
    pos: u64,
    pub shards: S,
}

impl<S: Shards> Coordinator<S> {
    pub fn with(cfg: &EngineConfig, shards: S) -> Coordinator<S> {
        Coordinator { front: Front::new(cfg, shards.count()), front_stats: Stats::default(), pos: 0, shards }
    }

    fn frame(
        &mut self,
        interface: u32,
        link: LinkType,
        data: &[u8],
        ts: Timestamp,
        shared: Option<(&Arc<dyn FrameSource>, usize)>,
        out: &mut Vec<Entry>,
    ) -> Result<(), DecodeError> {
        let decoded = wire::decode(link, data, ts);
        let point = CapturePoint::of(interface, link, data);
        let routed = self.front.route(point, ts, &decoded, &mut self.front_stats);
        let pos = self.pos;
        self.pos += 1;
        if let Some(now) = routed.sweep {
            self.shards.sweep(pos, now, false, out);
        }
        if let Some(server) = routed.listener {
            self.shards.listener(server);
        }
        if let (Some((from, key)), Some((to, _))) = (routed.moved, routed.to) {
            self.shards.move_flow(key, from, to, pos, out);
        }
        if let (Ok(Decoded::Packet(packet)), Some((shard, nat))) = (&decoded, routed.to) {
            let frame = ShardFrame { link, data, ts, packet, shared };
            self.shards.packet(shard, pos, &frame, nat, out);
        }
        self.shards.handed(pos + 1, false, out);
        decoded.map(|_| ())
    }
}

impl<S: Shards> Analyzer for Coordinator<S> {
    fn expect_several_interfaces(&mut self) {
        self.front.expect_several_interfaces();
    }

    fn handle_frame_on(
        &mut self,
        interface: u32,
        link: LinkType,
        data: &[u8],
        ts: Timestamp,
        out: &mut Vec<Entry>,
    ) -> Result<(), DecodeError> {
        self.frame(interface, link, data, ts, None, out)
    }

    fn handle_shared(
        &mut self,
        frames: &Arc<dyn FrameSource>,
        index: usize,
        ts: Timestamp,
        out: &mut Vec<Entry>,
    ) -> Result<(), DecodeError> {
        let Some(f) = frames.frame(index) else { return Ok(()) };
        self.frame(f.interface, f.link_type, f.data, ts, Some((frames, index)), out)
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<Entry>) {
        if let Some(now) = self.front.tick(now, &mut self.front_stats) {
            let pos = self.pos;
            self.pos += 1;
            self.shards.sweep(pos, now, false, out);
        }
        self.shards.handed(self.pos, true, out);
    }

    fn hand_out(&mut self, out: &mut Vec<Entry>) {
        self.shards.hand_out(out);
    }

    fn finish(&mut self, out: &mut Vec<Entry>) {
        let pos = self.pos;
        self.pos = u64::MAX;
        self.shards.finish(pos, self.front.now(), out);
    }

    fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)> {
        self.shards.take_recordings()
    }

    /// The front's counters and every shard's, summed.
    fn stats(&self) -> Stats {
        let mut s = self.front_stats.clone();
        s += &self.shards.stats();
        s
    }

    fn flow_count(&self) -> usize {
        self.shards.flow_count()
    }
}
