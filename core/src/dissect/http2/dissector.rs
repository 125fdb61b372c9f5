//! Reads HTTP/2 frames in both directions of a connection; what the frames mean for streams is in
//! `streams.rs`.
//!
//! Capture loss, and connections picked up mid-stream (gRPC channels live for days; an agent starts
//! long after them): a gap inside a DATA payload is passed over (its length is known and HPACK is
//! untouched). Anywhere else the reader has lost its place in that direction: it finds the next frame
//! boundary at the start of a later segment (`frame::looks_like_frames`). A lost header block may have
//! changed HPACK's dynamic table, so that direction's blocks are no longer decoded and streams are no
//! longer paired (counted); RST_STREAM and GOAWAY need no HPACK and are still reported (SPEC §3.5). A
//! connection picked up mid-stream begins the same way, but its tables hold everything added since, at the
//! same indexes as the peers' own: blocks that decode are used, and the first that does not stops decoding
//! in its direction.

use std::collections::BTreeMap;

use loona_hpack::Decoder;

use super::frame::{self, FrameHeader, HEADER_LEN, PREFACE};
use super::outcome::{Http2Counters, Http2Outcome};
use super::stream::{Block, Stream};
use crate::entry::Request;
use crate::time::Timestamp;

/// Streams tracked per connection; more at once are counted and not tracked.
pub(super) const MAX_STREAMS: usize = 1024;
/// The largest frame whose payload is read (header blocks, GOAWAY debug data); DATA is never held.
const MAX_FRAME: usize = 256 * 1024;
/// The largest header block (HEADERS plus CONTINUATIONs).
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The largest HPACK dynamic table an encoder may ask for (the default is 4096).
const MAX_TABLE: usize = 64 * 1024;
/// GOAWAY debug data kept in the message.
const MAX_DEBUG: usize = 200;

/// One direction of the connection.
struct Half {
    /// Preface bytes still expected (the client's 24; 0 for the server).
    preface_left: usize,
    /// An incomplete frame: its header, then its payload.
    partial: Vec<u8>,
    /// DATA payload bytes still to pass over, the stream they belong to, and whether it ends there.
    skip: u64,
    skip_stream: u32,
    skip_ends: bool,
    /// A frame payload that is not kept (too large, or of no interest) still to pass over.
    discard: u64,
    /// A header block waiting for its CONTINUATION frames: stream, bytes, END_STREAM, is a PUSH_PROMISE.
    continuation: Option<(u32, Vec<u8>, bool, bool)>,
    hpack: Decoder<'static>,
    /// What the HPACK table may hold: the headers decoded so far (each with RFC 7541's 32 bytes of
    /// overhead), up to the table's bound — the decoder does not say what it keeps.
    hpack_bytes: usize,
    /// Frames are read from a known boundary: false after loss outside a DATA payload, and mid-stream
    /// until a segment starts with frames.
    aligned: bool,
    /// Header blocks are decoded: false once one may have been lost, or failed to decode mid-stream.
    decoding: bool,
}

impl Half {
    fn new(preface: usize, aligned: bool) -> Half {
        let mut hpack = Decoder::new();
        hpack.set_max_allowed_table_size(MAX_TABLE);
        Half {
            preface_left: preface,
            partial: Vec::new(),
            skip: 0,
            skip_stream: 0,
            skip_ends: false,
            discard: 0,
            continuation: None,
            hpack,
            hpack_bytes: 0,
            aligned,
            decoding: true,
        }
    }
}

/// The bytes break HTTP/2's grammar: reported once as `parser error` (mid-stream: the reader lost its
/// place).
pub(super) struct Grammar(pub String);

pub struct Http2Dissector {
    /// [client→server, server→client]
    halves: [Half; 2],
    pub(super) streams: BTreeMap<u32, Stream>,
    /// Streams opened, or still open, while header blocks could not be decoded: by id, with the request
    /// when it was read before.
    pub(super) blind: BTreeMap<u32, Option<Stream>>,
    /// The highest stream the client opened: a HEADERS on a lower one that is gone is late trailers.
    pub(super) highest: u32,
    /// A GOAWAY from the server: streams above this were not processed.
    pub(super) goaway_last: Option<u32>,
    pub(super) stopped: bool,
    /// The client's preface has been seen (a server SETTINGS alone may have identified the stream).
    confirmed: bool,
    /// Picked up mid-stream: bytes that break the grammar mean the reader lost its place, not that a peer
    /// erred, and streams below the first one seen opening began before the dissector.
    pub(super) midstream: bool,
    /// The first stream the client was seen opening.
    pub(super) first_seen: Option<u32>,
    /// Some direction's header blocks are no longer decoded: streams are not paired from then on.
    pub(super) frames_only: bool,
    /// The client left first (GOAWAY, or its close or reset): streams still open are its to cut.
    pub(super) client_left: bool,
    /// The server's FIN was seen: it left first, unless the client already had.
    pub(super) server_fin: bool,
    /// The server's first frame was seen (it must be SETTINGS).
    server_started: bool,
    pub outcomes: Vec<Http2Outcome>,
    pub counters: Http2Counters,
}

impl Http2Dissector {
    /// `client_preface`: the client's preface is still to come (prior knowledge); false after an `h2c`
    /// upgrade whose preface was already consumed.
    pub fn new(client_preface: bool) -> Http2Dissector {
        Http2Dissector {
            halves: [Half::new(if client_preface { PREFACE.len() } else { 0 }, true), Half::new(0, true)],
            streams: BTreeMap::new(),
            blind: BTreeMap::new(),
            highest: 0,
            goaway_last: None,
            stopped: false,
            confirmed: !client_preface,
            midstream: false,
            first_seen: None,
            frames_only: false,
            client_left: false,
            server_fin: false,
            server_started: false,
            outcomes: Vec::new(),
            counters: Http2Counters::default(),
        }
    }

    /// Bytes held between calls: incomplete frames, header blocks awaiting CONTINUATION, HPACK tables.
    pub fn buffered(&self) -> usize {
        self.halves
            .iter()
            .map(|h| h.partial.len() + h.continuation.as_ref().map_or(0, |c| c.1.len()) + h.hpack_bytes)
            .sum()
    }

    /// A connection picked up mid-stream: each direction is read from its first segment that starts with
    /// frames.
    pub fn midstream() -> Http2Dissector {
        Http2Dissector {
            halves: [Half::new(0, false), Half::new(0, false)],
            confirmed: true,
            midstream: true,
            server_started: true,
            ..Http2Dissector::new(false)
        }
    }

    /// A connection upgraded from HTTP/1.1 (`Upgrade: h2c`, answered `101`): `request` was stream 1; the
    /// client's preface is still to come.
    pub fn upgraded(ts: Timestamp, request: Request) -> Http2Dissector {
        let mut d = Http2Dissector::new(true);
        d.confirmed = true;
        d.highest = 1;
        d.first_seen = Some(1);
        d.streams.insert(1, Stream::upgraded(ts, request));
        d
    }

    /// A stream is open: a request not yet answered, or an answer still coming.
    pub fn awaits_response(&self) -> bool {
        !self.stopped && (!self.streams.is_empty() || !self.blind.is_empty())
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn on_data(&mut self, from_client: bool, ts: Timestamp, mut data: &[u8]) {
        let d = usize::from(!from_client);
        if self.stopped {
            return;
        }
        if !self.halves[d].aligned {
            if !frame::looks_like_frames(data) {
                return;
            }
            self.halves[d].aligned = true;
            self.counters.resynced += 1;
        }
        while !self.stopped && self.halves[d].aligned && !data.is_empty() {
            match self.step(d, ts, data) {
                Ok(used) => data = &data[used.min(data.len())..],
                Err(Grammar(_)) if self.midstream => self.lose_place(d),
                Err(Grammar(msg)) => self.stop_grammar(ts, msg),
            }
        }
    }

    /// Reads what it can from the front of `data`; returns how many bytes it used (at least one).
    fn step(&mut self, d: usize, ts: Timestamp, data: &[u8]) -> Result<usize, Grammar> {
        let half = &mut self.halves[d];
        if half.preface_left > 0 {
            let at = PREFACE.len() - half.preface_left;
            let n = half.preface_left.min(data.len());
            if data[..n] != PREFACE[at..at + n] {
                if !self.confirmed {
                    // Taken for HTTP/2 by the server's first bytes alone, and the client says otherwise.
                    self.stopped = true;
                    return Ok(data.len());
                }
                return Err(Grammar("parser error: not the HTTP/2 connection preface".into()));
            }
            half.preface_left -= n;
            if half.preface_left == 0 {
                self.confirmed = true;
            }
            return Ok(n);
        }
        if half.skip > 0 {
            let n = half.skip.min(data.len() as u64);
            self.pass_data(d, n, ts);
            return Ok(n as usize);
        }
        if half.discard > 0 {
            let n = half.discard.min(data.len() as u64);
            half.discard -= n;
            return Ok(n as usize);
        }
        // A frame: whole in `data` (read in place), or gathered in `partial`.
        let have = half.partial.len();
        if have == 0 {
            if let Some(h) = FrameHeader::parse(data) {
                let total = HEADER_LEN + h.len as usize;
                if h.kind == frame::DATA || h.len as usize > MAX_FRAME || data.len() >= total {
                    if self.frame_start(d, h, ts)? {
                        self.frame(d, h, &data[HEADER_LEN..total], ts)?;
                        return Ok(total);
                    }
                    return Ok(HEADER_LEN);
                }
            }
        }
        let half = &mut self.halves[d];
        let want_header = HEADER_LEN.saturating_sub(have);
        if want_header > 0 {
            let n = want_header.min(data.len());
            half.partial.extend_from_slice(&data[..n]);
            if half.partial.len() < HEADER_LEN {
                return Ok(n);
            }
            let Some(h) = FrameHeader::parse(&half.partial) else { return Ok(n) };
            if h.kind == frame::DATA || h.len as usize > MAX_FRAME || h.len == 0 {
                half.partial.clear();
                if self.frame_start(d, h, ts)? {
                    self.frame(d, h, &[], ts)?;
                }
            }
            return Ok(n);
        }
        let Some(h) = FrameHeader::parse(&half.partial) else {
            half.partial.clear();
            return Ok(0);
        };
        let total = HEADER_LEN + h.len as usize;
        let n = (total - have).min(data.len());
        half.partial.extend_from_slice(&data[..n]);
        if half.partial.len() == total {
            let whole = std::mem::take(&mut half.partial);
            if self.frame_start(d, h, ts)? {
                self.frame(d, h, &whole[HEADER_LEN..], ts)?;
            }
        }
        Ok(n)
    }

    /// A frame's header, before its payload: the grammar a header alone can break, and where a DATA
    /// payload or one too large to keep goes. Returns whether the payload is to be read (`frame`).
    fn frame_start(&mut self, d: usize, h: FrameHeader, ts: Timestamp) -> Result<bool, Grammar> {
        if d == 1 && !self.server_started {
            self.server_started = true;
            // "HTTP/" read as a frame header: a length of "HTT", type 'P', flags '/'.
            if h.len == 0x48_5454 && h.kind == b'P' && h.flags == b'/' {
                return Err(Grammar("parser error: server answered HTTP/1.x".into()));
            }
            if h.kind != frame::SETTINGS {
                let name = frame::kind_name(h.kind);
                return Err(Grammar(format!("parser error: the server's first frame is {name}, not SETTINGS")));
            }
        }
        if let Some(v) = h.violation() {
            return Err(Grammar(format!("parser error: {v}")));
        }
        let half = &mut self.halves[d];
        if let Some((stream, ..)) = &half.continuation {
            if h.kind != frame::CONTINUATION || h.stream != *stream {
                return Err(Grammar(format!(
                    "parser error: {} frame where the CONTINUATION of stream {stream} was due",
                    frame::kind_name(h.kind)
                )));
            }
        }
        if h.kind == frame::DATA {
            half.skip = u64::from(h.len);
            half.skip_stream = h.stream;
            half.skip_ends = h.has(frame::END_STREAM);
            if h.len == 0 && half.skip_ends {
                self.end_stream(d, h.stream, ts);
            }
            return Ok(false);
        }
        if h.len as usize > MAX_FRAME {
            half.discard = u64::from(h.len);
            if matches!(h.kind, frame::HEADERS | frame::CONTINUATION | frame::PUSH_PROMISE) {
                // A header block we will not hold: HPACK state is lost with it.
                self.stop_decoding(d);
                if h.kind == frame::HEADERS {
                    self.headers_unread(d, h.stream, h.has(frame::END_STREAM), ts);
                }
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// A whole frame other than DATA.
    fn frame(&mut self, d: usize, h: FrameHeader, payload: &[u8], ts: Timestamp) -> Result<(), Grammar> {
        let from_client = d == 0;
        match h.kind {
            frame::HEADERS | frame::PUSH_PROMISE => {
                if h.kind == frame::PUSH_PROMISE && from_client {
                    return Err(Grammar("parser error: PUSH_PROMISE from the client".into()));
                }
                let Some((_, range)) = frame::header_block(&h, payload) else {
                    return Err(Grammar(format!(
                        "parser error: {} padding or fields longer than the frame",
                        frame::kind_name(h.kind)
                    )));
                };
                let block = payload[range].to_vec();
                let push = h.kind == frame::PUSH_PROMISE;
                let end_stream = h.has(frame::END_STREAM) && !push;
                if h.has(frame::END_HEADERS) {
                    self.header_block(d, h.stream, &block, end_stream, push, ts)?;
                } else {
                    self.halves[d].continuation = Some((h.stream, block, end_stream, push));
                }
            }
            frame::CONTINUATION => {
                let Some((stream, mut block, end_stream, push)) = self.halves[d].continuation.take() else {
                    return Err(Grammar("parser error: CONTINUATION without HEADERS".into()));
                };
                if block.len() + payload.len() > MAX_HEADER_BLOCK {
                    self.stop_decoding(d);
                    if !push {
                        self.headers_unread(d, stream, end_stream, ts);
                    }
                    return Ok(());
                }
                block.extend_from_slice(payload);
                if h.has(frame::END_HEADERS) {
                    self.header_block(d, stream, &block, end_stream, push, ts)?;
                } else {
                    self.halves[d].continuation = Some((stream, block, end_stream, push));
                }
            }
            frame::RST_STREAM => {
                let code = frame::u32_at(payload, 0).unwrap_or(0);
                self.reset(from_client, h.stream, code, ts);
            }
            frame::GOAWAY => {
                let last = frame::u32_at(payload, 0).unwrap_or(0) & 0x7fff_ffff;
                let code = frame::u32_at(payload, 4).unwrap_or(0);
                let debug = payload.get(8..).unwrap_or_default();
                let debug = String::from_utf8_lossy(&debug[..debug.len().min(MAX_DEBUG)]).into_owned();
                self.goaway(from_client, last, code, debug, ts);
            }
            // SETTINGS, PING, PRIORITY, WINDOW_UPDATE and unknown types change nothing we report.
            _ => {}
        }
        Ok(())
    }

    fn header_block(
        &mut self,
        d: usize,
        stream: u32,
        block: &[u8],
        end_stream: bool,
        push: bool,
        ts: Timestamp,
    ) -> Result<(), Grammar> {
        // Once streams are no longer paired, a client's requests are still read (while its table is sound):
        // a reset then says what it cut.
        if !self.halves[d].decoding || (self.frames_only && d == 1) {
            if !push {
                self.headers_unread(d, stream, end_stream, ts);
            }
            return Ok(());
        }
        let mut b = Block::default();
        let mut decoded = 0;
        let half = &mut self.halves[d];
        let result = half.hpack.decode_with_cb(block, |n, v| {
            decoded += n.len() + v.len() + 32;
            b.add(&n, &v)
        });
        half.hpack_bytes = (half.hpack_bytes + decoded).min(MAX_TABLE);
        if let Err(e) = result {
            let ours = matches!(e, loona_hpack::decoder::DecoderError::InvalidMaxDynamicSize);
            if !(ours || self.midstream) {
                return Err(Grammar(format!("parser error: HPACK: {e}")));
            }
            // A table over our bound, or (mid-stream) an entry added before the dissector began.
            self.stop_decoding(d);
            if !push {
                self.headers_unread(d, stream, end_stream, ts);
            }
            return Ok(());
        }
        self.counters.over_limit += b.dropped;
        if push {
            // A pushed response's request: kept in HPACK state only.
            return Ok(());
        }
        if d == 0 {
            self.client_headers(stream, b, end_stream, ts)
        } else {
            self.server_headers(stream, b, end_stream, ts)
        }
    }

    /// `n` bytes (seen or lost) of the DATA payload direction `d` is passing over; its stream ends with
    /// the last of them if the frame said so.
    fn pass_data(&mut self, d: usize, n: u64, ts: Timestamp) {
        let half = &mut self.halves[d];
        half.skip -= n;
        let (stream, ends, done) = (half.skip_stream, half.skip_ends, half.skip == 0);
        self.add_body(d, stream, n);
        if done && ends {
            self.end_stream(d, stream, ts);
        }
    }

    /// Bytes the capture never saw, in direction `from_client`.
    pub fn on_gap(&mut self, from_client: bool, len: u64, ts: Timestamp) {
        if self.stopped {
            return;
        }
        let d = usize::from(!from_client);
        if d == 1 {
            // The server's first frame may be what was lost: it can no longer be checked.
            self.server_started = true;
        }
        let half = &mut self.halves[d];
        if half.aligned && half.partial.is_empty() && half.continuation.is_none() && half.preface_left == 0 {
            if half.skip >= len {
                // Inside a DATA payload: nothing HPACK needs was lost.
                self.counters.gaps_skipped += 1;
                self.pass_data(d, len, ts);
                return;
            }
            if half.discard >= len {
                half.discard -= len;
                self.counters.gaps_skipped += 1;
                return;
            }
        }
        self.lose_place(d);
    }

    /// Direction `d` no longer knows where frames begin: it looks for a boundary at the start of a later
    /// segment, and whatever was lost may have held a header block.
    fn lose_place(&mut self, d: usize) {
        let half = &mut self.halves[d];
        if !half.aligned {
            return;
        }
        half.aligned = false;
        half.preface_left = 0;
        half.partial.clear();
        half.skip = 0;
        half.discard = 0;
        half.continuation = None;
        self.stop_decoding(d);
    }

    /// Direction `d`'s header blocks are no longer decoded; from now on streams are known by id only, and
    /// those open are counted as lost (never reported as unanswered).
    fn stop_decoding(&mut self, d: usize) {
        self.halves[d].decoding = false;
        if self.frames_only {
            return;
        }
        self.frames_only = true;
        self.counters.broken += 1;
        self.counters.lost_streams += self.streams.len() as u64;
        for (id, s) in std::mem::take(&mut self.streams) {
            self.blind.insert(id, Some(s));
        }
    }
}
