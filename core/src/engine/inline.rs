//! Shards on one thread, one after another: the same front, shards and merge as the agent's engine
//! threads, in a form tests can drive frame by frame (and compare with `Engine`).

use crate::config::EngineConfig;
use crate::engine::front::Front;
use crate::engine::merge::{Found, Merger};
use crate::engine::shard::Shard;
use crate::engine::stats::Stats;
use crate::engine::Analyzer;
use crate::entry::Entry;
use crate::nat::copies::CapturePoint;
use crate::time::Timestamp;
use crate::wire::{self, DecodeError, Decoded, LinkType};

pub struct ShardedInline {
    front: Front,
    front_stats: Stats,
    shards: Vec<Shard>,
    merger: Merger,
    recordings: Vec<(String, Vec<u8>)>,
    pos: u64,
    scratch: Vec<Entry>,
}

impl ShardedInline {
    pub fn new(cfg: EngineConfig, n: usize) -> ShardedInline {
        let n = n.max(1);
        let shards =
            (0..n).map(|k| Shard::new(EngineConfig { id_prefix: format!("{k}/"), ..cfg.clone() }, n)).collect();
        ShardedInline {
            front: Front::new(&cfg, n),
            front_stats: Stats::default(),
            shards,
            merger: Merger::new(n, cfg.id_prefix.clone()),
            recordings: Vec::new(),
            pos: 0,
            scratch: Vec::new(),
        }
    }

    fn sweep(&mut self, pos: u64, now: Timestamp, end_of_input: bool) {
        for (k, shard) in self.shards.iter_mut().enumerate() {
            shard.sweep(now, end_of_input, &mut self.scratch);
            self.merger.add(k, pos, Found::tag(&mut self.scratch, pos, true), shard.take_recordings());
        }
    }

    fn release(&mut self, upto: u64, out: &mut Vec<Entry>) {
        for k in 0..self.shards.len() {
            self.merger.add(k, upto, Vec::new(), Vec::new());
        }
        self.merger.release(out, &mut self.recordings);
    }
}

impl Analyzer for ShardedInline {
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
        let decoded = wire::decode(link, data, ts);
        let point = CapturePoint::of(interface, link, data);
        let routed = self.front.route(point, ts, &decoded, &mut self.front_stats);
        let pos = self.pos;
        self.pos += 1;
        if let Some(now) = routed.sweep {
            self.sweep(pos, now, false);
        }
        if let Some(server) = routed.listener {
            self.shards.iter_mut().for_each(|s| s.learn_listener(server));
        }
        if let (Some((from, key)), Some((to, _))) = (routed.moved, routed.to) {
            if let Some(flow) = self.shards.get_mut(from).map(|s| s.take_flow(&key)) {
                if let Some(shard) = self.shards.get_mut(to) {
                    shard.adopt_flow(key, flow);
                }
            }
        }
        if let (Ok(Decoded::Packet(p)), Some((k, nat))) = (&decoded, routed.to) {
            if let Some(shard) = self.shards.get_mut(k) {
                shard.handle_packet(p, link, data, nat, &mut self.scratch);
                self.merger.add(k, pos, Found::tag(&mut self.scratch, pos, false), shard.take_recordings());
            }
        }
        self.release(pos + 1, out);
        decoded.map(|_| ())
    }

    fn advance(&mut self, now: Timestamp, out: &mut Vec<Entry>) {
        if let Some(now) = self.front.tick(now, &mut self.front_stats) {
            let pos = self.pos;
            self.pos += 1;
            self.sweep(pos, now, false);
            self.release(pos + 1, out);
        }
    }

    fn finish(&mut self, out: &mut Vec<Entry>) {
        let pos = self.pos;
        self.sweep(pos, self.front.now(), true);
        self.release(u64::MAX, out);
    }

    fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.recordings)
    }

    /// The front's statistics and every shard's, summed.
    fn stats(&self) -> Stats {
        let mut s = self.front_stats.clone();
        for shard in &self.shards {
            s += shard.stats();
        }
        s
    }

    fn flow_count(&self) -> usize {
        self.shards.iter().map(Shard::flow_count).sum()
    }
}
