//! A connection's payload: both directions reassembled, the application protocol identified from the first
//! bytes (never from the port), and handed to its dissector. Gaps the capture left are counted and handed
//! on, so that a dissector can resynchronise instead of stopping.

use std::sync::Arc;

use crate::dissect::dns::tcp::{looks_like_query, DnsStream};
use crate::dissect::http::{
    looks_like_request, looks_like_response, proxy_header_len, Dir, HttpDissector, HttpOutcome, Upgrade, Verdict,
};
use crate::dissect::http2::{looks_like_preface, looks_like_server_preface, Http2Dissector, Http2Outcome};
use crate::dissect::tls::{looks_like_tls, TlsDissector};
use crate::stats::Stats;
use crate::tcp::reassembly::{Chunk, Fate, HeldBudget, Reassembler};
use crate::time::Timestamp;

/// Payload state, allocated only for connections that carry payload.
pub(crate) struct App {
    /// [client→server, server→client]
    pub streams: [Reassembler; 2],
    pub proto: Proto,
    /// The first bytes of each direction while they are too few to tell what protocol this is.
    probes: [Vec<u8>; 2],
    /// Whether any payload was seen: only streams with payload can time out waiting to be identified.
    pub saw_payload: bool,
    /// The stream was counted as timed out (its protocol never identified in time).
    pub timed_out: bool,
    /// Picked up mid-stream: roles are a guess until a request is seen.
    midstream: bool,
    /// Which stream is the client's (0: `streams[0]` is client→server). Mid-stream, a request from the end
    /// taken for the server proves the guess wrong and flips it, once.
    pub client_side: usize,
    roles_settled: bool,
    /// Which dissectors may claim the stream.
    enabled: Enabled,
}

/// The dissectors over TCP that are switched on (TapConfig `dissectors`).
#[derive(Clone, Copy)]
pub(crate) struct Enabled {
    pub http: bool,
    pub tls: bool,
    pub dns: bool,
    pub http2: bool,
}

impl Enabled {
    pub fn any(self) -> bool {
        self.http || self.tls || self.dns || self.http2
    }
}

/// What a connection's dissectors found, for the connection to turn into entries.
#[derive(Default)]
pub(crate) struct AppOutput {
    pub http: Vec<HttpOutcome>,
    pub tls: Vec<crate::dissect::tls::TlsFailure>,
    pub http2: Vec<Http2Outcome>,
    /// DNS messages: (from the client, when, bytes), for the engine's exchange tracker.
    pub dns: Vec<(bool, Timestamp, Vec<u8>)>,
}

pub(crate) enum Proto {
    Unknown,
    Http(Box<HttpDissector>),
    /// A TLS handshake: read until it completes or fails.
    Tls(Box<TlsDissector>),
    /// DNS over TCP: messages framed, for the engine's exchange tracker.
    Dns(Box<DnsStream>),
    /// HTTP/2 in cleartext (and gRPC).
    Http2(Box<Http2Dissector>),
    /// Not a protocol we dissect: reassembled only to count gaps.
    Other,
}

/// At most this many bytes are kept to identify a protocol; every verdict needs fewer (a PROXY v1 line is
/// at most 107 bytes, and is skipped before the verdict).
const PROBE_LIMIT: usize = 128;

impl App {
    pub fn new(
        max_held: usize,
        budget: &Arc<HeldBudget>,
        midstream: bool,
        client_side: usize,
        enabled: Enabled,
    ) -> App {
        App {
            streams: [Reassembler::new(max_held, budget.clone()), Reassembler::new(max_held, budget.clone())],
            proto: Proto::Unknown,
            probes: Default::default(),
            saw_payload: false,
            timed_out: false,
            midstream,
            client_side,
            roles_settled: !midstream,
            enabled,
        }
    }

    /// Direction `dir`'s stream, and what handling its chunks may touch.
    fn split(&mut self, dir: usize) -> (&mut Reassembler, ChunkState<'_>) {
        let App { streams, proto, probes, midstream, client_side, roles_settled, enabled, .. } = self;
        let state = ChunkState {
            proto,
            probe: &mut probes[dir],
            midstream: *midstream,
            client_side,
            roles_settled,
            enabled: *enabled,
        };
        (&mut streams[dir], state)
    }

    /// The protocol was identified and nothing the client asked is unanswered: no HTTP request or HTTP/2
    /// stream waiting, no TLS handshake under way (what goes on inside TLS cannot be known). False for a
    /// stream whose protocol is unknown.
    pub fn answered_all(&self) -> bool {
        match &self.proto {
            Proto::Http(d) => !d.awaits_response(),
            Proto::Http2(d) => !d.awaits_response(),
            Proto::Tls(d) => !d.in_handshake(),
            Proto::Dns(_) => true,
            Proto::Unknown | Proto::Other => false,
        }
    }

    /// Gives up identifying the protocol.
    pub fn give_up(&mut self) {
        self.timed_out = true;
        self.proto = Proto::Other;
        self.probes = Default::default();
    }

    /// One segment's payload in direction `me` (0: client→server).
    #[allow(clippy::too_many_arguments)]
    pub fn segment(
        &mut self,
        me: usize,
        ts: Timestamp,
        seq: u32,
        payload: &[u8],
        seg_len: u32,
        fin: bool,
        window: Option<u64>,
        stats: &mut Stats,
        out: &mut Vec<HttpOutcome>,
    ) {
        self.saw_payload |= seg_len > 0;
        let (stream, mut state) = self.split(me);
        let fate =
            stream.segment(ts, seq, payload, seg_len, fin, window, &mut |chunk| state.on_chunk(me, chunk, stats, out));
        match fate {
            Fate::Taken => {}
            Fate::OutOfWindow => stats.segments_out_of_window += 1,
            Fate::OverBudget => stats.reassembly_over_budget += 1,
        }
    }

    /// Whether direction `dir` has not yet handed on everything before `ack` (a hole, or nothing yet).
    pub fn waits_below(&self, dir: usize, ack: u32) -> bool {
        self.streams[dir].next_seq().is_some_and(|next| crate::tcp::seq_lt(next, ack))
    }

    /// The receiver of direction `dir` acknowledged up to `ack`: holes before it are given up.
    pub fn acked(&mut self, dir: usize, ack: u32, ts: Timestamp, stats: &mut Stats, out: &mut Vec<HttpOutcome>) {
        let (stream, mut state) = self.split(dir);
        stream.acked(ack, ts, &mut |chunk| state.on_chunk(dir, chunk, stats, out));
    }

    /// Flushes both streams (gaps counted) and closes the dissector: nothing is left pending.
    pub fn finish(&mut self, ts: Timestamp, why: &'static str, stats: &mut Stats, out: &mut Vec<HttpOutcome>) {
        for dir in 0..2 {
            let (stream, mut state) = self.split(dir);
            stream.flush(&mut |chunk| state.on_chunk(dir, chunk, stats, out));
        }
        match &mut self.proto {
            Proto::Http(d) => {
                d.on_close(ts, why, out);
                d.drain_counters(stats);
            }
            Proto::Tls(d) => {
                let by = (why == "connection reset").then_some(crate::entry::Side::Server);
                d.on_close(ts, why, by, why == "capture ended");
            }
            Proto::Http2(d) => d.on_close(ts, why),
            _ => {}
        }
    }

    /// What the dissectors produced since the last call, with the HTTP outcomes `http` gathered by the
    /// call that fed them.
    pub fn output(&mut self, http: Vec<HttpOutcome>, stats: &mut Stats) -> AppOutput {
        let mut o = AppOutput { http, ..AppOutput::default() };
        match &mut self.proto {
            Proto::Tls(d) => {
                stats.tls_broken += std::mem::take(&mut d.broken);
                o.tls = std::mem::take(&mut d.failures);
            }
            Proto::Dns(d) => {
                stats.dns_tcp_streams_lost += std::mem::take(&mut d.lost);
                o.dns = std::mem::take(&mut d.messages);
            }
            Proto::Http2(d) => {
                let c = std::mem::take(&mut d.counters);
                stats.http2_broken += c.broken;
                stats.http2_lost_streams += c.lost_streams;
                stats.http2_gaps_skipped += c.gaps_skipped;
                stats.http2_over_limit += c.over_limit;
                stats.http2_refused_by_goaway += c.refused_by_goaway;
                o.http2 = std::mem::take(&mut d.outcomes);
            }
            _ => {}
        }
        o
    }
}

/// What handling one chunk may touch.
struct ChunkState<'a> {
    proto: &'a mut Proto,
    probe: &'a mut Vec<u8>,
    midstream: bool,
    client_side: &'a mut usize,
    /// Roles are known (a handshake was seen, or a request told them).
    roles_settled: &'a mut bool,
    enabled: Enabled,
}

impl ChunkState<'_> {
    fn on_chunk(&mut self, dir_index: usize, chunk: Chunk<'_>, stats: &mut Stats, out: &mut Vec<HttpOutcome>) {
        let dir = if dir_index == *self.client_side { Dir::ClientToServer } else { Dir::ServerToClient };
        let at = match chunk {
            Chunk::Data(ts, _) | Chunk::Gap(_, ts) | Chunk::End(ts) => ts,
        };
        match chunk {
            Chunk::Data(ts, bytes) => {
                if let Proto::Unknown = self.proto {
                    // Once identified, `identify` has fed the dissector everything, this chunk included.
                    self.identify(dir, ts, bytes, out);
                    return;
                }
                match self.proto {
                    Proto::Http(d) => d.on_data(dir, ts, bytes, out),
                    Proto::Tls(d) => d.on_data(dir == Dir::ClientToServer, ts, bytes),
                    Proto::Dns(d) => d.on_data(dir == Dir::ClientToServer, ts, bytes),
                    Proto::Http2(d) => d.on_data(dir == Dir::ClientToServer, ts, bytes),
                    _ => {}
                }
            }
            Chunk::Gap(len, ts) => {
                stats.missed_bytes += len;
                match self.proto {
                    Proto::Http(d) => d.on_gap(dir, len, ts, out),
                    Proto::Tls(d) => d.on_gap(),
                    Proto::Dns(d) => d.on_gap(),
                    Proto::Http2(d) => d.on_gap(dir == Dir::ClientToServer, len, ts),
                    Proto::Unknown => self.probe.clear(),
                    Proto::Other => {}
                }
            }
            Chunk::End(ts) => match self.proto {
                Proto::Http(d) => d.on_end(dir, ts, out),
                // The server closed its side without answering the ClientHello.
                Proto::Tls(d) if dir == Dir::ServerToClient => {
                    d.on_close(ts, "a close (FIN) from the server", Some(crate::entry::Side::Server), false)
                }
                _ => {}
            },
        }
        if let Proto::Http(d) = self.proto {
            d.drain_counters(stats);
            // Upgraded to HTTP/2 (`h2c`): the rest of the connection is HTTP/2's, from the server's bytes
            // that followed the 101 on.
            if let Some(up) = d.take_h2c() {
                if self.enabled.http2 {
                    let mut h2 = Box::new(Http2Dissector::upgraded(up.req_ts, up.request));
                    h2.on_data(false, at, &up.rest);
                    *self.proto = Proto::Http2(h2);
                } else {
                    // HTTP/2 is not dissected: the upgrade is an exchange like any other, and the rest is not read.
                    let Upgrade { req_ts, request, resp_ts, response, .. } = up;
                    out.push(HttpOutcome::Pair { req_ts, request, resp_ts, response, late: None });
                }
            }
        }
    }

    /// Tries to identify the protocol from the bytes seen so far in `dir` plus `bytes`. Returns true when
    /// it was identified (everything buffered, `bytes` included, has then been fed to the dissector).
    fn identify(&mut self, dir: Dir, ts: Timestamp, bytes: &[u8], out: &mut Vec<HttpOutcome>) -> bool {
        let buffered = !self.probe.is_empty();
        let earlier = self.probe.len();
        if buffered {
            let room = PROBE_LIMIT.saturating_sub(self.probe.len());
            self.probe.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        let probed: &[u8] = if buffered { self.probe } else { bytes };
        // A PROXY protocol header (v1 or v2) in front of the client's first bytes: look behind it.
        let mut skip = 0;
        if dir == Dir::ClientToServer {
            match proxy_header_len(probed) {
                Verdict::Yes => skip = proxy_len_or_zero(probed),
                Verdict::NeedMore => return self.need_more(bytes, buffered),
                Verdict::No => {}
            }
        }
        if self.enabled.tls && skip == 0 {
            // A TLS ClientHello from the client (or, mid-stream, from the side taken for the server).
            match looks_like_tls(probed) {
                Verdict::Yes if dir == Dir::ClientToServer || !*self.roles_settled => {
                    if dir == Dir::ServerToClient {
                        *self.client_side = 1 - *self.client_side;
                    }
                    *self.roles_settled = true;
                    let mut d = Box::new(TlsDissector::default());
                    self.hand_over(buffered, earlier, bytes, |b| d.on_data(true, ts, b));
                    *self.proto = Proto::Tls(d);
                    return true;
                }
                Verdict::NeedMore => return self.need_more(bytes, buffered),
                _ => {}
            }
        }
        if self.enabled.http2 && skip == 0 && !self.midstream {
            // The client's preface; or the server's SETTINGS, which may come first (the preface confirms).
            let verdict = match dir {
                Dir::ClientToServer => looks_like_preface(probed),
                Dir::ServerToClient => looks_like_server_preface(probed),
            };
            match verdict {
                Verdict::Yes => {
                    *self.roles_settled = true;
                    let mut d = Box::new(Http2Dissector::new(true));
                    let from_client = dir == Dir::ClientToServer;
                    self.hand_over(buffered, earlier, bytes, |b| d.on_data(from_client, ts, b));
                    *self.proto = Proto::Http2(d);
                    return true;
                }
                Verdict::NeedMore => return self.need_more(bytes, buffered),
                Verdict::No => {}
            }
        }
        if self.enabled.dns && skip == 0 && dir == Dir::ClientToServer {
            match looks_like_query(probed) {
                Verdict::Yes => {
                    *self.roles_settled = true;
                    let mut d = Box::new(DnsStream::default());
                    self.hand_over(buffered, earlier, bytes, |b| d.on_data(true, ts, b));
                    *self.proto = Proto::Dns(d);
                    return true;
                }
                // A query is under 256 bytes nearly always: a first byte of 0 is worth waiting on.
                Verdict::NeedMore if probed.first() == Some(&0) => return self.need_more(bytes, buffered),
                _ => {}
            }
        }
        if !self.enabled.http {
            return self.not_identified();
        }
        let rest = &probed[skip..];
        // Empty lines before a message are allowed (RFC 9112 §2.2).
        let lead = rest.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        let rest = &rest[lead..];
        let (own, other) = match dir {
            Dir::ClientToServer => (looks_like_request(rest), looks_like_response(rest)),
            Dir::ServerToClient => (looks_like_response(rest), looks_like_request(rest)),
        };
        let (verdict, dir) = match (own, other) {
            (Verdict::Yes, _) => {
                *self.roles_settled = true;
                (Verdict::Yes, dir)
            }
            // Mid-stream, roles are a guess: a request from the side taken for the server proves it wrong.
            (_, Verdict::Yes) if !*self.roles_settled => {
                *self.client_side = 1 - *self.client_side;
                *self.roles_settled = true;
                (Verdict::Yes, flip(dir))
            }
            (Verdict::NeedMore, _) | (_, Verdict::NeedMore) if rest.len() < PROBE_LIMIT - skip - lead => {
                (Verdict::NeedMore, dir)
            }
            _ => (Verdict::No, dir),
        };
        match verdict {
            Verdict::Yes => {
                let mut d = Box::new(HttpDissector::new(self.midstream));
                if buffered {
                    // The probe holds `earlier` bytes from before plus the start of this chunk: feed the
                    // earlier ones from the probe (after what is skipped), then the whole chunk.
                    let from = skip + lead;
                    d.on_data(dir, ts, &self.probe[from.min(earlier)..earlier], out);
                    d.on_data(dir, ts, &bytes[from.saturating_sub(earlier).min(bytes.len())..], out);
                    self.probe.clear();
                } else {
                    d.on_data(dir, ts, &bytes[(skip + lead).min(bytes.len())..], out);
                }
                *self.proto = Proto::Http(d);
                true
            }
            Verdict::NeedMore => self.need_more(bytes, buffered),
            // Mid-stream, this chunk may be the middle of a message: try again at the next one.
            Verdict::No if !*self.roles_settled => {
                self.probe.clear();
                false
            }
            Verdict::No => {
                self.probe.clear();
                *self.proto = Proto::Other;
                false
            }
        }
    }

    /// Feeds the dissector that just claimed the stream what was probed before this chunk (`earlier`
    /// bytes, if `buffered`), then the chunk, and empties the probe.
    fn hand_over(&mut self, buffered: bool, earlier: usize, bytes: &[u8], mut feed: impl FnMut(&[u8])) {
        if buffered {
            feed(&self.probe[..earlier]);
        }
        feed(bytes);
        self.probe.clear();
    }

    /// No enabled dissector claims these bytes: like `No`, or wait for more while roles are a guess.
    fn not_identified(&mut self) -> bool {
        self.probe.clear();
        if *self.roles_settled {
            *self.proto = Proto::Other;
        }
        false
    }

    fn need_more(&mut self, bytes: &[u8], buffered: bool) -> bool {
        if !buffered {
            self.probe.extend_from_slice(&bytes[..bytes.len().min(PROBE_LIMIT)]);
        }
        if self.probe.len() >= PROBE_LIMIT {
            // Still undecided after the most any verdict needs: not a protocol we know.
            self.probe.clear();
            if *self.roles_settled {
                *self.proto = Proto::Other;
            }
        }
        false
    }
}

fn flip(dir: Dir) -> Dir {
    match dir {
        Dir::ClientToServer => Dir::ServerToClient,
        Dir::ServerToClient => Dir::ClientToServer,
    }
}

fn proxy_len_or_zero(b: &[u8]) -> usize {
    crate::dissect::http::proxy_header_size(b).unwrap_or(0)
}
