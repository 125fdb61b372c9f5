//! Frames on their way to the engine thread from the capture threads (`run`) or the capture file's reader
//! (`analyze`): copied into one buffer per batch, so that a batch costs one allocation and one channel
//! message rather than one per frame.

use std::ops::Range;

use faultline_core::wire::LinkType;
use faultline_core::Timestamp;

/// Frames per batch.
pub const BATCH_FRAMES: usize = 256;

#[derive(Default)]
pub struct FrameBatch {
    data: Vec<u8>,
    frames: Vec<(LinkType, Timestamp, Range<usize>)>,
}

impl FrameBatch {
    pub fn push(&mut self, link_type: LinkType, ts: Timestamp, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.frames.push((link_type, ts, start..self.data.len()));
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

    pub fn iter(&self) -> impl Iterator<Item = (LinkType, Timestamp, &[u8])> {
        self.frames.iter().map(|(l, ts, r)| (*l, *ts, self.data.get(r.clone()).unwrap_or_default()))
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
        let got: Vec<_> = b.iter().map(|(l, t, d)| (l, t.nanos(), d.to_vec())).collect();
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
}
