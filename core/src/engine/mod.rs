//! The engine: frames in, entries out. A front (`front`: copies, routing, the clock) decides, for every
//! frame, what the shards (`shard`: flows, timers, dissectors, ICMP) must do, and a `Coordinator` hands
//! them those steps in capture order: to one shard on the caller's thread (`Engine`), to several there
//! (`inline::ShardedInline`), or to shards on threads of their own (the agent's `--engine-threads`,
//! `analyze --threads`). The same parts give the same entries, merged back in order (`merge`).

pub mod coordinator;
pub mod frames;
pub mod front;
pub mod inline;
pub mod merge;
pub mod order;
mod route;
pub mod shard;
pub mod stats;

use std::sync::Arc;

pub use coordinator::{Coordinator, ShardFrame, Shards};

use crate::config::EngineConfig;
use crate::engine::frames::FrameSource;
use crate::engine::shard::Shard;
use crate::engine::stats::Stats;
use crate::entry::Entry;
use crate::flow::{Endpoint, FlowKey};
use crate::nat::copies::NatPair;
use crate::time::Timestamp;
use crate::wire::{DecodeError, LinkType};

/// Frames in, entries out: one engine on the caller's thread, or shards behind one front (on the caller's
/// thread for tests, `ShardedInline`; on threads of their own in the agent). Whichever, the same entries.
pub trait Analyzer: Send {
    /// Frames will come from several interfaces of one node: look for copies from the first frame on.
    fn expect_several_interfaces(&mut self);
    /// Handles one frame captured on interface number `interface` (any numbering that tells a node's
    /// interfaces apart); entries found go to `out`. A copy of a packet already seen on another interface
    /// is counted and dropped (SPEC §3.1, one connection, one report); a frame that does not decode is
    /// counted and its error returned, and the engine carries on.
    fn handle_frame_on(
        &mut self,
        interface: u32,
        link: LinkType,
        data: &[u8],
        ts: Timestamp,
        out: &mut Vec<Entry>,
    ) -> Result<(), DecodeError>;
    /// Handles frame number `index` of `frames`, as `handle_frame_on` does, at time `ts` (the capture's,
    /// or the clock's correction of it). An engine on other threads may keep a reference to the frames
    /// rather than copy the frame.
    fn handle_shared(
        &mut self,
        frames: &Arc<dyn FrameSource>,
        index: usize,
        ts: Timestamp,
        out: &mut Vec<Entry>,
    ) -> Result<(), DecodeError> {
        match frames.frame(index) {
            Some(f) => self.handle_frame_on(f.interface, f.link_type, f.data, ts, out),
            None => Ok(()),
        }
    }
    /// Moves the clock to `now` and fires due timers. Frames move it too; call it on a ticker when
    /// capturing live, so timeouts fire while the network is quiet.
    fn advance(&mut self, now: Timestamp, out: &mut Vec<Entry>);
    /// Hands over what is gathered: frames to shards on other threads, their entries back. Nothing to do
    /// where everything runs on the caller's thread.
    fn hand_out(&mut self, _out: &mut Vec<Entry>) {}
    /// End of input: every pending state is resolved as if its timer expired (SPEC §3.6).
    fn finish(&mut self, out: &mut Vec<Entry>);
    /// Pcaps of the flows of the error and ICMP entries handed out since the last call, by entry id (only
    /// with `record_errors`).
    fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)>;
    /// Every counter, all shards summed.
    fn stats(&self) -> Stats;
    /// Flows tracked, all shards together.
    fn flow_count(&self) -> usize;
}

/// One engine: the front and one shard on the caller's thread. What it finds is the reference every
/// sharded engine must find too.
pub type Engine = Coordinator<One>;

/// One shard on the caller's thread: what it finds goes straight out, numbered by the shard.
pub struct One {
    shard: Shard,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let front_cfg = cfg.clone();
        Coordinator::with(&front_cfg, One { shard: Shard::new(cfg, 1) })
    }

    pub fn config(&self) -> &EngineConfig {
        self.shards.shard.config()
    }

    /// `handle_frame_on` for a capture of one interface.
    pub fn handle_frame(
        &mut self,
        link: LinkType,
        data: &[u8],
        ts: Timestamp,
        out: &mut Vec<Entry>,
    ) -> Result<(), DecodeError> {
        self.handle_frame_on(0, link, data, ts, out)
    }
}

impl Shards for One {
    fn count(&self) -> usize {
        1
    }

    fn sweep(&mut self, _: u64, now: Timestamp, end_of_input: bool, out: &mut Vec<Entry>) {
        self.shard.sweep(now, end_of_input, out);
    }

    fn listener(&mut self, server: Endpoint) {
        self.shard.learn_listener(server);
    }

    /// With one shard, nothing ever moves.
    fn move_flow(&mut self, _: FlowKey, _: usize, _: usize, _: u64, _: &mut Vec<Entry>) {}

    fn packet(&mut self, _: usize, _: u64, f: &ShardFrame<'_>, nat: Option<NatPair>, out: &mut Vec<Entry>) {
        self.shard.handle_packet(f.packet, f.link, f.data, nat, out);
    }

    fn handed(&mut self, _: u64, _: bool, _: &mut Vec<Entry>) {}

    fn finish(&mut self, _: u64, now: Timestamp, out: &mut Vec<Entry>) {
        self.shard.sweep(now, true, out);
    }

    fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)> {
        self.shard.take_recordings()
    }

    fn stats(&self) -> Stats {
        self.shard.stats().clone()
    }

    fn flow_count(&self) -> usize {
        self.shard.flow_count()
    }
}
