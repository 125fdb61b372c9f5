//! The capture threads and the engine thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use faultline_core::engine::frames::FrameSource;
use faultline_core::{Analyzer, EngineConfig, Entry, Timestamp};

use super::counters::Counters;
use super::outbox::{Item, Outbox};
use super::reorder::{Reorder, WINDOW_MS};
use super::rotate::Rotator;
use crate::capture::{Capture, KernelStats};
use crate::frames::{BatchPool, FrameBatch, SharedBatch, BATCH_FRAMES};
use crate::shards::engines;

/// How long the first frame of a batch may wait for the rest. Batches (one buffer, one channel message)
/// because at a million packets a second a wake-up and an allocation per frame cost the capture thread
/// more than the kernel gives it, and the kernel drops the rest.
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// Frames between looks at the clock while frames keep coming. Reading the clock costs about as much as
/// copying a frame; a batch's wait and the kernel's counters need it far less often than per frame.
const FRAMES_PER_CLOCK: u32 = 64;

pub fn capture_loop(
    mut cap: Box<dyn Capture>,
    interface: u32,
    tx: &SyncSender<FrameBatch>,
    pool: &BatchPool,
    stop: &AtomicBool,
    counters: &Counters,
) {
    let mut last_stats = Instant::now();
    let mut reported = KernelStats::default();
    let mut batch = pool.take();
    let mut first_at = Instant::now();
    let mut unclocked = 0;
    // Counted per batch, not per frame: the counters are shared with the other threads.
    let flush = |batch: &mut FrameBatch| -> bool {
        counters.add(&counters.captured, batch.len() as u64);
        send_waiting(tx, std::mem::replace(batch, pool.take()), pool, stop, counters)
    };
    while !stop.load(Ordering::Relaxed) {
        counters.beat(&counters.capture_beat);
        let got_one = match cap.next() {
            Ok(Some(f)) => {
                if batch.is_empty() {
                    first_at = Instant::now();
                }
                batch.push_on(f.point(interface), f.link_type, f.ts, f.data);
                true
            }
            Ok(None) => false,
            Err(e) => {
                counters.add(&counters.capture_errors, 1);
                tracing::error!(error = %e, "capture failed; retrying in 1 s");
                std::thread::sleep(Duration::from_secs(1));
                false
            }
        };
        if batch.len() >= BATCH_FRAMES && !flush(&mut batch) {
            return;
        }
        unclocked += 1;
        if got_one && unclocked < FRAMES_PER_CLOCK {
            continue;
        }
        unclocked = 0;
        let now = Instant::now();
        // Passed on when it has waited long enough, or when the capture has nothing more at the moment: a
        // frame waits for company only while more are coming.
        if !batch.is_empty() && (!got_one || now.duration_since(first_at) >= BATCH_WAIT) && !flush(&mut batch) {
            return;
        }
        if now.duration_since(last_stats) >= Duration::from_secs(1) {
            last_stats = now;
            let now = cap.kernel_stats();
            counters.add(&counters.kernel_received, now.received.saturating_sub(reported.received));
            counters.add(&counters.kernel_dropped, now.dropped.saturating_sub(reported.dropped));
            reported = now;
        }
    }
}

/// Hands a batch to the engine, waiting while its queue is full. Waiting rather than dropping: meanwhile
/// the kernel's buffer keeps what arrives, and drops (counted by the kernel) only once it is full too, so
/// a burst the engine takes a moment to catch up with is not lost. Frames are dropped here (and counted)
/// only when the agent stops with the queue still full. False once the engine is gone.
fn send_waiting(
    tx: &SyncSender<FrameBatch>,
    mut batch: FrameBatch,
    pool: &BatchPool,
    stop: &AtomicBool,
    counters: &Counters,
) -> bool {
    loop {
        match tx.try_send(batch) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(back)) if stop.load(Ordering::Relaxed) => {
                counters.add(&counters.queue_dropped, back.len() as u64);
                pool.give(back);
                return true;
            }
            Err(TrySendError::Full(back)) => {
                batch = back;
                std::thread::sleep(QUEUE_FULL_WAIT);
            }
        }
    }
}

/// How long the capture thread sleeps before it tries a full queue again: a few hundred frames at a
/// million a second, a small part of the kernel's buffer.
const QUEUE_FULL_WAIT: Duration = Duration::from_micros(200);

/// How far behind the wall clock the engine's clock is moved when no frame waits: frames still in a
/// capture thread's batch (at most `BATCH_WAIT`) or the kernel's ring must not find their timers fired.
const CLOCK_LAG: Duration = Duration::from_millis(50);

/// A frame stamped further in the future than this (a clock that stepped, a bad driver) is taken as
/// stamped now: one such frame must not fire every timer at once.
const MAX_FUTURE: Duration = Duration::from_secs(1);

/// The engine thread's clock. Timers run on packet time while frames flow (a burst waiting in the queue
/// must not time out SYNs whose SYN-ACKs wait behind them); only when no frame waits does wall time
/// (less `CLOCK_LAG`) move it on, so that timeouts fire on a quiet network. It never runs backwards.
struct Clock {
    skewed: u64,
}

impl Clock {
    /// A frame's timestamp, no later than the wall clock allows.
    fn frame_time(&mut self, ts: Timestamp, wall: SystemTime) -> Timestamp {
        let limit = Timestamp::from(wall + MAX_FUTURE);
        if ts > limit {
            self.skewed += 1;
            Timestamp::from(wall)
        } else {
            ts
        }
    }

    /// The time to move the engine to when the queue is empty.
    fn idle_time(wall: SystemTime) -> Timestamp {
        Timestamp::from(wall.checked_sub(CLOCK_LAG).unwrap_or(wall))
    }
}

#[allow(clippy::too_many_arguments)]
pub fn engine_loop(
    cfg: EngineConfig,
    threads: usize,
    several_interfaces: bool,
    rx: &Receiver<FrameBatch>,
    pool: &Arc<BatchPool>,
    outputs: Outputs<'_>,
    counters: &Counters,
    stop: &AtomicBool,
    mut rotator: Option<Rotator>,
    capture_threads: usize,
) {
    let mut engine = engines(cfg, threads);
    if several_interfaces {
        engine.expect_several_interfaces();
    }
    // Several capture threads: their frames are put back in capture order first, and the idle clock lags
    // by the window those frames are held (a frame held must not find its timers fired).
    let mut reorder = (capture_threads > 1).then(Reorder::default);
    let held_for = if reorder.is_some() { Duration::from_millis(WINDOW_MS) } else { Duration::ZERO };
    let mut entries: Vec<Entry> = Vec::new();
    let mut last_stats = Instant::now();
    let mut published = faultline_core::Stats::default();
    let mut clock = Clock { skewed: 0 };
    let mut handle = |frames: &Arc<dyn FrameSource>,
                      i: usize,
                      wall: SystemTime,
                      clock: &mut Clock,
                      engine: &mut dyn Analyzer,
                      entries: &mut Vec<Entry>| {
        let Some(f) = frames.frame(i) else { return };
        let ts = clock.frame_time(f.ts, wall);
        if let Some(r) = &mut rotator {
            if let Err(e) = r.write(f.link_type, ts, f.data) {
                tracing::warn!(error = %e, "continuous recording failed; stopping it");
                rotator = None;
            }
        }
        let _ = engine.handle_shared(frames, i, ts, entries);
    };
    loop {
        counters.beat(&counters.engine_beat);
        // A batch waiting is handled at once; only an empty queue lets wall time move the clock.
        let next = match rx.try_recv() {
            Ok(batch) => Ok(batch),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                let wall = SystemTime::now();
                // Frames older than the window are no longer waited for; the clock stays behind them.
                let held_since = wall.checked_sub(held_for).unwrap_or(wall);
                if let Some(r) = &mut reorder {
                    let horizon = Timestamp::from(held_since);
                    r.release(Some(horizon), |b, i| handle(b, i, wall, &mut clock, engine.as_mut(), &mut entries));
                }
                engine.advance(Clock::idle_time(held_since), &mut entries);
                rx.recv_timeout(Duration::from_millis(100))
            }
        };
        match next {
            Ok(batch) => {
                let wall = SystemTime::now();
                let batch = SharedBatch::new(batch, pool);
                match &mut reorder {
                    Some(r) => {
                        r.push(batch);
                        let horizon = Timestamp(r.latest().nanos().saturating_sub(WINDOW_MS * 1_000_000));
                        r.release(Some(horizon), |b, i| handle(b, i, wall, &mut clock, engine.as_mut(), &mut entries));
                    }
                    None => {
                        let frames: Arc<dyn FrameSource> = batch.clone();
                        for i in 0..batch.len() {
                            handle(&frames, i, wall, &mut clock, engine.as_mut(), &mut entries);
                        }
                    }
                }
                // Sharded: the batch's frames go to their shards now, not when more arrive.
                engine.hand_out(&mut entries);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_stats.elapsed() >= Duration::from_millis(100) {
            last_stats = Instant::now();
            counters.clock_skewed_frames.store(clock.skewed, Ordering::Relaxed);
            publish_stats(engine.as_ref(), &mut published, counters);
        }
        if !entries.is_empty() {
            let pcaps = engine.take_recordings().into_iter().collect();
            hand_over(&mut entries, pcaps, &outputs, counters);
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    if let Some(r) = &mut reorder {
        let wall = SystemTime::now();
        r.release(None, |b, i| handle(b, i, wall, &mut clock, engine.as_mut(), &mut entries));
        engine.hand_out(&mut entries);
    }
    // Stopping is not the end of the network: pending states stay unresolved rather than be guessed.
    publish_stats(engine.as_ref(), &mut published, counters);
    let pcaps = engine.take_recordings().into_iter().collect();
    hand_over(&mut entries, pcaps, &outputs, counters);
}

fn publish_stats(engine: &dyn Analyzer, published: &mut faultline_core::Stats, counters: &Counters) {
    let s = &engine.stats();
    counters.add(&counters.decode_errors, s.decode_errors - published.decode_errors);
    counters.add(&counters.streams_timed_out, s.streams_timed_out - published.streams_timed_out);
    counters.add(&counters.missed_bytes, s.missed_bytes - published.missed_bytes);
    counters.flows.store(engine.flow_count() as u64, Ordering::Relaxed);
    counters.set_engine_stats(s);
    *published = s.clone();
}

/// Where entries go: the outbox (to the operator) and, when the agent exports, the OTLP queue.
pub struct Outputs<'a> {
    pub outbox: &'a Outbox,
    pub export: Option<&'a super::export::AgentExport>,
}

/// Hands entries (and their recordings) to the reporter and the export; counts what the outbox had to
/// drop (the export counts its own).
fn hand_over(
    entries: &mut Vec<Entry>,
    mut pcaps: HashMap<String, Vec<u8>>,
    outputs: &Outputs<'_>,
    counters: &Counters,
) {
    if let Some(export) = outputs.export {
        export.push(entries);
    }
    let outbox = outputs.outbox;
    let batch: Vec<Item> = entries.drain(..).map(|entry| Item { pcap: pcaps.remove(&entry.id), entry }).collect();
    counters.add(&counters.entries, batch.len() as u64);
    let dropped = outbox.push(batch);
    counters.add(&counters.buffer_dropped, dropped);
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use faultline_core::wire::LinkType;

    use super::*;

    fn batch_of(n: u64) -> FrameBatch {
        let mut b = FrameBatch::default();
        for i in 0..n {
            b.push(LinkType::Ethernet, Timestamp(i), b"frame");
        }
        b
    }

    #[test]
    fn the_clock_refuses_frames_from_the_future_and_lags_the_wall_clock() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut clock = Clock { skewed: 0 };
        let now = Timestamp::from(wall);
        assert_eq!(clock.frame_time(now, wall), now);
        assert_eq!(
            clock.frame_time(Timestamp::from(wall + Duration::from_millis(900)), wall).nanos(),
            now.nanos() + 900_000_000
        );
        let far = Timestamp::from(wall + Duration::from_secs(86_400 * 365));
        assert_eq!(clock.frame_time(far, wall), now, "a frame a year ahead is taken as stamped now");
        assert_eq!(clock.skewed, 1);
        assert_eq!(Clock::idle_time(wall), Timestamp::from(wall - CLOCK_LAG));
    }

    /// A SYN-ACK that waited in the queue behind a burst is handled on packet time, not after the wall
    /// clock fired the SYN's timer: the connection is not a false SynSent.
    #[test]
    fn queued_frames_are_handled_on_their_own_time_before_wall_time_moves_the_clock() {
        use faultline_core::wire::LinkType;
        let (tx, rx) = sync_channel(4);
        let pool = Arc::new(BatchPool::new(4));
        let outbox = Outbox::new(1 << 20);
        let counters = Counters::default();
        let stop = AtomicBool::new(false);
        // A SYN and its SYN-ACK stamped 4 s ago, 3.5 s apart: with a 3 s SYN timeout and the wall clock
        // applied first, the SYN would have timed out.
        let t0 = SystemTime::now() - Duration::from_secs(4);
        let syn = crafted_tcp(0x02, 1000, 0);
        let syn_ack = crafted_tcp(0x12, 5000, 1001);
        let mut batch = FrameBatch::default();
        batch.push(LinkType::Ethernet, Timestamp::from(t0), &syn);
        tx.send(batch).expect("queued");
        let mut batch = FrameBatch::default();
        batch.push(LinkType::Ethernet, Timestamp::from(t0 + Duration::from_millis(2_900)), &syn_ack);
        tx.send(batch).expect("queued");
        drop(tx);
        let cfg = EngineConfig { syn_timeout_ms: 3000, ..EngineConfig::default() };
        let outputs = Outputs { outbox: &outbox, export: None };
        engine_loop(cfg, 1, false, &rx, &pool, outputs, &counters, &stop, None, 1);
        assert_eq!(counters.entries.load(Ordering::Relaxed), 0, "no false SynSent");
    }

    fn crafted_tcp(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
        let (a, b) = (([10, 0, 0, 1], 40000), ([10, 0, 0, 2], 80));
        let (src, dst) = if flags & 0x10 != 0 { (b, a) } else { (a, b) };
        let mut t = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, seq, 65535)
            .syn();
        if flags & 0x10 != 0 {
            t = t.ack(ack);
        }
        let mut f = Vec::new();
        t.write(&mut f, b"").expect("frame");
        f
    }

    #[test]
    fn a_full_queue_holds_capture_back_instead_of_dropping() {
        let (tx, rx) = sync_channel(1);
        let (pool, stop, counters) = (BatchPool::new(4), AtomicBool::new(false), Counters::default());
        assert!(send_waiting(&tx, batch_of(1), &pool, &stop, &counters));
        // The queue is full; the engine takes a batch only 100 ms later.
        let engine = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            rx.iter().map(|b| b.len()).collect::<Vec<_>>()
        });
        let started = Instant::now();
        assert!(send_waiting(&tx, batch_of(2), &pool, &stop, &counters));
        assert!(started.elapsed() >= Duration::from_millis(90), "it waited for room");
        drop(tx);
        assert_eq!(engine.join().expect("engine"), [1, 2], "nothing lost, in order");
        assert_eq!(counters.queue_dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn stopping_with_a_full_queue_drops_and_counts_and_a_gone_engine_ends_capture() {
        let (tx, rx) = sync_channel(1);
        let (pool, stop, counters) = (BatchPool::new(4), AtomicBool::new(true), Counters::default());
        assert!(send_waiting(&tx, batch_of(1), &pool, &stop, &counters));
        assert!(send_waiting(&tx, batch_of(3), &pool, &stop, &counters));
        assert_eq!(counters.queue_dropped.load(Ordering::Relaxed), 3);
        drop(rx);
        assert!(!send_waiting(&tx, batch_of(1), &pool, &stop, &counters), "no engine: capture stops");
    }
}
