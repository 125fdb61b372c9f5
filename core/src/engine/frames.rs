//! Captured frames held in a buffer that several threads may read: the capture thread or file reader
//! that filled it, the front that routes each frame, and the shard that analyses it. Sharded engines keep
//! a reference to the buffer instead of copying each frame into their shard's batch — the copy was a third
//! of the front's time, and the front is the one thread that more shards do not divide.

use crate::time::Timestamp;
use crate::wire::LinkType;

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// Where it was captured: an interface of the node, or a file's interface (any numbering that tells
    /// them apart).
    pub interface: u32,
    pub link_type: LinkType,
    pub ts: Timestamp,
    pub data: &'a [u8],
}

/// Frames by number, readable from any thread.
pub trait FrameSource: Send + Sync {
    /// Frame number `index`, if there is one.
    fn frame(&self, index: usize) -> Option<Frame<'_>>;
}
