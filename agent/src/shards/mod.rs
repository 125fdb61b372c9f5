//! Flows sharded across engine threads (`--engine-threads`, `analyze --threads`): the front
//! (`faultline_core::engine::front`) on the caller's thread decodes each frame, drops copies and chooses its
//! shard; each shard (`faultline_core::engine::shard`) runs on a thread of its own; their entries are merged
//! back into the order one engine finds them (`faultline_core::engine::merge`). The front and its steps are
//! the engine's own coordinator's (`faultline_core::engine::Coordinator`): only how a step reaches a shard
//! is here — in batches, over channels. The entries are those of one engine, entry for entry.

mod worker;

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use faultline_core::engine::merge::Merger;
use faultline_core::engine::shard::{Shard, TakenFlow};
use faultline_core::engine::{Coordinator, ShardFrame, Shards};
use faultline_core::flow::Endpoint;
use faultline_core::nat::copies::NatPair;
use faultline_core::{Analyzer, Engine, EngineConfig, Entry, FlowKey, Stats, Timestamp};

use worker::{Done, FrameAt, Item, Work};

/// Frames the front gathers (over all shards) before it hands each shard its batch.
const FRAMES_PER_ROUND: usize = 2048;
/// Batches that may wait for each shard.
const BATCHES_AHEAD: usize = 4;

/// `threads` engines: one on the caller's thread, or shards on threads of their own — the same entries.
pub fn engines(cfg: EngineConfig, threads: usize) -> Box<dyn Analyzer> {
    if threads <= 1 {
        Box::new(Engine::new(cfg))
    } else {
        Box::new(threaded(cfg, threads))
    }
}

/// Shards on threads of their own behind one front on the caller's.
pub type ShardedEngine = Coordinator<Threads>;

pub struct Threads {
    senders: Vec<SyncSender<Work>>,
    threads: Vec<JoinHandle<()>>,
    done: Receiver<Done>,
    /// Each shard's batch being filled.
    filling: Vec<Work>,
    /// Emptied batches to fill again.
    spare: Vec<Work>,
    frames: usize,
    merger: Merger,
    recordings: Vec<(String, Vec<u8>)>,
    shard_stats: Vec<Stats>,
    flows: Vec<usize>,
    /// Tuples' state handed over by a shard (`move_flow`), until adopted by another.
    extracted: Vec<(FlowKey, TakenFlow)>,
    /// Every position below this has been handed to a shard's batch.
    upto: u64,
}

/// `n` shards on threads of their own, behind one front.
pub fn threaded(cfg: EngineConfig, n: usize) -> ShardedEngine {
    let n = n.max(1);
    let (done_tx, done) = mpsc::channel();
    let mut senders = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    for index in 0..n {
        let (tx, rx) = mpsc::sync_channel(BATCHES_AHEAD);
        // The shard's own ids name its recordings until the merger gives the final ones.
        let shard = Shard::new(EngineConfig { id_prefix: format!("{index}/"), ..cfg.clone() }, n);
        let done_tx = done_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("engine-{index}"))
            .spawn(move || worker::run(index, shard, rx, done_tx));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                // Without the thread nothing would drain its channel: fail loudly, at start.
                tracing::error!(error = %e, "cannot start an engine thread");
                std::process::abort();
            }
        }
        senders.push(tx);
    }
    let threaded = Threads {
        senders,
        threads,
        done,
        filling: (0..n).map(|_| Work::default()).collect(),
        spare: Vec::new(),
        frames: 0,
        merger: Merger::new(n, cfg.id_prefix.clone()),
        recordings: Vec::new(),
        shard_stats: vec![Stats::default(); n],
        flows: vec![0; n],
        extracted: Vec::new(),
        upto: 0,
    };
    Coordinator::with(&cfg, threaded)
}

impl Shards for Threads {
    fn count(&self) -> usize {
        self.filling.len()
    }

    fn sweep(&mut self, pos: u64, now: Timestamp, end_of_input: bool, _: &mut Vec<Entry>) {
        self.for_every_shard(|| Item::Sweep { pos, now, end_of_input });
    }

    fn listener(&mut self, server: Endpoint) {
        self.for_every_shard(|| Item::Listener(server));
    }

    /// `from` hands the state over once it has handled everything before, and the front waits for it.
    /// Rare (a NATed tuple whose copies were missed until now), so the wait — one round to one shard —
    /// costs little.
    fn move_flow(&mut self, key: FlowKey, from: usize, to: usize, pos: u64, out: &mut Vec<Entry>) {
        let Some(w) = self.filling.get_mut(from) else { return };
        w.items.push(Item::Extract(key));
        // Everything before this frame is sent; the frame itself is not.
        self.send_round(pos);
        let flow = loop {
            if let Some(i) = self.extracted.iter().position(|(k, _)| *k == key) {
                break Some(self.extracted.swap_remove(i).1);
            }
            // Blocks until the next shard's batch is done; `None`: the shards are gone.
            if !self.collect_one() {
                break None;
            }
        };
        self.merger.release(out, &mut self.recordings);
        if let (Some(flow), Some(w)) = (flow, self.filling.get_mut(to)) {
            w.items.push(Item::Adopt(key, Box::new(flow)));
        }
    }

    /// Copied into the shard's batch, unless the caller shares the buffer it is in (the shard then reads
    /// it where it is).
    fn packet(&mut self, shard: usize, pos: u64, f: &ShardFrame<'_>, nat: Option<NatPair>, _: &mut Vec<Entry>) {
        if let Some(w) = self.filling.get_mut(shard) {
            let at = match f.shared {
                Some((frames, index)) => {
                    FrameAt::Shared { source: w.source_of(frames), index: u32::try_from(index).unwrap_or(u32::MAX) }
                }
                None => {
                    let start = w.data.len();
                    w.data.extend_from_slice(f.data);
                    FrameAt::Copied(start..w.data.len())
                }
            };
            w.items.push(Item::Frame { pos, link: f.link, ts: f.ts, at, nat: nat.map(Box::new) });
        }
        self.frames += 1;
    }

    /// A round goes out when enough frames are gathered, and at every tick of the clock.
    fn handed(&mut self, upto: u64, by_clock: bool, out: &mut Vec<Entry>) {
        self.upto = upto;
        if by_clock || self.frames >= FRAMES_PER_ROUND {
            self.hand_out(out);
        }
    }

    fn finish(&mut self, pos: u64, now: Timestamp, out: &mut Vec<Entry>) {
        if self.senders.is_empty() {
            return; // finished already
        }
        self.upto = u64::MAX;
        self.for_every_shard(|| Item::Sweep { pos, now, end_of_input: true });
        self.hand_out(out);
        self.stop_shards();
        self.collect(false);
        self.merger.release(out, &mut self.recordings);
    }

    /// Hands every shard its batch (with how far the capture got), then takes what shards have done.
    fn hand_out(&mut self, out: &mut Vec<Entry>) {
        self.send_round(self.upto);
        self.collect(true);
        self.merger.release(out, &mut self.recordings);
    }

    fn take_recordings(&mut self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut self.recordings)
    }

    fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for shard in &self.shard_stats {
            s += shard;
        }
        s
    }

    fn flow_count(&self) -> usize {
        self.flows.iter().sum()
    }
}

impl Threads {
    /// Every shard's batch on its way, every position below `upto` in one of them.
    fn send_round(&mut self, upto: u64) {
        self.frames = 0;
        for (k, tx) in self.senders.iter().enumerate() {
            let fresh = self.spare.pop().unwrap_or_default();
            let Some(slot) = self.filling.get_mut(k) else { continue };
            let mut w = std::mem::replace(slot, fresh);
            w.upto = upto;
            if tx.send(w).is_err() {
                tracing::error!(shard = k, "an engine thread is gone");
            }
        }
    }

    /// Closing the channels ends the shards' threads once they have done what was sent.
    fn stop_shards(&mut self) {
        self.senders.clear();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("an engine thread failed");
            }
        }
    }

    fn for_every_shard(&mut self, item: impl Fn() -> Item) {
        for w in &mut self.filling {
            w.items.push(item());
        }
    }

    /// Takes what the shards have done: all of it unless `only_ready`.
    fn collect(&mut self, only_ready: bool) {
        loop {
            let d = if only_ready {
                match self.done.try_recv() {
                    Ok(d) => d,
                    Err(_) => return,
                }
            } else {
                match self.done.recv() {
                    Ok(d) => d,
                    Err(_) => return,
                }
            };
            self.take_done(d);
        }
    }

    /// Waits for the next batch a shard has done and takes it; false when no shard is left.
    fn collect_one(&mut self) -> bool {
        match self.done.recv() {
            Ok(d) => {
                self.take_done(d);
                true
            }
            Err(_) => false,
        }
    }

    fn take_done(&mut self, d: Done) {
        if let Some(s) = self.shard_stats.get_mut(d.shard) {
            *s = d.stats;
        }
        if let Some(f) = self.flows.get_mut(d.shard) {
            *f = d.flows;
        }
        self.merger.add(d.shard, d.handled, d.found, d.recordings);
        self.extracted.extend(d.extracted);
        self.spare.push(d.spent);
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        // What they found is not wanted any more.
        self.stop_shards();
    }
}

#[cfg(test)]
mod tests;
