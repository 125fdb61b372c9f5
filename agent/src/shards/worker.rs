//! A shard's thread: work from the front in order (frames, timer sweeps, servers seen), entries back.

use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender};

use faultline_core::copies::NatPair;
use faultline_core::shard::Shard;
use faultline_core::wire::LinkType;
use faultline_core::{Entry, Stats, Timestamp};

use faultline_core::merge::Found;

/// What the front sends one shard, in capture order.
pub enum Item {
    Frame { pos: u64, link: LinkType, ts: Timestamp, data: Range<usize>, nat: Option<NatPair> },
    Sweep { pos: u64, now: Timestamp, end_of_input: bool },
    Listener((std::net::IpAddr, u16)),
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
    /// The batch, emptied, for the front to fill again.
    pub spent: Work,
}

pub fn run(index: usize, mut shard: Shard, work: Receiver<Work>, done: Sender<Done>) {
    let mut out: Vec<Entry> = Vec::new();
    for mut w in work {
        let mut found = Vec::new();
        for item in &w.items {
            let (pos, by_sweep) = match item {
                Item::Frame { pos, link, ts, data, nat } => {
                    let bytes = w.data.get(data.clone()).unwrap_or_default();
                    shard.handle_frame(*link, bytes, *ts, *nat, &mut out);
                    (*pos, false)
                }
                Item::Sweep { pos, now, end_of_input } => {
                    shard.sweep(*now, *end_of_input, &mut out);
                    (*pos, true)
                }
                Item::Listener(server) => {
                    shard.learn_listener(*server);
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
            spent: w,
        };
        if done.send(d).is_err() {
            break;
        }
    }
    crate::thread_cpu::log(&format!("engine-{index}"));
}
