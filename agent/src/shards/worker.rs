//! A shard's thread: work from the front in order (frames, timer sweeps, servers seen), entries back.

use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use faultline_core::engine::frames::FrameSource;
use faultline_core::engine::shard::{Shard, TakenFlow};
use faultline_core::nat::copies::NatPair;
use faultline_core::wire::LinkType;
use faultline_core::FlowKey;
use faultline_core::{Entry, Stats, Timestamp};

use faultline_core::engine::merge::Found;

/// What the front sends one shard, in capture order.
pub enum Item {
    Frame {
        pos: u64,
        link: LinkType,
        ts: Timestamp,
        at: FrameAt,
        /// Boxed: rare, and four times the size of the rest of the item, which is copied per frame.
        nat: Option<Box<NatPair>>,
    },
    Sweep {
        pos: u64,
        now: Timestamp,
        end_of_input: bool,
    },
    Listener((std::net::IpAddr, u16)),
    /// A tuple now tracked on another shard (a NATed copy found late): its state goes back in `Done`.
    Extract(FlowKey),
    /// A tuple's state from another shard's `Extract`.
    Adopt(FlowKey, Box<TakenFlow>),
}

/// Where a frame's bytes are.
pub enum FrameAt {
    /// In the batch's own buffer.
    Copied(Range<usize>),
    /// Frame `index` of the batch's source number `source`.
    Shared { source: u32, index: u32 },
}

/// A batch of items and their frames' bytes: copied into one buffer (one allocation, reused), or in the
/// capture's buffers, held until the shard is done with them.
#[derive(Default)]
pub struct Work {
    pub items: Vec<Item>,
    pub data: Vec<u8>,
    pub sources: Vec<Arc<dyn FrameSource>>,
    /// Every position below this was sent (to this shard or another).
    pub upto: u64,
}

impl Work {
    pub fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
        // Letting go: a capture buffer no shard holds any more goes back to be filled again.
        self.sources.clear();
    }

    /// The number of `frames` among this batch's sources (frames come a capture buffer at a time: the
    /// last one is nearly always it).
    pub fn source_of(&mut self, frames: &Arc<dyn FrameSource>) -> u32 {
        match self.sources.last() {
            Some(last) if Arc::ptr_eq(last, frames) => {}
            _ => self.sources.push(Arc::clone(frames)),
        }
        u32::try_from(self.sources.len() - 1).unwrap_or(u32::MAX)
    }

    fn bytes(&self, at: &FrameAt) -> &[u8] {
        match at {
            FrameAt::Copied(range) => self.data.get(range.clone()).unwrap_or_default(),
            FrameAt::Shared { source, index } => self
                .sources
                .get(*source as usize)
                .and_then(|s| s.frame(*index as usize))
                .map(|f| f.data)
                .unwrap_or_default(),
        }
    }
}

/// What a shard sends back for one batch.
pub struct Done {
    pub shard: usize,
    pub handled: u64,
    pub found: Vec<Found>,
    pub recordings: Vec<(String, Vec<u8>)>,
    pub stats: Stats,
    pub flows: usize,
    /// The state of tuples the front asked for (`Item::Extract`), for another shard to adopt.
    pub extracted: Vec<(FlowKey, TakenFlow)>,
    /// The batch, emptied, for the front to fill again.
    pub spent: Work,
}

pub fn run(index: usize, mut shard: Shard, work: Receiver<Work>, done: Sender<Done>) {
    let mut out: Vec<Entry> = Vec::new();
    for mut w in work {
        let mut found = Vec::new();
        let mut extracted = Vec::new();
        let mut items = std::mem::take(&mut w.items);
        for item in items.drain(..) {
            let (pos, by_sweep) = match item {
                Item::Frame { pos, link, ts, at, nat } => {
                    shard.handle_frame(link, w.bytes(&at), ts, nat.map(|n| *n), &mut out);
                    (pos, false)
                }
                Item::Sweep { pos, now, end_of_input } => {
                    shard.sweep(now, end_of_input, &mut out);
                    (pos, true)
                }
                Item::Listener(server) => {
                    shard.learn_listener(server);
                    continue;
                }
                Item::Extract(key) => {
                    extracted.push((key, shard.take_flow(&key)));
                    continue;
                }
                Item::Adopt(key, flow) => {
                    shard.adopt_flow(key, *flow);
                    continue;
                }
            };
            found.extend(Found::tag(&mut out, pos, by_sweep));
        }
        w.items = items;
        w.clear();
        let d = Done {
            shard: index,
            handled: w.upto,
            found,
            recordings: shard.take_recordings(),
            stats: shard.stats().clone(),
            flows: shard.flow_count(),
            extracted,
            spent: w,
        };
        if done.send(d).is_err() {
            break;
        }
    }
    crate::thread_cpu::log_this_thread();
}
