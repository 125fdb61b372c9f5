//! Crafted traffic for engine tests: a client and a server exchanging real, well-formed frames built by
//! etherparse, fed to the engine at chosen capture times.

#![allow(dead_code)]

pub mod rng;

use std::net::IpAddr;

use etherparse::PacketBuilder;
use faultline_core::engine::inline::ShardedInline;
use faultline_core::entry::{Entry, SynReason, TcpState};
use faultline_core::wire::LinkType;
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};

pub const T0_MS: u64 = 1_795_821_177_000;

/// The engine the tests drive: one, or — with `FAULTLINE_TEST_SHARDS=N` in the environment (`make unit`
/// runs the suite both ways) — N shards behind one front, which must pass every test one engine passes.
pub type TestEngine = Box<dyn Analyzer>;

pub fn test_engine(cfg: EngineConfig) -> TestEngine {
    match std::env::var("FAULTLINE_TEST_SHARDS").ok().and_then(|n| n.parse::<usize>().ok()) {
        Some(n) if n > 1 => Box::new(ShardedInline::new(cfg, n)),
        _ => Box::new(Engine::new(cfg)),
    }
}

pub struct Sim {
    pub engine: TestEngine,
    pub out: Vec<Entry>,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;
pub const FIN: u8 = 0x01;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;

impl Sim {
    pub fn new() -> Sim {
        Sim::with(EngineConfig::default())
    }

    pub fn with(cfg: EngineConfig) -> Sim {
        Sim::on(test_engine(cfg))
    }

    /// One engine whatever the environment: for tests of a budget one engine has to itself.
    pub fn one(cfg: EngineConfig) -> Sim {
        Sim::on(Box::new(Engine::new(cfg)))
    }

    /// A Sim on this engine (for tests about one engine, or about shards, whatever the environment).
    pub fn on(engine: TestEngine) -> Sim {
        Sim {
            engine,
            out: Vec::new(),
            client: ("10.0.0.1".parse().expect("ip"), 40000),
            server: ("10.0.0.2".parse().expect("ip"), 80),
        }
    }

    pub fn v6(mut self) -> Sim {
        self.client.0 = "2001:db8::1".parse().expect("ip");
        self.server.0 = "2001:db8::2".parse().expect("ip");
        self
    }

    /// A TCP segment from the client (`from_client`) or the server at `ms` after T0.
    pub fn tcp(&mut self, ms: u64, from_client: bool, flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        let (src, dst) = if from_client { (self.client, self.server) } else { (self.server, self.client) };
        let frame = tcp_frame(src, dst, flags, seq, ack, payload);
        self.frame(ms, &frame);
    }

    pub fn c(&mut self, ms: u64, flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        self.tcp(ms, true, flags, seq, ack, payload);
    }

    pub fn s(&mut self, ms: u64, flags: u8, seq: u32, ack: u32, payload: &[u8]) {
        self.tcp(ms, false, flags, seq, ack, payload);
    }

    pub fn frame(&mut self, ms: u64, frame: &[u8]) {
        self.frame_on(0, ms, frame);
    }

    /// A frame captured on interface number `iface`.
    pub fn frame_on(&mut self, iface: u32, ms: u64, frame: &[u8]) {
        let ts = Timestamp::from_millis(T0_MS + ms);
        self.engine
            .handle_frame_on(iface, LinkType::Ethernet, frame, ts, &mut self.out)
            .expect("crafted frames decode");
    }

    /// Client ISN 1000, server ISN 5000; afterwards the client's next sequence number is 1001 and the
    /// server's 5001.
    pub fn handshake(&mut self, ms: u64) {
        self.c(ms, SYN, 1000, 0, b"");
        self.s(ms + 1, SYN | ACK, 5000, 1001, b"");
        self.c(ms + 2, ACK, 1001, 5001, b"");
    }

    pub fn advance(&mut self, ms: u64) {
        self.engine.advance(Timestamp::from_millis(T0_MS + ms), &mut self.out);
    }

    pub fn finish(mut self) -> Vec<Entry> {
        self.engine.finish(&mut self.out);
        self.out
    }

    /// (state, reason, by) of every TCP connection-error entry, in order.
    pub fn tcp_errors(&self) -> Vec<(TcpState, Option<SynReason>, Option<&'static str>)> {
        tcp_errors(&self.out)
    }
}

pub fn tcp_errors(out: &[Entry]) -> Vec<(TcpState, Option<SynReason>, Option<&'static str>)> {
    out.iter().filter_map(|e| e.tcp.as_ref()).map(|t| (t.state, t.reason, t.by.map(|b| b.as_str()))).collect()
}

pub fn tcp_frame(src: (IpAddr, u16), dst: (IpAddr, u16), flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match (src.0, dst.0) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
    };
    let mut b = ip.tcp(src.1, dst.1, seq, 65535);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    let mut frame = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut frame, payload).expect("builds");
    frame
}
