//! Frames on their way to the engine thread from the capture threads (`run`) or the capture file's reader
//! (`analyze`): copied into one buffer per batch, so that a batch costs one allocation and one channel
//! message rather than one per frame.

use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex};

use faultline_core::engine::frames::FrameSource;
use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

/// Frames per batch.
pub const BATCH_FRAMES: usize = 256;

/// Where a frame was captured: an interface of the node (live), or a file's interface (`analyze`).
pub type Interface = u32;

#[derive(Default)]
pub struct FrameBatch {
    data: Vec<u8>,
    frames: Vec<(Interface, LinkType, Timestamp, Range<usize>)>,
}

pub use faultline_core::engine::frames::Frame;

impl FrameBatch {
    #[cfg(test)]
    pub fn push(&mut self, link_type: LinkType, ts: Timestamp, bytes: &[u8]) {
        self.push_on(0, link_type, ts, bytes);
    }

    pub fn push_on(&mut self, interface: Interface, link_type: LinkType, ts: Timestamp, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.frames.push((interface, link_type, ts, start..self.data.len()));
    }

    /// Empties the batch and keeps its memory for the next frames.
    pub fn clear(&mut self) {
        self.data.clear();
        self.frames.clear();
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame number `i`.
    pub fn get(&self, i: usize) -> Option<Frame<'_>> {
        let (interface, link_type, ts, r) = self.frames.get(i)?;
        Some(Frame { interface: *interface, link_type: *link_type, ts: *ts, data: self.data.get(r.clone())? })
    }

    pub fn iter(&self) -> impl Iterator<Item = Frame<'_>> {
        self.frames.iter().map(|(i, l, ts, r)| Frame {
            interface: *i,
            link_type: *l,
            ts: *ts,
            data: self.data.get(r.clone()).unwrap_or_default(),
        })
    }
}

impl FrameSource for FrameBatch {
    fn frame(&self, index: usize) -> Option<Frame<'_>> {
        self.get(index)
    }
}

/// A batch the engine's threads may hold on to (sharded engines read frames where they are rather than
/// copy them); it goes back to its pool when the last of them lets go.
pub struct SharedBatch {
    batch: FrameBatch,
    pool: Arc<BatchPool>,
}

impl SharedBatch {
    pub fn new(batch: FrameBatch, pool: &Arc<BatchPool>) -> Arc<SharedBatch> {
        Arc::new(SharedBatch { batch, pool: Arc::clone(pool) })
    }
}

impl Deref for SharedBatch {
    type Target = FrameBatch;

    fn deref(&self) -> &FrameBatch {
        &self.batch
    }
}

impl FrameSource for SharedBatch {
    fn frame(&self, index: usize) -> Option<Frame<'_>> {
        self.batch.get(index)
    }
}

impl Drop for SharedBatch {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.batch));
    }
}

/// Emptied batches on their way back to the threads that fill them. A batch's memory is then allocated
/// once and reused, instead of grown afresh by one thread and freed by another every 256 frames: that
/// churn kept the allocator taking fresh pages from the kernel, and zeroing them was half of the engine
/// thread's time at full rate.
pub struct BatchPool {
    free: Mutex<Vec<FrameBatch>>,
    keep: usize,
}

impl BatchPool {
    /// A pool that keeps at most `keep` empty batches.
    pub fn new(keep: usize) -> BatchPool {
        BatchPool { free: Mutex::new(Vec::new()), keep }
    }

    /// An empty batch, reused if one is free.
    pub fn take(&self) -> FrameBatch {
        self.lock().pop().unwrap_or_default()
    }

    /// Empties `batch` and keeps it for `take`, unless enough are kept already.
    pub fn give(&self, mut batch: FrameBatch) {
        batch.clear();
        let mut free = self.lock();
        if free.len() < self.keep {
            free.push(batch);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FrameBatch>> {
        // The list holds only empty batches: a thread that panicked holding the lock left nothing broken.
        self.free.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_as_they_went_in() {
        let mut b = FrameBatch::default();
        b.push(LinkType::Ethernet, Timestamp(1), b"abc");
        b.push(LinkType::RawIp, Timestamp(2), b"");
        b.push(LinkType::Ethernet, Timestamp(3), b"de");
        let got: Vec<_> = b.iter().map(|f| (f.link_type, f.ts.nanos(), f.data.to_vec())).collect();
        assert_eq!(
            got,
            [
                (LinkType::Ethernet, 1, b"abc".to_vec()),
                (LinkType::RawIp, 2, vec![]),
                (LinkType::Ethernet, 3, b"de".to_vec())
            ]
        );
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn the_pool_hands_back_emptied_batches_with_their_memory() {
        let pool = BatchPool::new(1);
        let mut b = pool.take();
        b.push(LinkType::Ethernet, Timestamp(1), &[7; 1500]);
        let data_at = b.data.as_ptr();
        pool.give(b);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.data.as_ptr(), data_at, "the same buffer, not a new one");
        assert!(again.data.capacity() >= 1500);
        // Beyond `keep`, batches are freed rather than kept.
        pool.give(FrameBatch::default());
        pool.give(FrameBatch::default());
        assert_eq!(pool.lock().len(), 1);
    }

    #[test]
    fn a_shared_batch_goes_back_to_its_pool_when_the_last_holder_lets_go() {
        let pool = Arc::new(BatchPool::new(2));
        let mut b = pool.take();
        b.push(LinkType::Ethernet, Timestamp(1), b"frame");
        let shared = SharedBatch::new(b, &pool);
        let held: Arc<dyn FrameSource> = shared.clone();
        drop(shared);
        assert!(pool.lock().is_empty(), "still held");
        assert_eq!(held.frame(0).map(|f| f.data), Some(&b"frame"[..]));
        drop(held);
        assert_eq!(pool.lock().len(), 1, "back, emptied");
        assert!(pool.take().is_empty());
    }
}
