//! The analyzer's hot paths, one at a time: decoding a frame, finding a packet's flow among many, a TCP
//! connection's whole life through the state machine, and parsing an HTTP exchange. (KFL evaluation is
//! in `kfl_eval`.) Run with `cargo bench -p faultline-core --bench hot_paths`; `make bench` runs the
//! whole analyzer beside tcpdump and tshark.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use faultline_core::dissect::http::HttpDissector;
use faultline_core::dissect::Direction;
use faultline_core::wire::{decode, LinkType};
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};

const CLIENT: [u8; 4] = [10, 0, 0, 1];
const SERVER: [u8; 4] = [10, 0, 0, 2];
const REQUEST: &[u8] = b"GET /api/v1/orders?page=2 HTTP/1.1\r\nHost: shop\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"orders\":[]}";

/// A TCP segment from `from` to `to` with the given flags (S, A, F, R, P letters).
fn tcp(from: ([u8; 4], u16), to: ([u8; 4], u16), seq: u32, ack: u32, flags: &str, data: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(from.0, to.0, 64).tcp(from.1, to.1, seq, 65535);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'F' => b.fin(),
            'R' => b.rst(),
            _ => b.psh(),
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, data).expect("frame");
    out
}

/// One HTTP/1.1 conversation on client port `port`: handshake, request, response, graceful close.
fn conversation(port: u16) -> Vec<Vec<u8>> {
    let (c, s) = ((CLIENT, port), (SERVER, 8080));
    let (ci, si) = (1000u32, 5000u32);
    let (rq, rs) = (REQUEST.len() as u32, RESPONSE.len() as u32);
    vec![
        tcp(c, s, ci, 0, "S", b""),
        tcp(s, c, si, ci + 1, "SA", b""),
        tcp(c, s, ci + 1, si + 1, "A", b""),
        tcp(c, s, ci + 1, si + 1, "PA", REQUEST),
        tcp(s, c, si + 1, ci + 1 + rq, "PA", RESPONSE),
        tcp(c, s, ci + 1 + rq, si + 1 + rs, "FA", b""),
        tcp(s, c, si + 1 + rs, ci + 2 + rq, "FA", b""),
        tcp(c, s, ci + 2 + rq, si + 2 + rs, "A", b""),
    ]
}

fn decoding(c: &mut Criterion) {
    let frames = conversation(40000);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("http_conversation_frames", |b| {
        b.iter(|| {
            for f in &frames {
                let _ = black_box(decode(LinkType::Ethernet, black_box(f), Timestamp(0)));
            }
        })
    });
    g.finish();
}

fn flow_lookup(c: &mut Criterion) {
    // 100,000 connections picked up mid-stream; then ACKs on them, round robin: each is a table lookup
    // plus a TCP update on an existing connection.
    let n = 100_000u32;
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let ip = [10, 1, (i >> 8) as u8, i as u8];
            tcp((ip, 1024 + (i % 60_000) as u16), (SERVER, 443), 1, 1, "A", b"")
        })
        .collect();
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let _ = engine.handle_frame(LinkType::Ethernet, f, Timestamp(1_000_000_000 + i as u64), &mut out);
    }
    let mut i = 0usize;
    let mut t = 2_000_000_000u64;
    let mut g = c.benchmark_group("flow");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ack_on_one_of_100k_flows", |b| {
        b.iter(|| {
            i = (i + 7919) % frames.len();
            t += 1_000;
            let _ = engine.handle_frame(LinkType::Ethernet, &frames[i], Timestamp(t), &mut out);
            out.clear();
        })
    });
    g.finish();
}

fn tcp_lifecycle(c: &mut Criterion) {
    // A whole connection through the state machine (with HTTP detection and pairing), from a fresh engine.
    let frames = conversation(40000);
    let mut g = c.benchmark_group("tcp");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("http_conversation", |b| {
        b.iter_batched(
            || Engine::new(EngineConfig::default()),
            |mut engine| {
                let mut out = Vec::new();
                for (i, f) in frames.iter().enumerate() {
                    let _ = engine.handle_frame(LinkType::Ethernet, f, Timestamp(1_000_000 * i as u64), &mut out);
                }
                engine.finish(&mut out);
                black_box(out)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn http_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes((REQUEST.len() + RESPONSE.len()) as u64));
    g.bench_function("request_response", |b| {
        b.iter(|| {
            let mut d = HttpDissector::default();
            let mut out = Vec::new();
            d.on_data(Direction::ToServer, Timestamp(1), black_box(REQUEST), &mut out);
            d.on_data(Direction::ToClient, Timestamp(2), black_box(RESPONSE), &mut out);
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, decoding, flow_lookup, tcp_lifecycle, http_parse);
criterion_main!(benches);
