//! Reads HTTP/2 frames in both directions of a connection and turns streams into outcomes: a pair per
//! answered stream, a reset or GOAWAY with an error code, a stream never answered, a frame that breaks
//! the grammar.
//!
//! Capture loss: a gap inside a DATA payload is skipped (its length is known and HPACK is untouched); a
//! gap anywhere else may have taken a header block and with it HPACK's dynamic table, so the connection is
//! no longer dissected — its open streams are counted as lost, never reported as errors.

use std::collections::BTreeMap;

use loona_hpack::Decoder;

use super::frame::{self, FrameHeader, HEADER_LEN, PREFACE};
use super::stream::{response, Block, Stream};
use crate::entry::{GrpcInfo, Request, Response, Side};
use crate::time::Timestamp;

/// Streams tracked per connection; more at once are counted and not tracked.
const MAX_STREAMS: usize = 1024;
/// The largest frame whose payload is read (header blocks, GOAWAY debug data); DATA is never held.
const MAX_FRAME: usize = 256 * 1024;
/// The largest header block (HEADERS plus CONTINUATIONs).
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The largest HPACK dynamic table an encoder may ask for (the default is 4096).
const MAX_TABLE: usize = 64 * 1024;
/// GOAWAY debug data kept in the message.
const MAX_DEBUG: usize = 200;

#[derive(Debug, PartialEq)]
pub enum Http2Outcome {
    /// An answered stream. `late`: it had been reported missing after waiting this many ms.
    Pair {
        req_ts: Timestamp,
        request: Request,
        resp_ts: Timestamp,
        response: Response,
        grpc: Option<GrpcInfo>,
        late: Option<u64>,
    },
    /// RST_STREAM on an open stream.
    Reset {
        req_ts: Timestamp,
        request: Request,
        response: Option<Response>,
        grpc: Option<GrpcInfo>,
        ts: Timestamp,
        stream: u32,
        code: u32,
        by: Side,
    },
    /// GOAWAY with an error code.
    GoAway { ts: Timestamp, last_stream: u32, code: u32, by: Side, debug: String },
    /// A request with no response after the pair timeout or at the connection's end.
    Missing { req_ts: Timestamp, request: Request, grpc: Option<GrpcInfo>, decided: Timestamp, why: String },
    /// `parser error …` or `unexpected EOF …`.
    Dissection {
        ts: Timestamp,
        msg: String,
        request: Option<(Timestamp, Request)>,
        response: Option<Response>,
        grpc: Option<GrpcInfo>,
    },
}

/// What the dissector dropped on purpose, drained into the engine's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Http2Counters {
    /// Connections no longer dissected because capture loss hit something other than a DATA payload.
    pub broken: u64,
    /// Streams open when that happened: counted, not reported.
    pub lost_streams: u64,
    /// Gaps inside DATA payloads, skipped without harm.
    pub gaps_skipped: u64,
    /// Streams not tracked (over the per-connection bound) or header fields not kept.
    pub over_limit: u64,
    /// Streams above a GOAWAY's last stream id: not processed by the server, so retried by clients.
    pub refused_by_goaway: u64,
}

/// One direction of the connection.
struct Direction {
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
}

impl Direction {
    fn new(preface: usize) -> Direction {
        let mut hpack = Decoder::new();
        hpack.set_max_allowed_table_size(MAX_TABLE);
        Direction {
            preface_left: preface,
            partial: Vec::new(),
            skip: 0,
            skip_stream: 0,
            skip_ends: false,
            discard: 0,
            continuation: None,
            hpack,
        }
    }
}

/// Why reading stopped.
enum Stop {
    /// The bytes break HTTP/2's grammar: reported once as `parser error`.
    Grammar(String),
    /// We cannot follow (HPACK table over our bound, a header block too large): counted.
    Untracked,
}

pub struct Http2Dissector {
    /// [client→server, server→client]
    dirs: [Direction; 2],
    streams: BTreeMap<u32, Stream>,
    /// The highest stream the client opened: a HEADERS on a lower one that is gone is late trailers.
    highest: u32,
    /// A GOAWAY from the server: streams above this were not processed.
    goaway_last: Option<u32>,
    stopped: bool,
    /// The client's preface has been seen (a server SETTINGS alone may have identified the stream).
    confirmed: bool,
    pub outcomes: Vec<Http2Outcome>,
    pub counters: Http2Counters,
}

impl Http2Dissector {
    /// `client_preface`: the client's preface is still to come (prior knowledge); false after an `h2c`
    /// upgrade whose preface was already consumed.
    pub fn new(client_preface: bool) -> Http2Dissector {
        Http2Dissector {
            dirs: [Direction::new(if client_preface { PREFACE.len() } else { 0 }), Direction::new(0)],
            streams: BTreeMap::new(),
            highest: 0,
            goaway_last: None,
            stopped: false,
            confirmed: !client_preface,
            outcomes: Vec::new(),
            counters: Http2Counters::default(),
        }
    }

    /// A connection upgraded from HTTP/1.1 (`Upgrade: h2c`, answered `101`): `request` was stream 1; the
    /// client's preface is still to come.
    pub fn upgraded(ts: Timestamp, request: Request) -> Http2Dissector {
        let mut d = Http2Dissector::new(true);
        d.confirmed = true;
        d.highest = 1;
        d.streams.insert(1, Stream::upgraded(ts, request));
        d
    }

    /// A stream is open: a request not yet answered, or an answer still coming.
    pub fn awaits_response(&self) -> bool {
        !self.stopped && !self.streams.is_empty()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    pub fn on_data(&mut self, from_client: bool, ts: Timestamp, mut data: &[u8]) {
        let d = usize::from(!from_client);
        while !self.stopped && !data.is_empty() {
            match self.step(d, ts, data) {
                Ok(used) => data = &data[used.min(data.len())..],
                Err(stop) => self.stop(ts, stop),
            }
        }
    }

    /// Reads what it can from the front of `data`; returns how many bytes it used (at least one).
    fn step(&mut self, d: usize, ts: Timestamp, data: &[u8]) -> Result<usize, Stop> {
        let dir = &mut self.dirs[d];
        if dir.preface_left > 0 {
            let at = PREFACE.len() - dir.preface_left;
            let n = dir.preface_left.min(data.len());
            if data[..n] != PREFACE[at..at + n] {
                if !self.confirmed {
                    // Taken for HTTP/2 by the server's first bytes alone, and the client says otherwise.
                    self.stopped = true;
                    return Ok(data.len());
                }
                return Err(Stop::Grammar("parser error: not the HTTP/2 connection preface".into()));
            }
            dir.preface_left -= n;
            if dir.preface_left == 0 {
                self.confirmed = true;
            }
            return Ok(n);
        }
        if dir.skip > 0 {
            let n = dir.skip.min(data.len() as u64);
            self.pass_data(d, n, ts);
            return Ok(n as usize);
        }
        if dir.discard > 0 {
            let n = dir.discard.min(data.len() as u64);
            dir.discard -= n;
            return Ok(n as usize);
        }
        // A frame: whole in `data` (read in place), or gathered in `partial`.
        let have = dir.partial.len();
        if have == 0 {
            if let Some(h) = FrameHeader::parse(data) {
                let total = HEADER_LEN + h.len as usize;
                if h.kind == frame::DATA || h.len as usize > MAX_FRAME || data.len() >= total {
                    self.frame_start(d, h, ts)?;
                    if h.kind == frame::DATA || h.len as usize > MAX_FRAME {
                        return Ok(HEADER_LEN);
                    }
                    self.frame(d, h, &data[HEADER_LEN..total], ts)?;
                    return Ok(total);
                }
            }
        }
        let dir = &mut self.dirs[d];
        let want_header = HEADER_LEN.saturating_sub(have);
        if want_header > 0 {
            let n = want_header.min(data.len());
            dir.partial.extend_from_slice(&data[..n]);
            if dir.partial.len() < HEADER_LEN {
                return Ok(n);
            }
            let Some(h) = FrameHeader::parse(&dir.partial) else { return Ok(n) };
            if h.kind == frame::DATA || h.len as usize > MAX_FRAME || h.len == 0 {
                dir.partial.clear();
                self.frame_start(d, h, ts)?;
                if h.kind != frame::DATA && h.len as usize <= MAX_FRAME {
                    self.frame(d, h, &[], ts)?;
                }
                return Ok(n);
            }
            return Ok(n);
        }
        let Some(h) = FrameHeader::parse(&dir.partial) else { return Err(Stop::Untracked) };
        let total = HEADER_LEN + h.len as usize;
        let n = (total - have).min(data.len());
        dir.partial.extend_from_slice(&data[..n]);
        if dir.partial.len() == total {
            let whole = std::mem::take(&mut dir.partial);
            self.frame_start(d, h, ts)?;
            self.frame(d, h, &whole[HEADER_LEN..], ts)?;
        }
        Ok(n)
    }

    /// A frame's header, before its payload: the grammar a header alone can break, and where a DATA
    /// payload or one too large to keep goes.
    fn frame_start(&mut self, d: usize, h: FrameHeader, ts: Timestamp) -> Result<(), Stop> {
        if let Some(v) = h.violation() {
            return Err(Stop::Grammar(format!("parser error: {v}")));
        }
        let dir = &mut self.dirs[d];
        if let Some((stream, ..)) = &dir.continuation {
            if h.kind != frame::CONTINUATION || h.stream != *stream {
                return Err(Stop::Grammar(format!(
                    "parser error: {} frame where the CONTINUATION of stream {stream} was due",
                    frame::kind_name(h.kind)
                )));
            }
        }
        if h.kind == frame::DATA {
            dir.skip = u64::from(h.len);
            dir.skip_stream = h.stream;
            dir.skip_ends = h.has(frame::END_STREAM);
            if h.len == 0 && dir.skip_ends {
                self.end_stream(d, h.stream, ts);
            }
        } else if h.len as usize > MAX_FRAME {
            if matches!(h.kind, frame::HEADERS | frame::CONTINUATION | frame::PUSH_PROMISE) {
                // A header block we will not hold: HPACK state is lost with it.
                return Err(Stop::Untracked);
            }
            dir.discard = u64::from(h.len);
        }
        Ok(())
    }

    /// A whole frame other than DATA.
    fn frame(&mut self, d: usize, h: FrameHeader, payload: &[u8], ts: Timestamp) -> Result<(), Stop> {
        let from_client = d == 0;
        match h.kind {
            frame::HEADERS | frame::PUSH_PROMISE => {
                if h.kind == frame::PUSH_PROMISE && from_client {
                    return Err(Stop::Grammar("parser error: PUSH_PROMISE from the client".into()));
                }
                let Some((_, range)) = frame::header_block(&h, payload) else {
                    return Err(Stop::Grammar(format!(
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
                    self.dirs[d].continuation = Some((h.stream, block, end_stream, push));
                }
            }
            frame::CONTINUATION => {
                let Some((stream, mut block, end_stream, push)) = self.dirs[d].continuation.take() else {
                    return Err(Stop::Grammar("parser error: CONTINUATION without HEADERS".into()));
                };
                if block.len() + payload.len() > MAX_HEADER_BLOCK {
                    return Err(Stop::Untracked);
                }
                block.extend_from_slice(payload);
                if h.has(frame::END_HEADERS) {
                    self.header_block(d, stream, &block, end_stream, push, ts)?;
                } else {
                    self.dirs[d].continuation = Some((stream, block, end_stream, push));
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
    ) -> Result<(), Stop> {
        let mut b = Block::default();
        if let Err(e) = self.dirs[d].hpack.decode_with_cb(block, |n, v| b.add(&n, &v)) {
            return Err(match e {
                loona_hpack::decoder::DecoderError::InvalidMaxDynamicSize => Stop::Untracked,
                e => Stop::Grammar(format!("parser error: HPACK: {e}")),
            });
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

    fn client_headers(&mut self, stream: u32, b: Block, end_stream: bool, ts: Timestamp) -> Result<(), Stop> {
        if let Some(s) = self.streams.get_mut(&stream) {
            // Trailers from the client.
            if end_stream {
                s.request_done = Some(ts);
            }
            return Ok(());
        }
        if stream <= self.highest {
            // Trailers of a stream already done with, or a stream we did not track.
            return Ok(());
        }
        if stream % 2 == 0 {
            return Err(Stop::Grammar(format!("parser error: the client opened even stream {stream}")));
        }
        self.highest = stream;
        if b.method.is_none() {
            return Err(Stop::Grammar(format!("parser error: request on stream {stream} without :method")));
        }
        if self.streams.len() >= MAX_STREAMS {
            self.counters.over_limit += 1;
            return Ok(());
        }
        self.streams.insert(stream, Stream::new(ts, b, end_stream));
        Ok(())
    }

    fn server_headers(&mut self, stream: u32, b: Block, end_stream: bool, ts: Timestamp) -> Result<(), Stop> {
        let Some(s) = self.streams.get_mut(&stream) else {
            // A pushed stream, or one not tracked.
            return Ok(());
        };
        if s.response.is_none() {
            let Some(status) = b.status.as_deref() else {
                return Err(Stop::Grammar(format!("parser error: response on stream {stream} without :status")));
            };
            let Ok(status) = status.trim().parse::<u16>() else {
                return Err(Stop::Grammar(format!("parser error: :status {status:?} on stream {stream}")));
            };
            if (100..200).contains(&status) {
                // Informational: the final response is still to come.
                return Ok(());
            }
            s.take_grpc_status(&b);
            s.response = Some((ts, response(status, b.headers)));
        } else {
            // Trailers.
            s.take_grpc_status(&b);
        }
        if end_stream {
            self.end_stream(1, stream, ts);
        }
        Ok(())
    }

    /// `n` bytes (seen or lost) of the DATA payload direction `d` is passing over; its stream ends with
    /// the last of them if the frame said so.
    fn pass_data(&mut self, d: usize, n: u64, ts: Timestamp) {
        let dir = &mut self.dirs[d];
        dir.skip -= n;
        let (stream, ends, done) = (dir.skip_stream, dir.skip_ends, dir.skip == 0);
        self.add_body(d, stream, n);
        if done && ends {
            self.end_stream(d, stream, ts);
        }
    }

    fn add_body(&mut self, d: usize, stream: u32, n: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            match (d, s.response.as_mut()) {
                (0, _) => s.request.body_size += n,
                (_, Some((_, r))) => r.body_size += n,
                _ => {}
            }
        }
    }

    /// Direction `d` ended `stream` (END_STREAM).
    fn end_stream(&mut self, d: usize, stream: u32, ts: Timestamp) {
        if d == 0 {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.request_done.get_or_insert(ts);
            }
            return;
        }
        if self.streams.get(&stream).is_some_and(|s| s.response.is_some()) {
            if let Some(pair) = self.streams.remove(&stream).and_then(Stream::into_pair) {
                self.outcomes.push(pair);
            }
        }
    }

    fn reset(&mut self, from_client: bool, stream: u32, code: u32, ts: Timestamp) {
        let Some(s) = self.streams.remove(&stream) else { return };
        let by = if from_client { Side::Client } else { Side::Server };
        if code == 0 {
            // NO_ERROR: the sender is done with the stream, not failing it. An answer given is the pair.
            match s.response {
                Some(_) => self.outcomes.extend(s.into_pair()),
                None if s.reported_missing.is_none() => self.outcomes.push(Http2Outcome::Missing {
                    req_ts: s.req_ts,
                    request: s.request,
                    grpc: s.grpc,
                    decided: ts,
                    why: format!("stream reset by the {} with NO_ERROR", by.as_str()),
                }),
                None => {}
            }
            return;
        }
        self.outcomes.push(Http2Outcome::Reset {
            req_ts: s.req_ts,
            request: s.request,
            response: s.response.map(|(_, r)| r),
            grpc: s.grpc,
            ts,
            stream,
            code,
            by,
        });
    }

    fn goaway(&mut self, from_client: bool, last: u32, code: u32, debug: String, ts: Timestamp) {
        let by = if from_client { Side::Client } else { Side::Server };
        if code != 0 {
            self.outcomes.push(Http2Outcome::GoAway { ts, last_stream: last, code, by, debug });
        }
        if !from_client {
            // Streams above `last` were not processed: clients retry them (RFC 9113 §6.8).
            let above: Vec<u32> = self.streams.range(last.saturating_add(1)..).map(|(id, _)| *id).collect();
            for id in above {
                self.streams.remove(&id);
                self.counters.refused_by_goaway += 1;
            }
            self.goaway_last = Some(self.goaway_last.map_or(last, |l| l.min(last)));
        }
    }

    fn stop(&mut self, ts: Timestamp, why: Stop) {
        self.stopped = true;
        match why {
            Stop::Grammar(msg) => {
                // The stream the failure is most likely about: the newest one still open.
                let open = self.streams.pop_last().map(|(_, s)| s);
                self.counters.lost_streams += self.streams.len() as u64;
                self.streams.clear();
                let (request, response, grpc) = match open {
                    Some(s) => (Some((s.req_ts, s.request)), s.response.map(|(_, r)| r), s.grpc),
                    None => (None, None, None),
                };
                self.outcomes.push(Http2Outcome::Dissection { ts, msg, request, response, grpc });
            }
            Stop::Untracked => {
                self.counters.broken += 1;
                self.counters.lost_streams += self.streams.len() as u64;
                self.streams.clear();
            }
        }
    }

    /// Bytes the capture never saw, in direction `from_client`.
    pub fn on_gap(&mut self, from_client: bool, len: u64, ts: Timestamp) {
        if self.stopped {
            return;
        }
        let d = usize::from(!from_client);
        let dir = &mut self.dirs[d];
        if dir.partial.is_empty() && dir.continuation.is_none() && dir.preface_left == 0 {
            if dir.skip >= len {
                // Inside a DATA payload: nothing HPACK needs was lost.
                self.counters.gaps_skipped += 1;
                self.pass_data(d, len, ts);
                return;
            }
            if dir.discard >= len {
                dir.discard -= len;
                self.counters.gaps_skipped += 1;
                return;
            }
        }
        self.stop(ts, Stop::Untracked);
    }

    /// The connection ended (`why`: "connection closed", "connection reset", "capture ended"): streams
    /// never answered are reported; a response cut short is `unexpected EOF`.
    pub fn on_close(&mut self, ts: Timestamp, why: &str) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        for (id, s) in std::mem::take(&mut self.streams) {
            match s.response {
                None if s.reported_missing.is_some() => {}
                None => self.outcomes.push(Http2Outcome::Missing {
                    req_ts: s.req_ts,
                    request: s.request,
                    grpc: s.grpc,
                    decided: ts,
                    why: why.to_owned(),
                }),
                Some((_, response)) => self.outcomes.push(Http2Outcome::Dissection {
                    ts,
                    msg: format!("unexpected EOF: {why} before stream {id} ended"),
                    request: Some((s.req_ts, s.request)),
                    response: Some(response),
                    grpc: s.grpc,
                }),
            }
        }
    }

    /// Requests sent whole more than `pair_timeout_ms` ago without a response are reported missing (a
    /// response that comes later is still reported, as a late pair).
    pub fn check(&mut self, now: Timestamp, pair_timeout_ms: u64) {
        if self.stopped {
            return;
        }
        for s in self.streams.values_mut() {
            let (Some(done), None, None) = (s.request_done, &s.response, s.reported_missing) else { continue };
            let deadline = done.plus_millis(pair_timeout_ms);
            if deadline > now {
                continue;
            }
            s.reported_missing = Some(pair_timeout_ms);
            self.outcomes.push(Http2Outcome::Missing {
                req_ts: s.req_ts,
                request: s.request.clone(),
                grpc: s.grpc.clone(),
                decided: deadline,
                why: format!("no response within {pair_timeout_ms} ms"),
            });
        }
    }
}
