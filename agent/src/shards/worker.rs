//! A shard's thread: work from the front in order (frames, timer sweeps, servers seen), entries back.

use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender};

use faultline_core::copies::NatPair;
use faultline_core::shard::{MovedFlow, Shard};
use faultline_core::wire::LinkType;
use faultline_core::FlowKey;
use faultline_core::{Entry, Stats, Timestamp};

use faultline_core::merge::Found;

/// What the front sends one shard, in capture order.
pub enum Item {
    Frame {
        pos: u64,
        link: LinkType,
        ts: Timestamp,
        data: Range<usize>,
        nat: Option<NatPair>,
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
    Adopt(FlowKey, Box<MovedFlow>),
}

/// A batch of items and their frames' bytes (one buffer: one allocation, reused).
#[derive(Default)]
pub struct Work {
    pub items: Vec<Item>,
    pub data: Vec<u8>,
    /// Every position below this was sent (to this shard or another).
    pub upto: u64,
}

impl Work {
    pub fn clear(&mut self) {
        self.items.clear();
        self.data.clear();
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
    pub extracted: Vec<(FlowKey, MovedFlow)>,
    /// The batch, emptied, for the front to fill again.
    pub spent: Work,
}

pub fn run(index: usize, mut shard: Shard, work: Receiver<Work>, done: Sender<Done>) {
    let mut out: Vec<Entry> = Vec::new();
    for mut w in work {
        let mut found = Vec::new();
        let mut extracted = Vec::new();
        let data = &w.data;
        for item in w.items.drain(..) {
            let (pos, by_sweep) = match item {
                Item::Frame { pos, link, ts, data: range, nat } => {
                    let bytes = data.get(range).unwrap_or_default();
                    shard.handle_frame(link, bytes, ts, nat, &mut out);
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
    crate::thread_cpu::log(&format!("engine-{index}"));
}
