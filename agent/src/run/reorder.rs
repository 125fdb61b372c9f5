//! Frames from several capture threads back into capture order. Each thread reads its own ring (one per
//! interface, or one per socket of an interface's fanout group) and hands frames over in batches, so the
//! engine gets a packet and its consequences from different threads in any order: a SYN on one ring and
//! the ICMP error answering it on another (the kernel's fanout hash does not look inside ICMP errors), a
//! packet and its copy on another interface. Frames are held for a short window and released in timestamp
//! order: every ring hands a block over within `BLOCK_TIMEOUT_MS` and a capture thread its batch within
//! `BATCH_WAIT`, so nothing earlier than the window can still be on its way.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use faultline_core::Timestamp;

use faultline_core::engine::frames::FrameSource;

use crate::frames::SharedBatch;

/// How long frames are held for the others: the ring's block timeout (50 ms: a block is handed over when
/// full or that long after its first frame; the capture thread passes what it read on as soon as the ring
/// is empty, or within its batch wait of 5 ms) and room for scheduling.
pub const WINDOW_MS: u64 = 150;

#[derive(Default)]
pub struct Reorder {
    /// Batches being released, by slot, with the number of their frames still held; `None`: free.
    slots: Vec<Option<(Arc<dyn FrameSource>, usize)>>,
    /// (time, arrival, slot, frame): the earliest first; arrival keeps one ring's order among equal times.
    heap: BinaryHeap<Reverse<(Timestamp, u64, usize, usize)>>,
    arrivals: u64,
    latest: Timestamp,
}

impl Reorder {
    pub fn push(&mut self, batch: Arc<SharedBatch>) {
        if batch.is_empty() {
            return;
        }
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        for (i, f) in batch.iter().enumerate() {
            self.arrivals += 1;
            self.latest = self.latest.max(f.ts);
            self.heap.push(Reverse((f.ts, self.arrivals, slot, i)));
        }
        if let Some(s) = self.slots.get_mut(slot) {
            let n = batch.len();
            *s = Some((batch, n));
        }
    }

    /// The latest capture time pushed.
    pub fn latest(&self) -> Timestamp {
        self.latest
    }

    /// Hands `each` every frame stamped before `horizon` (all of them with `None`), in time order; batches
    /// released whole are let go (back to their pool once the engine's threads let go too).
    pub fn release(&mut self, horizon: Option<Timestamp>, mut each: impl FnMut(&Arc<dyn FrameSource>, usize)) {
        while let Some(Reverse((ts, _, slot, i))) = self.heap.peek().copied() {
            if horizon.is_some_and(|h| ts >= h) {
                return;
            }
            self.heap.pop();
            let Some(Some((batch, left))) = self.slots.get_mut(slot) else { continue };
            each(batch, i);
            *left -= 1;
            if *left == 0 {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use faultline_core::wire::LinkType;

    use super::*;
    use crate::frames::BatchPool;

    fn batch(pool: &Arc<BatchPool>, frames: &[(u64, u8)]) -> Arc<SharedBatch> {
        let mut b = pool.take();
        for (ts, tag) in frames {
            b.push(LinkType::Ethernet, Timestamp(*ts), &[*tag]);
        }
        SharedBatch::new(b, pool)
    }

    fn first_byte(got: &mut Vec<u8>) -> impl FnMut(&Arc<dyn FrameSource>, usize) + '_ {
        |frames, i| got.extend(frames.frame(i).and_then(|f| f.data.first().copied()))
    }

    #[test]
    fn frames_of_two_threads_come_out_in_time_order_once_past_the_horizon() {
        let pool = Arc::new(BatchPool::new(4));
        let mut r = Reorder::default();
        // Thread 1 handed over its SYN (10) and more (30, 50); thread 2 the ICMP error (20) later.
        r.push(batch(&pool, &[(10, b'S'), (30, b'a'), (50, b'b')]));
        r.push(batch(&pool, &[(20, b'I'), (40, b'c')]));
        let mut got = Vec::new();
        r.release(Some(Timestamp(35)), first_byte(&mut got));
        assert_eq!(got, b"SIa", "only what is before the horizon, in time order");
        r.release(None, first_byte(&mut got));
        assert_eq!(got, b"SIacb");
        assert!(r.heap.is_empty());
        // Both batches went back to the pool, and their slots are reused.
        assert_eq!(pool.take().len() + pool.take().len(), 0);
        r.push(batch(&pool, &[(60, b'd')]));
        assert_eq!(r.slots.len(), 2);
    }

    #[test]
    fn equal_times_keep_their_rings_order() {
        let pool = Arc::new(BatchPool::new(4));
        let mut r = Reorder::default();
        r.push(batch(&pool, &[(5, b'1'), (5, b'2'), (5, b'3')]));
        let mut got = Vec::new();
        r.release(None, first_byte(&mut got));
        assert_eq!(got, b"123");
    }
}
