//! HTTP/2 in cleartext (prior knowledge; RFC 9113) and gRPC on it: frames read in each direction, header
//! blocks decoded with HPACK state per direction (the `loona-hpack` crate, a maintained fork of `hpack`
//! whose decoder works block by block and reports errors instead of panicking), and every stream paired
//! from its request to its response — with gRPC's status from the trailers, resets and GOAWAYs named by
//! their error codes.

mod dissector;
pub(crate) mod entry;
pub mod frame;
pub mod grpc;
mod stream;

pub use dissector::{Http2Counters, Http2Dissector, Http2Outcome};

use crate::dissect::http::Verdict;

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
