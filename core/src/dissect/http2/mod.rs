//! HTTP/2 in cleartext (prior knowledge; RFC 9113) and gRPC on it: frames read in each direction, header
//! blocks decoded with HPACK state per direction (the `loona-hpack` crate, a maintained fork of `hpack`
//! whose decoder works block by block and reports errors instead of panicking), and every stream paired
//! from its request to its response — with gRPC's status from the trailers, resets and GOAWAYs named by
//! their error codes.

mod dissector;
mod entries;
pub mod frame;
pub mod grpc;
mod outcome;
mod stream;
mod streams;

pub use dissector::Http2Dissector;
pub use outcome::{Http2Counters, Http2Outcome};

use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict};
use crate::engine::stats::Stats;
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Http2, probe, start, summary, answered_by: None };

/// The client's connection preface, or a server's SETTINGS frame (a server may send its preface before
/// the client's arrives; the client's then confirms it). Mid-stream, a segment that starts with frames
/// (`frame::looks_like_frames`): resets and GOAWAYs are read without HPACK, header blocks as far as the
/// tables allow.
fn probe(p: &Probe<'_>) -> Claim {
    if p.skipped > 0 {
        return Claim::No;
    }
    if p.midstream {
        return if frame::looks_like_frames(p.bytes) { Claim::Yes { flipped: false, lead: 0 } } else { Claim::No };
    }
    let verdict = match p.dir {
        Direction::ToServer => looks_like_preface(p.bytes),
        Direction::ToClient => looks_like_server_preface(p.bytes),
    };
    match verdict {
        Verdict::Yes => Claim::Yes { flipped: false, lead: 0 },
        Verdict::NeedMore => Claim::NeedMore,
        Verdict::No => Claim::No,
    }
}

/// What HTTP/2 could not read, or dropped on purpose.
fn summary(s: &Stats) -> String {
    format!(
        "{} HTTP/2 connections whose header blocks were lost ({} streams lost, {} blocks not decoded), {} \
         HTTP/2 connections read from mid-stream, {} HTTP/2 gaps skipped, {} HTTP/2 streams over limits, {} \
         HTTP/2 streams refused by GOAWAY, {} cut by their client, {} cancels of streams never seen",
        s.http2_broken,
        s.http2_lost_streams,
        s.http2_blocks_undecoded,
        s.http2_resynced,
        s.http2_gaps_skipped,
        s.http2_over_limit,
        s.http2_refused_by_goaway,
        s.http2_cut_by_client,
        s.http2_cancels_unseen
    )
}

fn start(p: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::new(if p.midstream { Http2Dissector::midstream() } else { Http2Dissector::new(true) })
}

impl Http2Dissector {
    /// What one call found: its counters into the engine's, its outcomes as entries.
    fn report(&mut self, found: &mut Found<'_>) {
        let c = std::mem::take(&mut self.counters);
        found.stats.http2_broken += c.broken;
        found.stats.http2_lost_streams += c.lost_streams;
        found.stats.http2_gaps_skipped += c.gaps_skipped;
        found.stats.http2_over_limit += c.over_limit;
        found.stats.http2_refused_by_goaway += c.refused_by_goaway;
        found.stats.http2_cut_by_client += c.cut_by_client;
        found.stats.http2_resynced += c.resynced;
        found.stats.http2_blocks_undecoded += c.blocks_undecoded;
        found.stats.http2_cancels_unseen += c.cancels_unseen;
        for o in std::mem::take(&mut self.outcomes) {
            let e = entries::build(o, |p, start, end| found.entry(p, start, end));
            found.out.push(e);
        }
    }
}

impl StreamDissector for Http2Dissector {
    fn buffered(&self) -> usize {
        Http2Dissector::buffered(self)
    }

    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        self.on_data(dir.to_server(), ts, bytes);
        self.report(found);
    }

    fn gap(&mut self, dir: Direction, len: u64, ts: Timestamp, found: &mut Found<'_>) {
        self.on_gap(dir.to_server(), len, ts);
        self.report(found);
    }

    fn end(&mut self, dir: Direction, _: Timestamp, _: &mut Found<'_>) {
        self.on_end(dir.to_server());
    }

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        self.on_close(ts, ending);
        self.report(found);
    }

    fn check(&mut self, now: Timestamp, found: &mut Found<'_>) {
        self.check(now, found.cfg.pair_timeout_ms);
        self.report(found);
    }

    fn answered_all(&self) -> bool {
        !self.awaits_response()
    }
}

/// Whether a client's first bytes are the HTTP/2 connection preface.
pub fn looks_like_preface(b: &[u8]) -> Verdict {
    let n = b.len().min(frame::PREFACE.len());
    if b[..n] != frame::PREFACE[..n] {
        Verdict::No
    } else if n < frame::PREFACE.len() {
        Verdict::NeedMore
    } else {
        Verdict::Yes
    }
}

/// Whether a server's first bytes are an HTTP/2 SETTINGS frame (a server may send its preface before the
/// client's arrives; the client's preface then confirms it).
pub fn looks_like_server_preface(b: &[u8]) -> Verdict {
    match frame::FrameHeader::parse(b) {
        None if b.first().is_some_and(|&x| x != 0) => Verdict::No,
        None => Verdict::NeedMore,
        Some(h) if h.kind == frame::SETTINGS && h.flags == 0 && h.stream == 0 && h.len % 6 == 0 && h.len <= 6 * 16 => {
            Verdict::Yes
        }
        Some(_) => Verdict::No,
    }
}
