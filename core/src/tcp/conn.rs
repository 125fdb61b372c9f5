//! One TCP connection seen from the wire, both sides at once. It finds exactly the connection errors of
//! SPEC §3.1 and nothing else:
//!
//! | state       | decided when                                                                           |
//! |-------------|----------------------------------------------------------------------------------------|
//! | `SynSent`   | the server RSTs the SYN (refused), an ICMP error answers it (unreachable), or nothing   |
//! |             | answers within `synTimeoutMs` (timeout). SYN retransmissions are the same attempt.      |
//! | `Reset`     | an RST after the handshake or on a connection picked up mid-stream, before both FINs.   |
//! | `CloseWait` | one FIN was acknowledged and the other side sent neither FIN nor new data for           |
//! |             | `closeTimeoutMs`.                                                                       |
//! | `LastAck`   | both FINs were seen and the later one stayed unacknowledged for `closeTimeoutMs`.       |
//!
//! Graceful and simultaneous closes, answered SYN retransmissions and keep-alives (which carry no new
//! sequence space) produce nothing. A closed connection lingers for `closeTimeoutMs` so that late
//! retransmissions and RSTs are absorbed rather than mistaken for a new connection.

use std::net::IpAddr;

use super::reassembly::{Chunk, Reassembler};
use super::{seq_ge, seq_lt};
use crate::config::EngineConfig;
use crate::entry::{Endpoint, Entry, EntryError, ErrorType, Protocol, Side, SynReason, TcpInfo, TcpState};
use crate::flow::Lingering;
use crate::http::{looks_like_request, looks_like_response, Dir, HttpDissector, HttpOutcome, Verdict};
use crate::stats::Stats;
use crate::time::Timestamp;
use crate::wire::TcpSegment;

/// Everything a connection needs from the engine while it handles a packet or a timer.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub stats: &'a mut Stats,
    pub out: &'a mut Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The client's SYN, no answer yet.
    SynSent,
    /// The server's SYN-ACK, no further packet yet.
    SynAcked,
    /// Established, or picked up mid-stream.
    Open,
    /// Over (closed, reset, or its error reported): the engine keeps only its [`Lingering`] from here.
    Closed,
}

/// Linux gives up on a SYN after 6 retransmissions, 127 s after the first.
const SYN_RETRY_WINDOW_MS: u64 = 130_000;

/// What the engine should do with a connection after its timers were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    Yes,
    /// Done lingering, or idle for too long.
    Remove,
}

struct Fin {
    /// The acknowledgement number that covers this FIN.
    ack_needed: u32,
    ts: Timestamp,
    acked: Option<Timestamp>,
}

#[derive(Default)]
struct Half {
    isn: Option<u32>,
    fin: Option<Fin>,
    /// Highest sequence number sent so far (exclusive): new data moves it, keep-alives do not.
    max_end: Option<u32>,
    last_data: Option<Timestamp>,
}

pub(crate) struct Conn {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub phase: Phase,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    syn_ts: Timestamp,
    syn_answered_by_icmp: bool,
    midstream: bool,
    close_wait_reported: bool,
    /// Once closed: until when late packets are expected.
    linger_until: Timestamp,
    /// [client, server]
    halves: [Half; 2],
    app: Option<Box<App>>,
}

impl Conn {
    /// A connection attempt: the client's first SYN.
    pub fn syn(client: (IpAddr, u16), server: (IpAddr, u16), ts: Timestamp, isn: u32) -> Conn {
        let mut c = Conn::new(client, server, ts, Phase::SynSent);
        c.syn_ts = ts;
        c.halves[0].isn = Some(isn);
        c
    }

    /// Picked up at the server's SYN-ACK (the SYN was not captured).
    pub fn syn_ack(client: (IpAddr, u16), server: (IpAddr, u16), ts: Timestamp, seg: &TcpSegment<'_>) -> Conn {
        let mut c = Conn::new(client, server, ts, Phase::SynAcked);
        c.halves[0].isn = Some(seg.ack.wrapping_sub(1));
        c.halves[1].isn = Some(seg.seq);
        c
    }

    /// Picked up mid-stream: no handshake seen.
    pub fn midstream(client: (IpAddr, u16), server: (IpAddr, u16), ts: Timestamp) -> Conn {
        let mut c = Conn::new(client, server, ts, Phase::Open);
        c.midstream = true;
        c
    }

    fn new(client: (IpAddr, u16), server: (IpAddr, u16), ts: Timestamp, phase: Phase) -> Conn {
        Conn {
            client,
            server,
            phase,
            first_ts: ts,
            last_ts: ts,
            syn_ts: ts,
            syn_answered_by_icmp: false,
            midstream: false,
            close_wait_reported: false,
            linger_until: ts,
            halves: [Half::default(), Half::default()],
            app: None,
        }
    }

    /// Whether a SYN from the client starts a new connection on this 4-tuple rather than repeating the
    /// current attempt: the old one is over, or the SYN carries another initial sequence number.
    pub fn is_new_attempt(&self, seg: &TcpSegment<'_>) -> bool {
        // A SYN with the same ISN is a retransmission, even of an attempt already reported as timed out.
        self.halves[0].isn != Some(seg.seq)
    }

    /// An ICMP error quoted this connection's SYN: if it is still unanswered, it was refused by the network.
    pub fn icmp_error_for_syn(&mut self) {
        if self.phase == Phase::SynSent {
            self.syn_answered_by_icmp = true;
        }
    }

    pub fn on_segment(&mut self, from_client: bool, seg: &TcpSegment<'_>, ts: Timestamp, ctx: &mut Ctx<'_>) {
        if ts > self.last_ts {
            self.last_ts = ts;
        }
        if self.phase == Phase::Closed {
            return;
        }
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let flags = seg.flags;
        if flags.syn() {
            if flags.ack() && !from_client && self.phase == Phase::SynSent {
                self.phase = Phase::SynAcked;
                self.halves[1].isn = Some(seg.seq);
            }
            // A retransmitted SYN or SYN-ACK changes nothing.
            return;
        }
        if flags.ack() {
            if let Some(fin) = self.halves[peer].fin.as_mut() {
                if fin.acked.is_none() && seq_ge(seg.ack, fin.ack_needed) {
                    fin.acked = Some(ts);
                }
            }
        }
        if flags.rst() {
            self.on_rst(from_client, ts, ctx);
            return;
        }
        if matches!(self.phase, Phase::SynSent | Phase::SynAcked) {
            // The handshake went on (or we missed part of it).
            self.phase = Phase::Open;
        }
        let len = seg.seg_len;
        if len > 0 {
            let end = seg.seq.wrapping_add(len);
            let half = &mut self.halves[me];
            if half.max_end.is_none_or(|m| seq_lt(m, end)) {
                half.max_end = Some(end);
                half.last_data = Some(ts);
            }
        }
        if flags.fin() && self.halves[me].fin.is_none() {
            let ack_needed = seg.seq.wrapping_add(len).wrapping_add(1);
            self.halves[me].fin = Some(Fin { ack_needed, ts, acked: None });
        }
        if len > 0 || flags.fin() {
            self.feed_app(me, seg, ts, ctx);
        }
        let both_acked = self.halves.iter().all(|h| h.fin.as_ref().is_some_and(|f| f.acked.is_some()));
        if both_acked {
            self.close(ts, "connection closed", ctx);
        }
    }

    fn on_rst(&mut self, from_client: bool, ts: Timestamp, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::SynSent if !from_client => {
                let e =
                    self.tcp_entry(self.syn_ts, TcpState::SynSent, Some(SynReason::Refused), Some(Side::Server), ts);
                ctx.out.push(e);
                self.close(ts, "connection reset", ctx);
            }
            // The client giving up on its own attempt is not a refusal; the timer decides.
            Phase::SynSent | Phase::Closed => {}
            _ => {
                let both_fins = self.halves.iter().all(|h| h.fin.is_some());
                if !both_fins {
                    let by = if from_client { Side::Client } else { Side::Server };
                    let mut e = self.tcp_entry(ts, TcpState::Reset, None, Some(by), ts);
                    // How long the connection lived before it was reset.
                    e.elapsed_time = ts.millis_since(self.first_ts);
                    ctx.out.push(e);
                    self.close(ts, "connection reset", ctx);
                } else {
                    // After both FINs an RST is how a peer that already left answers a retransmitted FIN;
                    // whether the last FIN was acknowledged in time is for the LastAck timer to say.
                    self.finish_app(ts, "connection reset", ctx);
                }
            }
        }
    }

    /// Checks timers at `now`. `end_of_input`: the capture is over; every pending state is resolved as if
    /// its timer had expired (SPEC §3.6).
    pub fn check(&mut self, now: Timestamp, end_of_input: bool, ctx: &mut Ctx<'_>) -> Keep {
        let cfg = ctx.cfg;
        let due = |since: Timestamp, ms: u64| end_of_input || now >= since.plus_millis(ms);
        // The time a timeout was decided: its deadline, or the end of the capture if that came first.
        let decided = |since: Timestamp, ms: u64| since.plus_millis(ms).min(now).max(since);
        match self.phase {
            // Nothing left to decide: the engine keeps only its `lingering()` and forgets it at `until`.
            Phase::Closed => return Keep::Yes,
            Phase::SynSent => {
                if due(self.syn_ts, cfg.syn_timeout_ms) {
                    let reason = if self.syn_answered_by_icmp { SynReason::Unreachable } else { SynReason::Timeout };
                    let at = decided(self.syn_ts, cfg.syn_timeout_ms);
                    let e = self.tcp_entry(self.syn_ts, TcpState::SynSent, Some(reason), None, at);
                    ctx.out.push(e);
                    self.close(at, "connection timed out", ctx);
                    // The client may go on retransmitting the same SYN for two minutes (Linux
                    // tcp_syn_retries=6): stay to absorb them instead of reporting each as a new attempt.
                    self.linger_until = at.plus_millis(cfg.close_timeout_ms.max(SYN_RETRY_WINDOW_MS));
                }
                return Keep::Yes;
            }
            Phase::SynAcked | Phase::Open => {}
        }
        if !self.close_wait_reported {
            for (closer, stuck) in [(0, 1), (1, 0)] {
                let (Some(fin), None) = (&self.halves[closer].fin, &self.halves[stuck].fin) else {
                    continue;
                };
                let Some(acked) = fin.acked else { continue };
                let quiet_since = self.halves[stuck].last_data.map_or(acked, |d| d.max(acked));
                if due(quiet_since, cfg.close_timeout_ms) {
                    let by = if stuck == 0 { Side::Client } else { Side::Server };
                    let at = decided(quiet_since, cfg.close_timeout_ms);
                    let e = self.tcp_entry(quiet_since, TcpState::CloseWait, None, Some(by), at);
                    ctx.out.push(e);
                    self.close_wait_reported = true;
                }
            }
        }
        if let (Some(a), Some(b)) = (&self.halves[0].fin, &self.halves[1].fin) {
            let (last_side, last) = if b.ts >= a.ts { (Side::Server, b) } else { (Side::Client, a) };
            if last.acked.is_none() && due(last.ts, cfg.close_timeout_ms) {
                let (since, at) = (last.ts, decided(last.ts, cfg.close_timeout_ms));
                let e = self.tcp_entry(since, TcpState::LastAck, None, Some(last_side), at);
                ctx.out.push(e);
                self.close(at, "connection closed", ctx);
                return Keep::Yes;
            }
        }
        self.check_app(now, end_of_input, ctx);
        if end_of_input {
            self.finish_app(now, "capture ended", ctx);
            return Keep::Remove;
        }
        if now >= self.last_ts.plus_millis(cfg.idle_timeout_ms) {
            ctx.stats.flows_expired += 1;
            self.finish_app(now, "connection idle", ctx);
            return Keep::Remove;
        }
        Keep::Yes
    }

    fn close(&mut self, ts: Timestamp, why: &'static str, ctx: &mut Ctx<'_>) {
        self.finish_app(ts, why, ctx);
        self.phase = Phase::Closed;
        // Late retransmissions and RSTs arrive within about one close timeout.
        self.linger_until = ts.plus_millis(ctx.cfg.close_timeout_ms);
    }

    /// What the flow table keeps of the connection once it is over; `None` while it is not.
    pub fn lingering(&self) -> Option<Lingering> {
        (self.phase == Phase::Closed).then_some(Lingering {
            client_isn: self.halves[0].isn,
            last_ts: self.last_ts,
            until: self.linger_until,
        })
    }

    fn tcp_entry(
        &self,
        ts: Timestamp,
        state: TcpState,
        reason: Option<SynReason>,
        by: Option<Side>,
        decided: Timestamp,
    ) -> Entry {
        let mut e = self.entry(Protocol::Tcp, ts, decided);
        e.error = Some(EntryError { kind: ErrorType::Connection, msg: state.as_str().to_owned() });
        e.tcp = Some(TcpInfo { state, reason, by });
        e
    }

    fn entry(&self, protocol: Protocol, ts: Timestamp, decided: Timestamp) -> Entry {
        let src = Endpoint::new(self.client.0, Some(self.client.1));
        let dst = Endpoint::new(self.server.0, Some(self.server.1));
        Entry { elapsed_time: decided.millis_since(ts), ..Entry::new(protocol, ts, src, dst) }
    }

    // ---- payload: reassembly, protocol identification, dissection -------------------------------------

    fn feed_app(&mut self, me: usize, seg: &TcpSegment<'_>, ts: Timestamp, ctx: &mut Ctx<'_>) {
        let budget = ctx.cfg.max_out_of_order_bytes;
        let app = self.app.get_or_insert_with(|| {
            let mut app = Box::new(App::new(budget));
            for (i, half) in self.halves.iter().enumerate() {
                if let Some(isn) = half.isn {
                    app.streams[i].start_at(isn.wrapping_add(1));
                }
            }
            app
        });
        app.saw_payload |= seg.seg_len > 0;
        let mut outcomes = Vec::new();
        let App { streams, proto, probes, .. } = &mut **app;
        let midstream = self.midstream;
        let stats = &mut *ctx.stats;
        streams[me].segment(ts, seg.seq, seg.payload, seg.seg_len, seg.flags.fin(), &mut |chunk| {
            on_chunk(proto, &mut probes[me], me, midstream, chunk, stats, &mut outcomes)
        });
        self.emit_http(outcomes, ctx);
    }

    /// Flushes both streams (gaps counted) and closes the dissector: nothing is left pending.
    fn finish_app(&mut self, ts: Timestamp, why: &'static str, ctx: &mut Ctx<'_>) {
        let Some(mut app) = self.app.take() else {
            return;
        };
        let mut outcomes = Vec::new();
        let App { streams, proto, probes, .. } = &mut *app;
        for (i, stream) in streams.iter_mut().enumerate() {
            let stats = &mut *ctx.stats;
            stream.flush(&mut |chunk| on_chunk(proto, &mut probes[i], i, self.midstream, chunk, stats, &mut outcomes));
        }
        if let Proto::Http(d) = proto {
            d.on_close(ts, why, &mut outcomes);
        }
        self.emit_http(outcomes, ctx);
    }

    fn check_app(&mut self, now: Timestamp, end_of_input: bool, ctx: &mut Ctx<'_>) {
        let cfg = ctx.cfg;
        let Some(app) = self.app.as_mut() else { return };
        let mut outcomes = Vec::new();
        match &mut app.proto {
            Proto::Http(d) => d.check(now, cfg.pair_timeout_ms, &mut outcomes),
            Proto::Unknown | Proto::Other if app.saw_payload && !app.timed_out => {
                let deadline = self.first_ts.plus_millis(cfg.tcp_stream_channel_timeout_ms);
                if end_of_input || now >= deadline {
                    app.timed_out = true;
                    app.proto = Proto::Other;
                    app.probes = Default::default();
                    ctx.stats.streams_timed_out += 1;
                    if cfg.show_stream_timeouts {
                        let at = deadline.min(now);
                        let mut e = self.entry(Protocol::Tcp, self.first_ts, at);
                        e.error = Some(EntryError {
                            kind: ErrorType::Timeout,
                            msg: format!(
                                "stream timeout: no protocol identified within {} ms",
                                cfg.tcp_stream_channel_timeout_ms
                            ),
                        });
                        ctx.out.push(e);
                    }
                }
            }
            _ => {}
        }
        self.emit_http(outcomes, ctx);
    }

    fn emit_http(&self, outcomes: Vec<HttpOutcome>, ctx: &mut Ctx<'_>) {
        for o in outcomes {
            let e = match o {
                HttpOutcome::Pair { req_ts, request, resp_ts, response } => {
                    let mut e = self.entry(Protocol::Http, req_ts, resp_ts);
                    e.request = Some(request);
                    e.response = Some(response);
                    e
                }
                HttpOutcome::Dissection { ts, msg, request, response } => {
                    let start = request.as_ref().map_or(ts, |(t, _)| *t);
                    let mut e = self.entry(Protocol::Http, start, ts);
                    e.error = Some(EntryError { kind: ErrorType::Dissection, msg });
                    e.request = request.map(|(_, r)| r);
                    e.response = response;
                    e
                }
                HttpOutcome::MissingResponse { req_ts, request, decided, why } => {
                    let mut e = self.entry(Protocol::Http, req_ts, decided);
                    e.error =
                        Some(EntryError { kind: ErrorType::PairNotFound, msg: format!("missing response: {why}") });
                    e.request = Some(request);
                    e
                }
                HttpOutcome::MissingRequest { resp_ts, response, decided, why } => {
                    let mut e = self.entry(Protocol::Http, resp_ts, decided);
                    e.error =
                        Some(EntryError { kind: ErrorType::PairNotFound, msg: format!("missing request: {why}") });
                    e.response = Some(response);
                    e
                }
            };
            ctx.out.push(e);
        }
    }
}

/// Payload state, allocated only for connections that carry payload.
struct App {
    /// [client→server, server→client]
    streams: [Reassembler; 2],
    proto: Proto,
    /// The first bytes of each direction while they are too few to tell what protocol this is.
    probes: [Vec<u8>; 2],
    /// Whether any payload was seen: only streams with payload can time out waiting to be identified.
    saw_payload: bool,
    timed_out: bool,
}

impl App {
    fn new(max_held: usize) -> App {
        App {
            streams: [Reassembler::new(max_held), Reassembler::new(max_held)],
            proto: Proto::Unknown,
            probes: Default::default(),
            saw_payload: false,
            timed_out: false,
        }
    }
}

enum Proto {
    Unknown,
    Http(Box<HttpDissector>),
    /// Not a protocol we dissect (or not identified in time): reassembled only to count gaps.
    Other,
}

/// At most this many bytes are kept to identify a protocol; every verdict needs fewer.
const PROBE_LIMIT: usize = 16;

fn on_chunk(
    proto: &mut Proto,
    probe: &mut Vec<u8>,
    dir_index: usize,
    midstream: bool,
    chunk: Chunk<'_>,
    stats: &mut Stats,
    outcomes: &mut Vec<HttpOutcome>,
) {
    let dir = if dir_index == 0 { Dir::ClientToServer } else { Dir::ServerToClient };
    match chunk {
        Chunk::Data(ts, bytes) => {
            if let Proto::Unknown = proto {
                let probed: &[u8] = if probe.is_empty() {
                    bytes
                } else {
                    probe.extend_from_slice(&bytes[..bytes.len().min(PROBE_LIMIT)]);
                    probe
                };
                let verdict = match dir {
                    Dir::ClientToServer => looks_like_request(probed),
                    Dir::ServerToClient => looks_like_response(probed),
                };
                match verdict {
                    Verdict::Yes => {
                        let mut d = Box::<HttpDissector>::default();
                        if !probe.is_empty() {
                            // The probe holds earlier bytes plus the start of this chunk: feed the earlier ones.
                            let earlier = probe.len() - bytes.len().min(PROBE_LIMIT);
                            d.on_data(dir, ts, &probe[..earlier], outcomes);
                            probe.clear();
                        }
                        *proto = Proto::Http(d);
                    }
                    Verdict::NeedMore => {
                        if probe.is_empty() {
                            probe.extend_from_slice(bytes);
                        }
                        return;
                    }
                    // Mid-stream, this chunk may be the middle of a message: try again at the next one.
                    Verdict::No if midstream => {
                        probe.clear();
                        return;
                    }
                    Verdict::No => {
                        probe.clear();
                        *proto = Proto::Other;
                        return;
                    }
                }
            }
            if let Proto::Http(d) = proto {
                d.on_data(dir, ts, bytes, outcomes);
            }
        }
        Chunk::Gap(len) => {
            stats.missed_bytes += len;
            match proto {
                Proto::Http(d) => {
                    if d.on_gap(dir, len) {
                        stats.http_desyncs += 1;
                    }
                }
                Proto::Unknown => probe.clear(),
                Proto::Other => {}
            }
        }
        Chunk::End(ts) => {
            if let Proto::Http(d) = proto {
                d.on_end(dir, ts, outcomes);
            }
        }
    }
}
