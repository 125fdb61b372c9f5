//! Application protocols. A protocol is a folder here that implements [`StreamDissector`] — Zeek's
//! analyzer interface: a direction's bytes in order, the bytes the capture lost, a direction's end, the
//! connection's end, timers — and adds one [`Registration`] to [`REGISTRY`]: how its first bytes look and
//! how its dissector starts (Suricata's probe and parser). Everything a dissector finds it reports through
//! [`Found`]: entries about its connection (each protocol builds its own), or DNS messages for the engine's
//! exchange tracker, which pairs UDP and TCP alike.
//!
//! A connection's payload (`payload`) is reassembled in both directions, offered to the registry until a
//! protocol claims it (from its content, never its port), and then handed to that protocol's dissector.
//! Adding a protocol over TCP is its folder and its line in `REGISTRY`.

pub mod amqp;
pub(crate) mod calls;
pub mod dns;
pub(crate) mod framing;
pub mod http;
pub mod http2;
pub mod kafka;
pub mod mysql;
pub(crate) mod payload;
pub mod postgresql;
pub mod redis;
pub mod tls;

use std::net::IpAddr;

use crate::config::EngineConfig;
use crate::engine::stats::Stats;
use crate::entry::{Endpoint, Entry, Protocol, Side};
use crate::time::Timestamp;

pub use faultline_model::dissector::{Dissector, Dissectors};

/// Which way bytes go on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ToServer,
    ToClient,
}

impl Direction {
    pub fn flip(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }

    pub fn to_server(self) -> bool {
        self == Direction::ToServer
    }
}

/// How a connection ended, as its dissector is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Closed with FINs (or with an RST that closes, SPEC §3.1).
    Closed,
    /// Reset by this side.
    Reset(Side),
    /// The server refused it.
    Refused,
    /// The capture ended while it was open (offline: every timer is due).
    CaptureEnded,
}

impl Ending {
    /// In words, for messages: "missing response: connection reset".
    pub fn words(self) -> &'static str {
        match self {
            Ending::Closed => "connection closed",
            Ending::Reset(_) => "connection reset",
            Ending::Refused => "connection refused",
            Ending::CaptureEnded => "capture ended",
        }
    }
}

/// Whether bytes are (the start of) something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    /// The bytes so far are a prefix of it.
    NeedMore,
}

/// At most this many bytes of a stream's start are kept to identify its protocol; every probe decides
/// with fewer (a PROXY v1 line is at most 107 bytes, and is skipped before the probes look).
pub const PROBE_LIMIT: usize = 128;

/// One protocol's way in.
pub struct Registration {
    /// The name that switches it on or off (TapConfig `dissectors`).
    pub dissector: Dissector,
    /// Whether the stream's first bytes are this protocol's.
    pub probe: fn(&Probe<'_>) -> Claim,
    /// Its dissector for a stream it claimed.
    pub start: fn(&Probe<'_>) -> Box<dyn StreamDissector>,
    /// Its counters in words, for `analyze`'s summary (what it dropped on purpose, or could not read).
    pub summary: fn(&Stats) -> String,
    /// Whether the server's first bytes prove a stream this protocol's even though no probe claimed the
    /// client's (an HTTP status line answering a request that does not parse): its dissector is then fed
    /// the client's first bytes, and the server's. `None`: only the client's bytes can tell.
    pub answered_by: Option<fn(&[u8]) -> bool>,
}

/// The first bytes of one direction of a stream, offered to each protocol in turn.
pub struct Probe<'a> {
    pub bytes: &'a [u8],
    pub dir: Direction,
    /// Bytes before `bytes` that are not the application's (a PROXY protocol header).
    pub skipped: usize,
    /// Picked up mid-stream: no handshake seen.
    pub midstream: bool,
    /// Roles are known (a handshake was seen, or a request told them); until then the side taken for the
    /// server may turn out to be the client.
    pub roles_settled: bool,
}

/// The claim of a protocol whose side `first` speaks first (a client's request, a MySQL server's
/// greeting), from `verdict` on that side's bytes: the other side's bytes can only show it while the roles
/// are a guess (then the stream is claimed flipped).
pub fn claim_first_speaker(p: &Probe<'_>, first: Direction, verdict: fn(&[u8]) -> Verdict) -> Claim {
    if p.dir != first && p.roles_settled {
        return Claim::No;
    }
    match verdict(p.bytes) {
        Verdict::Yes => Claim::Yes { flipped: p.dir != first, lead: 0 },
        Verdict::NeedMore if p.skipped + p.bytes.len() < PROBE_LIMIT => Claim::NeedMore,
        _ => Claim::No,
    }
}

/// A protocol's answer to a [`Probe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The stream is this protocol's. `flipped`: the bytes are the client's, from the side taken for the
    /// server (roles were a guess). `lead`: bytes at the start that are not part of its first message
    /// (empty lines before an HTTP message).
    Yes {
        flipped: bool,
        lead: usize,
    },
    No,
    /// Not yet decided: wait for more bytes.
    NeedMore,
}

/// In the order they are tried: the first claim wins. TLS and HTTP/2 before HTTP (their first bytes are
/// nothing like a request line, and a TLS ClientHello seen from the server's side settles roles); the
/// backends' first bytes (a RESP array, a PostgreSQL startup, a MySQL greeting, AMQP's header, a Kafka
/// request header) before DNS over TCP,
/// whose probe only checks a length and a header; DNS over TCP only from the client.
pub const REGISTRY: [Registration; 9] = [
    tls::REGISTRATION,
    http2::REGISTRATION,
    redis::REGISTRATION,
    postgresql::REGISTRATION,
    mysql::REGISTRATION,
    amqp::REGISTRATION,
    kafka::REGISTRATION,
    dns::tcp::REGISTRATION,
    http::REGISTRATION,
];

/// A protocol's dissector on one connection.
pub trait StreamDissector: Send {
    /// Bytes of direction `dir`, in order.
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>);
    /// `len` bytes of `dir` the capture never saw (a peer's acknowledgement proved them sent).
    fn gap(&mut self, dir: Direction, len: u64, ts: Timestamp, found: &mut Found<'_>);
    /// Direction `dir` ended (its FIN, in order).
    fn end(&mut self, dir: Direction, ts: Timestamp, found: &mut Found<'_>);
    /// The connection is over (`ending` says how), and nothing may stay pending.
    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>);
    /// Timers due at `now` (a request unanswered too long, a handshake never answered).
    fn check(&mut self, now: Timestamp, found: &mut Found<'_>);
    /// Nothing the client asked is unanswered (an RST from the client then closes, SPEC §3.1).
    fn answered_all(&self) -> bool;
    /// Whether the stream is known to be this protocol: until it is (a TLS record that carries no hello
    /// proves nothing), it times out as unidentified (SPEC §3.2).
    fn identified(&self) -> bool {
        true
    }
    /// Whether the side sending `dir` announced its close in its protocol (a TLS close_notify after the
    /// handshake): an RST it sends next is its kernel's, for bytes that crossed the close (SPEC §3.1).
    fn closing(&self, _dir: Direction) -> bool {
        false
    }
    /// Bytes it holds between calls (partial messages, header blocks, HPACK tables): charged to the
    /// engine-wide budget with reassembly's held bytes (SPEC §3.5 "Bounds").
    fn buffered(&self) -> usize {
        0
    }
    /// Another protocol continues the stream from here (HTTP/1.1 upgraded to `h2c`), if it does.
    fn take_over(&mut self, _ts: Timestamp, _found: &mut Found<'_>) -> Option<Box<dyn StreamDissector>> {
        None
    }
}

/// What a dissector knows of its connection and reports to.
pub struct Found<'a> {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub cfg: &'a EngineConfig,
    pub stats: &'a mut Stats,
    pub out: &'a mut Vec<Entry>,
    /// DNS exchanges, over UDP and TCP alike.
    pub dns: &'a mut dns::DnsTracker,
}

impl Found<'_> {
    /// An entry about this connection, from the client to the server, begun at `start` and decided at
    /// `decided` (its `elapsedTime`).
    pub fn entry(&self, protocol: Protocol, start: Timestamp, decided: Timestamp) -> Entry {
        let src = Endpoint::new(self.client.0, Some(self.client.1));
        let dst = Endpoint::new(self.server.0, Some(self.server.1));
        Entry { elapsed_time: decided.millis_since(start), ..Entry::new(protocol, start, src, dst) }
    }

    /// A request of `protocol` asked at `asked` and left without its answer when the connection ended at
    /// `ended` as `ending` says: a half connection (the caller adds what was asked).
    pub fn unanswered(&self, protocol: Protocol, asked: Timestamp, ended: Timestamp, ending: Ending) -> Entry {
        let mut e = self.entry(protocol, asked, ended);
        e.error = Some(crate::entry::EntryError {
            kind: crate::entry::ErrorType::PairNotFound,
            msg: format!("missing response: {}", ending.words()),
        });
        e
    }

    /// TLS continuing a stream whose protocol switched to it (PostgreSQL's `SSLRequest`, MySQL's TLS
    /// request), or nothing if TLS is not dissected.
    pub fn tls_from_here(&self) -> Option<Box<dyn StreamDissector>> {
        self.cfg
            .dissectors
            .contains(Dissector::Tls)
            .then(|| Box::<tls::TlsDissector>::default() as Box<dyn StreamDissector>)
    }

    /// The stream broke `protocol`'s grammar at `ts` (`why`): one `parser error` entry.
    pub fn parser_error(&mut self, protocol: Protocol, ts: Timestamp, why: &str) {
        let mut e = self.entry(protocol, ts, ts);
        e.error = Some(crate::entry::EntryError {
            kind: crate::entry::ErrorType::Dissection,
            msg: format!("parser error: {why}"),
        });
        self.out.push(e);
    }

    /// A DNS message read from this connection, for the exchange tracker.
    pub fn dns_message(&mut self, dir: Direction, ts: Timestamp, msg: &[u8]) {
        let (src, dst) = if dir.to_server() { (self.client, self.server) } else { (self.server, self.client) };
        self.dns.on_datagram(src, dst, msg, ts, self.cfg.dns_timeout_ms, self.stats, self.out);
    }
}
