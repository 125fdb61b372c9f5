//! Shards on one thread, one after another: the same front, shards and merge as the agent's engine
//! threads, in a form tests can drive frame by frame (and compare with `Engine`).

use super::coordinator::{Coordinator, ShardFrame, Shards};
use super::merge::{Found, Merger};
use super::shard::Shard;
use super::stats::Stats;
use crate::config::EngineConfig;
use crate::entry::Entry;
use crate::flow::{Endpoint, FlowKey};
use crate::nat::copies::NatPair;
use crate::time::Timestamp;

/// `n` shards behind one front, on the caller's thread.
pub type ShardedInline = Coordinator<Inline>;

pub struct Inline {
    shards: Vec<Shard>,
    merger: Merger,
    recordings: Vec<(String, Vec<u8>)>,
    scratch: Vec<Entry>,
}

impl ShardedInline {
    pub fn new(cfg: EngineConfig, n: usize) -> ShardedInline {
        let n = n.max(1);
        let shards =
            (0..n).map(|k| Shard::new(EngineConfig { id_prefix: format!("{k}/"), ..cfg.clone() }, n)).collect();
        let inline = Inline {
            shards,
            merger: Merger::new(n, cfg.id_prefix.clone()),
            recordings: Vec::new(),
            scratch: Vec::new(),
        };
        Coordinator::with(&cfg, inline)
    }
}

impl Shards for Inline {
    fn count(&self) -> usize {
        self.shards.len()
    }

    fn sweep(&mut self, pos: u64, now: Timestamp, end_of_input: bool, _: &mut Vec<Entry>) {
        for (k, shard) in self.shards.iter_mut().enumerate() {
            shard.sweep(now, end_of_input, &mut self.scratch);
            self.merger.add(k, pos, Found::tag(&mut self.scratch, pos, true), shard.take_recordings());
        }
    }

    fn listener(&mut self, server: Endpoint) {
        self.shards.iter_mut().for_each(|s| s.learn_listener(server));
    }

    fn move_flow(&mut self, key: FlowKey, from: usize, to: usize, _: u64, _: &mut Vec<Entry>) {
        if let Some(flow) = self.shards.get_mut(from).map(|s| s.take_flow(&key)) {
            if let Some(shard) = self.shards.get_mut(to) {
                shard.adopt_flow(key, flow);
            }
        }
    }

    fn packet(&mut self, k: usize, pos: u64, f: &ShardFrame<'_>, nat: Option<NatPair>, _: &mut Vec<Entry>) {
        if let Some(shard) = self.shards.get_mut(k) {
            shard.handle_packet(f.packet, f.link, f.data, nat, &mut self.scratch);
            self.merger.add(k, pos, Found::tag(&mut self.scratch, pos, false), shard.take_recordings());
        }
    }

    fn handed(&mut self, upto: u64, _: bool, out: &mut Vec<Entry>) {
        for k in 0..self.shards.len() {
            self.merger.add(k, upto, Vec::new(), Vec::new());
        }
        self.merger.release(out, &mut self.recordings);
    }

    fn finish(&mut self, pos: u64, now: Timestamp, out: &mut Vec<Entry>) {
        self.sweep(pos, now, true, out);
        self.handed(u64::MAX, false, out);
    }

    fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.recordings)
    }

    fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for shard in &self.shards {
            s += shard.stats();
        }
        s
    }

    fn flow_count(&self) -> usize {
        self.shards.iter().map(Shard::flow_count).sum()
    }
}
