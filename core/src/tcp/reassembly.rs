//! One direction of a TCP stream put back in order for the dissectors: retransmitted bytes are dropped,
//! out-of-order segments wait (within the receiver's window and a byte budget), and what never arrives is
//! handed on as a gap and counted as missed bytes (Zeek's `missed_bytes`). A hole is given up as soon as
//! the receiver acknowledges past it — its ACK proves the bytes were sent, so the capture lost them and
//! waiting longer only stalls the dissector. Offsets are 64-bit from the first sequence number, so
//! wrap-around is handled once, here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::time::Timestamp;

/// Out-of-order bytes held by every stream of one engine together. Shared by the streams (each releases
/// what it holds when it is dropped, however its connection ends).
#[derive(Debug, Default)]
pub struct HeldBudget {
    used: AtomicUsize,
    limit: usize,
}

/// What became of a segment that could not be delivered at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered, held, or a retransmission of what was delivered.
    Taken,
    /// Not held: it lies beyond the receiver's window (a stale duplicate, corruption).
    OutOfWindow,
    /// Held, but the engine's budget of held bytes was spent: this stream gave its holes up early.
    OverBudget,
}

impl HeldBudget {
    pub fn new(limit: usize) -> Arc<HeldBudget> {
        Arc::new(HeldBudget { limit, ..HeldBudget::default() })
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn take(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn exceeded(&self) -> bool {
        self.used() > self.limit
    }
}

/// What the reassembler hands on, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(Timestamp, &'a [u8]),
    /// Bytes the capture never saw, noticed at the given time.
    Gap(u64, Timestamp),
    /// The FIN, after every byte before it.
    End(Timestamp),
}

struct Held {
    ts: Timestamp,
    data: Vec<u8>,
    /// Sequence space covered: more than `data.len()` for a snap-length-cut segment.
    len: u64,
}

/// How far ahead a segment may start and still be held when the receiver's window is not known (a
/// connection picked up mid-stream): more than any window Linux autotuning grows to by default.
const UNKNOWN_WINDOW_REACH: u64 = 16 << 20;

pub struct Reassembler {
    /// Out-of-order bytes held at most before the first hole is given up as missed.
    max_held: usize,
    budget: Arc<HeldBudget>,
    /// Sequence number at offset 0; `None` until the first segment or SYN fixes it.
    base: Option<u32>,
    /// Offset of the next byte expected.
    next: u64,
    held: BTreeMap<u64, Held>,
    held_bytes: usize,
    fin_at: Option<(u64, Timestamp)>,
    ended: bool,
    missed: u64,
    /// The latest time this stream heard of: when a gap is noticed.
    last_ts: Timestamp,
}

impl Drop for Reassembler {
    fn drop(&mut self) {
        self.budget.give(self.held_bytes);
    }
}

impl Reassembler {
    pub fn new(max_held: usize, budget: Arc<HeldBudget>) -> Reassembler {
        Reassembler {
            max_held,
            budget,
            base: None,
            next: 0,
            held: BTreeMap::new(),
            held_bytes: 0,
            fin_at: None,
            ended: false,
            missed: 0,
            last_ts: Timestamp(0),
        }
    }

    /// Fixes where data starts (the SYN's sequence number plus one) before any data is seen.
    pub fn start_at(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq);
        }
    }

    pub fn missed_bytes(&self) -> u64 {
        self.missed
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Offset of `seq`, taken as the one nearest to the next expected byte (within ±2 GiB).
    fn offset(&self, base: u32, seq: u32) -> i128 {
        let next_seq = base.wrapping_add(self.next as u32);
        i128::from(self.next) + i128::from(seq.wrapping_sub(next_seq) as i32)
    }

    /// A segment: `data` as captured, covering `seg_len` sequence numbers (`seg_len >= data.len()`).
    /// `window`: how far beyond the next expected byte the receiver said it would accept data (its
    /// advertised window), if known; a segment that starts beyond it is not held (and is counted).
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        ts: Timestamp,
        seq: u32,
        data: &[u8],
        seg_len: u32,
        fin: bool,
        window: Option<u64>,
        sink: &mut dyn FnMut(Chunk<'_>),
    ) -> Fate {
        let mut fate = Fate::Taken;
        if self.ended {
            return fate;
        }
        self.last_ts = self.last_ts.max(ts);
        let base = *self.base.get_or_insert(seq);
        let start = self.offset(base, seq);
        let end = start + i128::from(seg_len);
        let next = i128::from(self.next);
        // Only what the receiver could accept is held: a stale duplicate far ahead would otherwise sit
        // here and later be "missed" as a hole of up to 2 GiB.
        let reach = window.unwrap_or(UNKNOWN_WINDOW_REACH).max(1);
        if start > next && (start - next) as u64 > reach {
            return Fate::OutOfWindow;
        }
        if fin {
            if let Ok(at) = u64::try_from(end) {
                self.fin_at.get_or_insert((at, ts));
            }
        }
        if seg_len > 0 && end > next {
            if start <= next {
                let skip = usize::try_from(next - start).unwrap_or(usize::MAX);
                self.deliver(ts, data.get(skip..).unwrap_or(&[]), (end - next) as u64, sink);
                self.drain(sink);
            } else if let Ok(at) = u64::try_from(start) {
                self.hold(at, ts, data, u64::from(seg_len));
                while self.held_bytes > self.max_held {
                    self.skip_to_first_held(sink);
                }
                if self.budget.exceeded() && !self.held.is_empty() {
                    fate = Fate::OverBudget;
                    while !self.held.is_empty() {
                        self.skip_to_first_held(sink);
                    }
                }
            }
        }
        self.check_end(sink);
        fate
    }

    /// The receiver acknowledged everything before `ack`: bytes before it that were never captured were
    /// sent all the same. Gives the holes up at once (counted as missed) and delivers what waited behind
    /// them. An ACK that covers the FIN is clamped to it (the FIN takes a sequence number, not a byte).
    pub fn acked(&mut self, ack: u32, ts: Timestamp, sink: &mut dyn FnMut(Chunk<'_>)) {
        let Some(base) = self.base else { return };
        if self.ended {
            return;
        }
        self.last_ts = self.last_ts.max(ts);
        let at = self.offset(base, ack);
        let Ok(mut at) = u64::try_from(at) else { return };
        if let Some((fin, _)) = self.fin_at {
            at = at.min(fin);
        }
        while at > self.next {
            match self.held.first_key_value() {
                Some((&first, _)) if first <= at => self.skip_to_first_held(sink),
                _ => {
                    let missing = at - self.next;
                    self.gap(missing, sink);
                }
            }
        }
        self.check_end(sink);
    }

    /// The next byte expected, as a sequence number (`None` before the first segment).
    pub fn next_seq(&self) -> Option<u32> {
        self.base.map(|b| b.wrapping_add(self.next as u32))
    }

    /// The connection is over (RST, or the end of the capture): hand on everything held, gaps included.
    pub fn flush(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        while !self.held.is_empty() {
            self.skip_to_first_held(sink);
        }
        if let Some((at, _)) = self.fin_at {
            if at > self.next && !self.ended {
                self.gap(at - self.next, sink);
            }
        }
        self.check_end(sink);
    }

    /// Hands on `data` at `next`, then a gap for the part of `len` that was not captured.
    fn deliver(&mut self, ts: Timestamp, data: &[u8], len: u64, sink: &mut dyn FnMut(Chunk<'_>)) {
        let data = &data[..data.len().min(usize::try_from(len).unwrap_or(usize::MAX))];
        if !data.is_empty() {
            sink(Chunk::Data(ts, data));
        }
        self.next += data.len() as u64;
        let missing = len - data.len() as u64;
        if missing > 0 {
            self.gap(missing, sink);
        }
    }

    fn gap(&mut self, len: u64, sink: &mut dyn FnMut(Chunk<'_>)) {
        self.missed += len;
        self.next += len;
        sink(Chunk::Gap(len, self.last_ts));
    }

    fn hold(&mut self, at: u64, ts: Timestamp, data: &[u8], len: u64) {
        let longer = self.held.get(&at).is_none_or(|h| h.len < len);
        if longer {
            self.held_bytes += data.len();
            self.budget.take(data.len());
            if let Some(old) = self.held.insert(at, Held { ts, data: data.to_vec(), len }) {
                self.held_bytes -= old.data.len();
                self.budget.give(old.data.len());
            }
        }
    }

    /// Gives up on the bytes before the first held segment, and delivers from there.
    fn skip_to_first_held(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        if let Some((&at, _)) = self.held.first_key_value() {
            if at > self.next {
                self.gap(at - self.next, sink);
            }
            self.drain(sink);
        }
    }

    /// Delivers held segments that now touch or overlap `next`.
    fn drain(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(entry) = self.held.first_entry() {
            let at = *entry.key();
            if at > self.next {
                break;
            }
            let h = entry.remove();
            self.held_bytes -= h.data.len();
            self.budget.give(h.data.len());
            let end = at + h.len;
            if end > self.next {
                let skip = usize::try_from(self.next - at).unwrap_or(usize::MAX);
                let len = end - self.next;
                self.deliver(h.ts, h.data.get(skip..).unwrap_or(&[]), len, sink);
            }
        }
    }

    fn check_end(&mut self, sink: &mut dyn FnMut(Chunk<'_>)) {
        if let Some((at, ts)) = self.fin_at {
            if !self.ended && self.next >= at {
                self.ended = true;
                sink(Chunk::End(ts));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs segments (seq, data, seg_len, fin) and renders what came out as a string: data verbatim,
    /// gaps as `<n>`, the end as `$`.
    fn run(isn: Option<u32>, segs: &[(u32, &[u8], u32, bool)], flush: bool, max_held: usize) -> (String, u64) {
        let mut r = Reassembler::new(max_held, HeldBudget::new(usize::MAX));
        if let Some(isn) = isn {
            r.start_at(isn);
        }
        let mut out = String::new();
        let mut sink = |c: Chunk<'_>| match c {
            Chunk::Data(_, d) => out.push_str(&String::from_utf8_lossy(d)),
            Chunk::Gap(n, _) => out.push_str(&format!("<{n}>")),
            Chunk::End(_) => out.push('$'),
        };
        for (seq, data, len, fin) in segs {
            r.segment(Timestamp(0), *seq, data, *len, *fin, None, &mut sink);
        }
        if flush {
            r.flush(&mut sink);
        }
        (out, r.missed_bytes())
    }

    fn seg(seq: u32, data: &'static [u8]) -> (u32, &'static [u8], u32, bool) {
        (seq, data, data.len() as u32, false)
    }

    #[test]
    fn in_order_with_fin() {
        let (out, missed) = run(Some(100), &[seg(100, b"abc"), (103, b"def", 3, true)], false, 1 << 20);
        assert_eq!((out.as_str(), missed), ("abcdef$", 0));
    }

    #[test]
    fn out_of_order_and_retransmission() {
        let segs = [seg(106, b"ghi"), seg(100, b"abc"), seg(100, b"abc"), seg(102, b"cdef"), seg(103, b"def")];
        assert_eq!(run(Some(100), &segs, false, 1 << 20).0, "abcdefghi");
    }

    #[test]
    fn fin_waits_for_the_data_before_it() {
        let segs = [(106, &b""[..], 0, true), seg(103, b"def"), seg(100, b"abc")];
        assert_eq!(run(Some(100), &segs, false, 1 << 20).0, "abcdef$");
    }

    #[test]
    fn wraps_around_the_sequence_space() {
        let segs = [seg(u32::MAX - 1, b"ab"), seg(0, b"cd"), seg(2, b"ef")];
        assert_eq!(run(None, &segs, false, 1 << 20).0, "abcdef");
    }

    #[test]
    fn gaps_are_counted_at_flush_and_over_budget() {
        let (out, missed) = run(Some(0), &[seg(0, b"ab"), seg(5, b"fg"), (7, b"", 0, true)], true, 1 << 20);
        assert_eq!((out.as_str(), missed), ("ab<3>fg$", 3));
        // A budget of 3 bytes: holding "fg" and "jk" exceeds it, so the first hole is given up.
        let (out, missed) = run(Some(0), &[seg(0, b"ab"), seg(5, b"fg"), seg(9, b"jk")], false, 3);
        assert_eq!((out.as_str(), missed), ("ab<3>fg", 3));
    }

    #[test]
    fn snap_length_cut_segment_is_data_then_gap() {
        let (out, missed) = run(Some(0), &[(0, b"abc", 10, false), seg(10, b"xyz")], false, 1 << 20);
        assert_eq!((out.as_str(), missed), ("abc<7>xyz", 7));
    }

    #[test]
    fn mid_stream_starts_at_the_first_segment() {
        assert_eq!(run(None, &[seg(5000, b"mid"), seg(5003, b"dle")], false, 1 << 20).0, "middle");
    }
}
