//! One TCP connection seen from the wire, both sides at once. It finds exactly the connection errors of
//! SPEC §3.1 and nothing else:
//!
//! | state       | decided when                                                                           |
//! |-------------|----------------------------------------------------------------------------------------|
//! | `SynSent`   | the server refuses the SYN (an acceptable RST, also after its SYN-ACK), an ICMP error   |
//! |             | answers it (unreachable), or nothing answers within `synTimeoutMs` (timeout). SYN      |
//! |             | retransmissions are the same attempt, and a late answer resumes it.                    |
//! | `Reset`     | an acceptable RST (in the receiver's window) after the handshake or on a connection    |
//! |             | picked up mid-stream, before both FINs.                                                |
//! | `CloseWait` | one FIN was acknowledged and the other side sent neither FIN nor new data for           |
//! |             | `closeTimeoutMs` (nor anything its peer acknowledged that the capture missed).         |
//! | `LastAck`   | both FINs were seen, the later one was retransmitted and stayed unacknowledged for     |
//! |             | `closeTimeoutMs`.                                                                      |
//!
//! Capture loss is not a network error (SPEC §3.1, "Real traffic, decided"): an ACK past bytes the capture
//! never saw proves they were sent, so holes are given up at once and a missed FIN is inferred; an RST
//! outside the receiver's window, a challenge ACK, and an RST before the handshake completed from the
//! client are not errors. A connection that is over lingers (at least a minute) so that late
//! retransmissions and RSTs are absorbed rather than mistaken for a new connection.

use std::net::IpAddr;

use super::{seq_ge, seq_lt};
use crate::config::EngineConfig;
use crate::dissect::payload::{self, Payload};
use crate::dissect::Ending;
use crate::engine::stats::Stats;
use crate::entry::{Endpoint, Entry, EntryError, ErrorType, Protocol, Side, SynReason, TcpInfo, TcpState};
use crate::flow::Lingering;
use crate::tcp::reassembly::HeldBudget;
use crate::time::Timestamp;
use crate::wire::TcpSegment;

/// Everything a connection needs from the engine while it handles a packet or a timer.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub stats: &'a mut Stats,
    pub out: &'a mut Vec<Entry>,
    pub held: &'a std::sync::Arc<HeldBudget>,
    /// DNS exchanges, over UDP and TCP alike.
    pub dns: &'a mut crate::dissect::dns::DnsTracker,
}

impl Ctx<'_> {
    /// What the payload's dissectors need of it.
    fn payload(&mut self) -> payload::Engine<'_> {
        payload::Engine { cfg: self.cfg, stats: self.stats, out: self.out, dns: self.dns }
    }
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

/// Linux gives up on a SYN after 6 retransmissions, 127 s after the first: an attempt reported as timed
/// out is kept that long after its last packet, so a late answer resumes it.
const SYN_RETRY_WINDOW_MS: u64 = 130_000;

/// A connection that is over is remembered at least this long (and this long after its last packet), so
/// that late FIN retransmissions and RSTs are absorbed (SPEC §3.1: "One connection, one report").
pub(crate) const LINGER_MS: u64 = 60_000;

/// The window scale assumed for a side whose SYN was not seen (Linux's default for common buffer sizes).
const ASSUMED_WINDOW_SCALE: u8 = 7;

/// What the engine should do with a connection after its timers were checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    Yes,
    /// Done, or idle for too long.
    Remove,
}

struct Fin {
    /// The acknowledgement number that covers this FIN.
    ack_needed: u32,
    /// The same FIN was sent again: the sender really was waiting for its acknowledgement.
    retransmitted: bool,
    /// Not captured, but its acknowledgement was: the capture lost it.
    inferred: bool,
    is_acked: bool,
    ts: Timestamp,
    /// When it was acknowledged (meaningful once `is_acked`).
    acked_at: Timestamp,
}

impl Fin {
    fn acked(&self) -> Option<Timestamp> {
        self.is_acked.then_some(self.acked_at)
    }
}

/// One side's sequence numbers, each known or not. Kept packed: a flow table holds hundreds of thousands
/// of connections, and four `Option<u32>` would cost twice the bytes.
#[derive(Clone, Copy, Default)]
struct Seqs {
    values: [u32; 4],
    known: u8,
}

/// The initial sequence number (of its SYN).
const ISN: usize = 0;
/// The next sequence number this side will use (SYN, data and FIN counted): how far it has sent.
const NXT: usize = 1;
/// Highest data sequence number sent so far (exclusive): new data moves it, keep-alives do not.
const MAX_END: usize = 2;
/// The highest acknowledgement this side sent: how far it has received the other side's stream.
const ACKED: usize = 3;

impl Seqs {
    fn get(&self, which: usize) -> Option<u32> {
        (self.known & (1 << which) != 0).then_some(self.values[which])
    }

    fn set(&mut self, which: usize, value: u32) {
        self.values[which] = value;
        self.known |= 1 << which;
    }
}

#[derive(Default)]
struct Half {
    seq: Seqs,
    /// The window scale option of this side's SYN, when the SYN was seen.
    wscale: Option<u8>,
    /// The largest receive window this side advertised, unscaled.
    max_window: u16,
    fin: Option<Fin>,
    last_data: Option<Timestamp>,
}

impl Half {
    fn isn(&self) -> Option<u32> {
        self.seq.get(ISN)
    }
    fn nxt(&self) -> Option<u32> {
        self.seq.get(NXT)
    }
    fn acked(&self) -> Option<u32> {
        self.seq.get(ACKED)
    }
}

pub(crate) struct Conn {
    /// The two ends; `halves` and the payload's streams are indexed the same way, and never move.
    pub ends: [(IpAddr, u16); 2],
    /// Which end is the client (0 unless a mid-stream guess was proved wrong by a request).
    client_side: u8,
    pub phase: Phase,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
    syn_ts: Timestamp,
    syn_answered_by_icmp: bool,
    /// The attempt was reported (timed out); it stays tracked in case a late SYN-ACK resumes it.
    syn_reported: bool,
    /// No handshake seen: roles are a guess until a request says otherwise.
    midstream: bool,
    /// Both SYNs were seen: window scaling is known exactly (RFC 7323: on only if both sides offered it).
    handshake_seen: bool,
    /// Which ends were seen sending (bit 0: `ends[0]`, bit 1: `ends[1]`).
    seen_from: u8,
    close_wait_reported: bool,
    /// When it was closed (a timer's decision may come after its last packet).
    closed_at: Timestamp,
    /// [client, server]
    halves: [Half; 2],
    payload: Option<Box<Payload>>,
}

impl Conn {
    /// A connection attempt: the client's first SYN.
    pub fn syn(client: (IpAddr, u16), server: (IpAddr, u16), ts: Timestamp, seg: &TcpSegment<'_>) -> Conn {
        let mut c = Conn::new(client, server, ts, Phase::SynSent);
        c.syn_ts = ts;
        c.seen_from = 1;
        let h = &mut c.halves[0];
        h.seq.set(ISN, seg.seq);
        // A SYN's data (TCP Fast Open) follows its sequence number.
        h.seq.set(NXT, seg.seq.wrapping_add(1).wrapping_add(seg.seg_len));
        h.wscale = seg.window_scale();
        h.max_window = seg.window;
        c
    }

    /// Picked up at the server's SYN-ACK (the SYN was not captured).
    pub fn syn_ack(client: (IpAddr, u16), server: (IpAddr, u16), ts: Timestamp, seg: &TcpSegment<'_>) -> Conn {
        let mut c = Conn::new(client, server, ts, Phase::SynAcked);
        c.seen_from = 2;
        c.halves[0].seq.set(ISN, seg.ack.wrapping_sub(1));
        c.halves[0].seq.set(NXT, seg.ack);
        c.halves[1].seq.set(ISN, seg.seq);
        c.halves[1].seq.set(NXT, seg.seq.wrapping_add(1));
        c.halves[1].wscale = seg.window_scale();
        c.halves[1].seq.set(ACKED, seg.ack);
        c.halves[1].max_window = seg.window;
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
            ends: [client, server],
            client_side: 0,
            phase,
            first_ts: ts,
            last_ts: ts,
            syn_ts: ts,
            syn_answered_by_icmp: false,
            syn_reported: false,
            midstream: false,
            handshake_seen: false,
            seen_from: 0,
            close_wait_reported: false,
            closed_at: ts,
            halves: [Half::default(), Half::default()],
            payload: None,
        }
    }

    /// Whether packets from both ends were seen.
    pub fn seen_both_ways(&self) -> bool {
        self.seen_from == 3
    }

    pub fn client(&self) -> (IpAddr, u16) {
        self.ends[usize::from(self.client_side)]
    }

    pub fn server(&self) -> (IpAddr, u16) {
        self.ends[1 - usize::from(self.client_side)]
    }

    fn side(&self, index: usize) -> Side {
        if index == usize::from(self.client_side) {
            Side::Client
        } else {
            Side::Server
        }
    }

    /// Whether a SYN from the client starts a new connection on this 4-tuple rather than repeating the
    /// current attempt: the SYN carries another initial sequence number.
    pub fn is_new_attempt(&self, seg: &TcpSegment<'_>) -> bool {
        // A SYN with the same ISN is a retransmission, even of an attempt already reported as timed out.
        self.halves[0].isn() != Some(seg.seq)
    }

    /// An ICMP error quoted this connection's SYN: if it is still unanswered, it was refused by the network.
    pub fn icmp_error_for_syn(&mut self) {
        if self.phase == Phase::SynSent {
            self.syn_answered_by_icmp = true;
        }
    }

    /// A segment from `ends[0]` (`from_first`) or `ends[1]`. Until the handshake is complete, `ends[0]` is
    /// the client.
    pub fn on_segment(&mut self, from_first: bool, seg: &TcpSegment<'_>, ts: Timestamp, ctx: &mut Ctx<'_>) {
        if ts > self.last_ts {
            self.last_ts = ts;
        }
        if self.phase == Phase::Closed {
            return;
        }
        let (me, peer) = if from_first { (0, 1) } else { (1, 0) };
        self.seen_from |= 1 << me;
        let from_client = me == 0;
        let flags = seg.flags;
        if flags.syn() {
            self.on_syn(me, seg, ts, ctx);
            return;
        }
        if flags.rst() {
            self.on_rst(me, seg, ts, ctx);
            return;
        }
        match self.phase {
            Phase::SynSent => {
                // Only what answers the SYN completes the handshake. An ACK that does not acknowledge
                // it is a challenge ACK (stale TIME_WAIT state, port reuse behind SNAT): not an answer.
                let answers_syn = flags.ack()
                    && if from_client {
                        // The client's ACK of a SYN-ACK the capture missed.
                        self.halves[0].nxt() == Some(seg.seq)
                    } else {
                        self.halves[0].nxt() == Some(seg.ack)
                    };
                if !answers_syn {
                    if !from_client {
                        ctx.stats.challenge_acks += 1;
                    }
                    return;
                }
                self.phase = Phase::Open;
            }
            // The handshake went on (or we missed part of it).
            Phase::SynAcked => self.phase = Phase::Open,
            Phase::Open | Phase::Closed => {}
        }
        self.halves[me].max_window = self.halves[me].max_window.max(seg.window);
        if flags.ack() {
            self.on_ack(me, peer, seg.ack, ts, ctx);
        }
        let len = seg.seg_len;
        let end = seg.seq.wrapping_add(len);
        if len > 0 {
            let half = &mut self.halves[me];
            if half.seq.get(MAX_END).is_none_or(|m| seq_lt(m, end)) {
                half.seq.set(MAX_END, end);
                half.last_data = Some(ts);
                if half.fin.as_ref().is_some_and(|f| f.inferred && seq_ge(end, f.ack_needed)) {
                    // New data past an inferred FIN: it was a lost data byte, not a FIN.
                    half.fin = None;
                }
            }
        }
        let sent_to = if flags.fin() { end.wrapping_add(1) } else { end };
        let half = &mut self.halves[me];
        if half.nxt().is_none_or(|n| seq_lt(n, sent_to)) {
            half.seq.set(NXT, sent_to);
        }
        if flags.fin() {
            match &mut half.fin {
                None => {
                    half.fin = Some(Fin {
                        ack_needed: sent_to,
                        retransmitted: false,
                        inferred: false,
                        is_acked: false,
                        ts,
                        acked_at: ts,
                    })
                }
                Some(f) if f.ack_needed == sent_to && !f.inferred => f.retransmitted = true,
                Some(_) => {}
            }
        }
        if len > 0 || flags.fin() {
            self.feed_app(me, seg.seq, seg.payload, len, flags.fin(), ts, ctx);
        }
        let both_acked = self.halves.iter().all(|h| h.fin.as_ref().is_some_and(|f| f.is_acked));
        if both_acked {
            self.close(ts, Ending::Closed, ctx);
        }
    }

    /// A SYN or SYN-ACK on a connection already tracked (a new attempt was sorted out by the engine).
    fn on_syn(&mut self, me: usize, seg: &TcpSegment<'_>, ts: Timestamp, ctx: &mut Ctx<'_>) {
        if me == 0 {
            // The client's SYN (or a retransmission of it); TCP Fast Open data is the stream's start.
            if self.phase == Phase::SynSent && seg.seg_len > 0 {
                self.feed_app(0, seg.seq.wrapping_add(1), seg.payload, seg.seg_len, false, ts, ctx);
            }
            return;
        }
        if !seg.flags.ack() {
            return;
        }
        // A SYN-ACK acknowledges the SYN, and with TCP Fast Open possibly its data too.
        let answers = self.halves[0].nxt().is_none_or(|n| n == seg.ack)
            || self.halves[0].isn().is_some_and(|isn| isn.wrapping_add(1) == seg.ack);
        if self.phase == Phase::SynSent && answers {
            self.phase = Phase::SynAcked;
            self.handshake_seen = self.halves[0].isn().is_some();
            let h = &mut self.halves[1];
            h.seq.set(ISN, seg.seq);
            h.seq.set(NXT, seg.seq.wrapping_add(1));
            h.wscale = seg.window_scale();
            h.seq.set(ACKED, seg.ack);
            h.max_window = seg.window;
            if seg.seg_len > 0 {
                self.feed_app(1, seg.seq.wrapping_add(1), seg.payload, seg.seg_len, false, ts, ctx);
            }
        }
        // A retransmitted SYN-ACK, or one that answers another SYN, changes nothing.
    }

    fn on_ack(&mut self, me: usize, peer: usize, ack: u32, ts: Timestamp, ctx: &mut Ctx<'_>) {
        let h = &mut self.halves[me];
        if h.acked().is_none_or(|a| seq_lt(a, ack)) {
            h.seq.set(ACKED, ack);
        }
        let p = &mut self.halves[peer];
        if let Some(fin) = p.fin.as_mut() {
            if !fin.is_acked && seq_ge(ack, fin.ack_needed) {
                fin.is_acked = true;
                fin.acked_at = ts;
            }
        }
        let Some(sent) = p.nxt() else {
            // Mid-stream and the peer has sent nothing yet: this ACK is where its stream stands.
            p.seq.set(NXT, ack);
            return;
        };
        if seq_lt(sent, ack) {
            // The peer sent more than the capture saw. One sequence number more and no FIN seen: that was
            // its FIN (SPEC §3.1: an ACK covering a FIN the capture missed means the FIN was sent).
            if p.fin.is_none() && ack == sent.wrapping_add(1) && self.phase == Phase::Open {
                p.fin = Some(Fin {
                    ack_needed: ack,
                    retransmitted: false,
                    inferred: true,
                    is_acked: true,
                    ts,
                    acked_at: ts,
                });
                ctx.stats.fins_inferred += 1;
                self.feed_app(peer, sent, &[], 0, true, ts, ctx);
            } else {
                // Data the capture missed: the peer was not silent.
                p.last_data = Some(ts);
            }
            self.halves[peer].seq.set(NXT, ack);
        }
        // A hole the receiver acknowledged past is given up now, even when the capture already saw later
        // segments (held behind it): the receiver had those bytes, and what follows must not wait for them.
        if let Some(p) = self.payload.as_mut().filter(|p| p.waits_below(peer, ack)) {
            p.acked(peer, ack, ts, &mut ctx.payload());
            self.client_side = u8::from(p.client_side() == 1);
        }
    }

    fn on_rst(&mut self, me: usize, seg: &TcpSegment<'_>, ts: Timestamp, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::SynSent => {
                // RFC 9293 §3.10.7.3: in SYN-SENT an RST counts only if it acknowledges the SYN.
                let acks_syn = seg.flags.ack()
                    && (self.halves[0].nxt() == Some(seg.ack)
                        || self.halves[0].isn().is_some_and(|isn| isn.wrapping_add(1) == seg.ack));
                if me == 1 && acks_syn {
                    self.refused(ts, ctx);
                } else if me == 1 {
                    ctx.stats.rst_out_of_window += 1;
                }
                // The client giving up on its own attempt (or answering a challenge ACK) is not a
                // refusal; what answers its SYN decides.
            }
            Phase::SynAcked => {
                if !self.acceptable_rst(me, seg.seq) {
                    ctx.stats.rst_out_of_window += 1;
                } else if me == 1 {
                    // The server gave up before the handshake completed: the connection never was.
                    self.refused(ts, ctx);
                } else {
                    // The client gave up (a Happy-Eyeballs loser, a health probe): not an error.
                    self.close(ts, Ending::Reset(Side::Client), ctx);
                }
            }
            Phase::Open => {
                if !self.acceptable_rst(me, seg.seq) {
                    ctx.stats.rst_out_of_window += 1;
                    return;
                }
                let both_fins = self.halves.iter().all(|h| h.fin.is_some());
                if !both_fins && self.reset_is_a_close(me, seg) {
                    ctx.stats.closed_by_reset += 1;
                    self.close(ts, Ending::Closed, ctx);
                } else if !both_fins {
                    let by = self.side(me);
                    let mut e = self.tcp_entry(ts, TcpState::Reset, None, Some(by), ts);
                    // How long the connection lived before it was reset.
                    e.elapsed_time = ts.millis_since(self.first_ts);
                    ctx.out.push(e);
                    self.close(ts, Ending::Reset(by), ctx);
                } else {
                    // After both FINs an RST is how a peer that already left answers a retransmitted FIN;
                    // whether the last FIN was acknowledged in time is for the LastAck timer to say.
                    self.finish_app(ts, Ending::Reset(self.side(me)), ctx);
                }
            }
            Phase::Closed => {}
        }
    }

    /// An RST that ends a connection as a close, not a `Reset` (SPEC §3.1, "a closed socket's RST is a
    /// close"; Zeek's `SF`):
    /// - from a side that had already sent its FIN: its application closed the socket, and the kernel
    ///   resets what still arrives or was left unread (a TLS close_notify, a late response unwanted);
    /// - answering the peer's FIN when every byte either side sent was acknowledged (an abortive close
    ///   after the protocol's own close handshake, `SO_LINGER` 0: RabbitMQ, proxies);
    /// - from the client, when it had received every byte the server sent and the protocol, identified,
    ///   has nothing the client asked unanswered: how clients end connections all day (a socket closed with
    ///   the server's last bytes unread — Go's TLS clients with a session ticket, grpc-go channels closed
    ///   after their GOAWAY, the kubelet's gRPC probes). The server lost nothing and every request was
    ///   answered. On a stream whose protocol is unknown nothing says so: that RST stays a `Reset`.
    ///
    /// The RST's own acknowledgement counts: it says how far its sender had received.
    fn reset_is_a_close(&self, me: usize, rst: &TcpSegment<'_>) -> bool {
        let (mine, peer) = (&self.halves[me], &self.halves[1 - me]);
        // Its socket closed: after its FIN, or after its protocol's own close (a TLS close_notify: a Go
        // server closing an idle keep-alive connection as the client's next request crosses it).
        if mine.fin.is_some() || self.payload.as_ref().is_some_and(|p| p.closing(me)) {
            return true;
        }
        let i_received = match (mine.acked(), rst.flags.ack().then_some(rst.ack)) {
            (Some(a), Some(b)) => Some(if seq_lt(a, b) { b } else { a }),
            (a, b) => a.or(b),
        };
        // Every data byte `sender` sent was acknowledged (its FIN is no byte: an RST and the FIN it races
        // cross on the wire).
        let all_acked = |sender: &Half, acked: Option<u32>| match (sender.seq.get(MAX_END), acked) {
            (Some(sent), Some(acked)) => seq_ge(acked, sent),
            (None, _) => true,
            (Some(_), None) => false,
        };
        // What the peer sent, the RST's sender had received; and (for a close after the peer's FIN) what
        // the sender sent, the peer had received.
        let peer_lost_nothing = all_acked(peer, i_received);
        if peer.fin.is_some() {
            return peer_lost_nothing && all_acked(mine, peer.acked());
        }
        // A client's last bytes just before its own RST are its farewell (a GOAWAY, a close_notify); a
        // request among them would be waiting in its dissector.
        self.side(me) == Side::Client && peer_lost_nothing && self.payload.as_ref().is_some_and(|p| p.answered_all())
    }

    fn refused(&mut self, ts: Timestamp, ctx: &mut Ctx<'_>) {
        if !self.syn_reported {
            let e = self.tcp_entry(self.syn_ts, TcpState::SynSent, Some(SynReason::Refused), Some(Side::Server), ts);
            ctx.out.push(e);
        }
        self.close(ts, Ending::Refused, ctx);
    }

    /// RFC 5961 §3.2: an RST counts only if its sequence number lies in the receiver's window — exactly at
    /// the next sequence number it expects, or within the window it advertised. Where nothing is known of
    /// either (picked up at this very RST), it counts.
    fn acceptable_rst(&self, me: usize, seq: u32) -> bool {
        let peer = 1 - me;
        let expected = self.halves[peer].acked();
        let sent = self.halves[me].nxt();
        if expected.is_none() && sent.is_none() {
            return true;
        }
        if expected == Some(seq) || sent == Some(seq) {
            return true;
        }
        let Some(base) = expected.or(sent) else { return true };
        let window = self.window_of(peer).max(1);
        let window = u32::try_from(window).unwrap_or(u32::MAX >> 1);
        seq_ge(seq, base) && seq_lt(seq, base.wrapping_add(window))
    }

    /// The largest receive window `side` advertised, scaled (RFC 7323: scaling is on only if both SYNs
    /// offered it; for a side whose SYN was not seen a common scale is assumed).
    fn window_of(&self, side: usize) -> u64 {
        let h = &self.halves[side];
        let scale = if self.handshake_seen {
            match (self.halves[0].wscale, self.halves[1].wscale) {
                (Some(_), Some(_)) => h.wscale.unwrap_or(0),
                _ => 0,
            }
        } else {
            h.wscale.unwrap_or(ASSUMED_WINDOW_SCALE)
        };
        let window = if h.max_window == 0 { 65_535 } else { u64::from(h.max_window) };
        window << scale
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
                if !self.syn_reported && due(self.syn_ts, cfg.syn_timeout_ms) {
                    let reason = if self.syn_answered_by_icmp { SynReason::Unreachable } else { SynReason::Timeout };
                    let at = decided(self.syn_ts, cfg.syn_timeout_ms);
                    let e = self.tcp_entry(self.syn_ts, TcpState::SynSent, Some(reason), None, at);
                    ctx.out.push(e);
                    // Still tracked: the client may go on retransmitting (Linux tcp_syn_retries=6, for
                    // two minutes), and a late SYN-ACK resumes the connection (SPEC §3.1).
                    self.syn_reported = true;
                }
                if end_of_input {
                    self.finish_app(now, Ending::CaptureEnded, ctx);
                    return Keep::Remove;
                }
                if self.syn_reported && now >= self.last_ts.plus_millis(SYN_RETRY_WINDOW_MS) {
                    self.payload = None;
                    return Keep::Remove;
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
                let Some(acked) = fin.acked() else { continue };
                let quiet_since = self.halves[stuck].last_data.map_or(acked, |d| d.max(acked));
                if due(quiet_since, cfg.close_timeout_ms) {
                    let by = self.side(stuck);
                    let at = decided(quiet_since, cfg.close_timeout_ms);
                    let e = self.tcp_entry(quiet_since, TcpState::CloseWait, None, Some(by), at);
                    ctx.out.push(e);
                    self.close_wait_reported = true;
                }
            }
        }
        if let (Some(a), Some(b)) = (&self.halves[0].fin, &self.halves[1].fin) {
            let (last_side, last) = if b.ts >= a.ts { (self.side(1), b) } else { (self.side(0), a) };
            if !last.is_acked && due(last.ts, cfg.close_timeout_ms) {
                let (since, at) = (last.ts, decided(last.ts, cfg.close_timeout_ms));
                if last.retransmitted {
                    let e = self.tcp_entry(since, TcpState::LastAck, None, Some(last_side), at);
                    ctx.out.push(e);
                } else {
                    // A real LAST_ACK retransmits its FIN well within the timeout: a single FIN whose
                    // acknowledgement never showed is an acknowledgement the capture lost.
                    ctx.stats.unacked_fins += 1;
                }
                self.close(at, Ending::Closed, ctx);
                return Keep::Yes;
            }
        }
        self.check_app(now, ctx);
        if end_of_input {
            self.finish_app(now, Ending::CaptureEnded, ctx);
            return Keep::Remove;
        }
        if now >= self.last_ts.plus_millis(cfg.idle_timeout_ms) {
            // A quiet connection (a watch, a long poll) is not an error: forget it, count it, report nothing.
            ctx.stats.flows_expired += 1;
            self.payload = None;
            return Keep::Remove;
        }
        Keep::Yes
    }

    /// How long a closed connection is remembered after its last packet.
    pub fn linger_ms(cfg: &EngineConfig) -> u64 {
        LINGER_MS.max(cfg.close_timeout_ms)
    }

    fn close(&mut self, ts: Timestamp, ending: Ending, ctx: &mut Ctx<'_>) {
        self.finish_app(ts, ending, ctx);
        self.phase = Phase::Closed;
        self.closed_at = ts;
    }

    /// What the flow table keeps of the connection once it is over; `None` while it is not.
    pub fn lingering(&self) -> Option<Lingering> {
        (self.phase == Phase::Closed).then_some(Lingering::new(self.halves[0].isn(), self.last_ts.max(self.closed_at)))
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
        let (client, server) = (self.client(), self.server());
        let src = Endpoint::new(client.0, Some(client.1));
        let dst = Endpoint::new(server.0, Some(server.1));
        Entry { elapsed_time: decided.millis_since(ts), ..Entry::new(protocol, ts, src, dst) }
    }

    // ---- payload: reassembly, protocol identification, dissection -------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn feed_app(
        &mut self,
        me: usize,
        seq: u32,
        payload: &[u8],
        seg_len: u32,
        fin: bool,
        ts: Timestamp,
        ctx: &mut Ctx<'_>,
    ) {
        let window = (!self.midstream || self.halves[1 - me].wscale.is_some()).then(|| self.window_of(1 - me));
        let p = self.payload.get_or_insert_with(|| {
            let cfg = ctx.cfg;
            let mut p = Box::new(Payload::new(
                self.ends,
                cfg.max_out_of_order_bytes,
                ctx.held,
                self.midstream,
                usize::from(self.client_side),
                cfg.dissectors,
            ));
            for (i, half) in self.halves.iter().enumerate() {
                if let Some(isn) = half.isn() {
                    p.streams[i].start_at(isn.wrapping_add(1));
                }
            }
            p
        });
        p.segment(me, ts, seq, payload, seg_len, fin, window, &mut ctx.payload());
        // A request from the end taken for the server: the guess was wrong (SPEC §3.1, roles).
        self.client_side = u8::from(p.client_side() == 1);
    }

    /// Flushes both streams (gaps counted) and closes the dissector: nothing is left pending.
    fn finish_app(&mut self, ts: Timestamp, ending: Ending, ctx: &mut Ctx<'_>) {
        if let Some(mut p) = self.payload.take() {
            p.finish(ts, ending, &mut ctx.payload());
        }
    }

    fn check_app(&mut self, now: Timestamp, ctx: &mut Ctx<'_>) {
        if let Some(p) = self.payload.as_mut() {
            p.check(now, self.first_ts, &mut ctx.payload());
        }
    }
}
