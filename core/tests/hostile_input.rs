//! Bad input never panics: random bytes and mutated valid frames through every parser, many times, with
//! a fixed seed so a failure reproduces. (The `fuzz/` targets do the same, coverage-guided.)

mod common;

use common::rng::Rng;
use faultline_core::dissect::http::HttpDissector;
use faultline_core::dissect::Direction;
use faultline_core::pcap::PcapReader;
use faultline_core::wire::LinkType;
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};

fn seed_frames() -> Vec<Vec<u8>> {
    use etherparse::PacketBuilder;
    let mut out = Vec::new();
    let eth = || PacketBuilder::ethernet2([2; 6], [4; 6]);
    let mut b = Vec::new();
    eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 80, 1, 100).syn().write(&mut b, b"").expect("b");
    out.push(b);
    let mut b = Vec::new();
    eth()
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .tcp(80, 40000, 7, 100)
        .ack(2)
        .write(&mut b, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .expect("b");
    out.push(b);
    let mut b = Vec::new();
    eth()
        .ipv6(
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu: 1280 })
        .write(&mut b, &[0x60, 0, 0, 0, 0, 8, 17, 64, 1, 2, 3])
        .expect("b");
    out.push(b);
    let mut b = Vec::new();
    eth()
        .ipv4([10, 0, 0, 9], [10, 0, 0, 1], 64)
        .icmpv4(etherparse::Icmpv4Type::Unknown { type_u8: 3, code_u8: 3, bytes5to8: [0; 4] })
        .write(&mut b, &[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0, 53])
        .expect("b");
    out.push(b);
    out
}

#[test]
fn mutated_frames_through_the_engine() {
    let mut rng = Rng(0x5eed_f00d);
    let seeds = seed_frames();
    let links = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Loopback];
    let mut engine = Engine::new(EngineConfig { max_flows: 64, ..EngineConfig::default() });
    let mut out = Vec::new();
    for i in 0..200_000u64 {
        let mut f = seeds[rng.below(seeds.len())].clone();
        match rng.below(4) {
            0 => f.truncate(rng.below(f.len() + 1)),
            1 => {
                for _ in 0..=rng.below(4) {
                    let at = rng.below(f.len());
                    f[at] ^= 1 << rng.below(8);
                }
            }
            2 => f = rng.bytes(120),
            _ => {
                let at = rng.below(f.len());
                f[at] = rng.next() as u8;
            }
        }
        let link = links[rng.below(links.len())];
        let _ = engine.handle_frame(link, &f, Timestamp::from_micros(i * 997), &mut out);
        out.clear();
    }
    engine.finish(&mut out);
    assert!(engine.flow_count() <= 64);
    assert_eq!(engine.stats().packets, 200_000);
}

#[test]
fn random_bytes_through_the_capture_reader() {
    let mut rng = Rng(0xcafe);
    let mut valid = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
    valid.extend([0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4]);
    let ng_head = [
        0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 28, 0, 0, 0,
    ];
    for _ in 0..50_000 {
        let mut f = if rng.below(2) == 0 { valid.clone() } else { ng_head.to_vec() };
        let tail = rng.bytes(64);
        f.extend(tail);
        for _ in 0..rng.below(3) {
            let at = rng.below(f.len());
            f[at] = rng.next() as u8;
        }
        if let Ok(mut r) = PcapReader::new(&f[..]) {
            for _ in 0..100 {
                match r.next_record() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}

#[test]
fn random_bytes_through_the_http_dissector() {
    let mut rng = Rng(0xbeef);
    let fragments: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"Content-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
        b"HEAD /x HTTP/1.0\r\n\r\n",
    ];
    for _ in 0..20_000 {
        let mut d = HttpDissector::default();
        let mut out = Vec::new();
        for step in 0..rng.below(30) {
            let dir = if rng.below(2) == 0 { Direction::ToServer } else { Direction::ToClient };
            let data = if rng.below(3) == 0 { rng.bytes(40) } else { fragments[rng.below(fragments.len())].to_vec() };
            let ts = Timestamp::from_millis(step as u64);
            match rng.below(20) {
                0 => d.on_gap(dir, rng.next() % 100, ts, &mut out),
                1 => d.on_end(dir, ts, &mut out),
                2 => d.check(ts, 5, &mut out),
                _ => d.on_data(dir, ts, &data, &mut out),
            }
        }
        d.on_close(Timestamp::from_millis(99), "capture ended", &mut out);
    }
}

/// A flood of tiny IPv4 fragments (non-first, 8 bytes each, every offset and id): there is no reassembly
/// to fill, so each is counted and skipped, no flow is created, and nothing is reported.
#[test]
fn a_flood_of_tiny_fragments_is_counted_not_kept() {
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    let n = 100_000u32;
    for i in 0..n {
        let (id, offset) = ((i % 65_536) as u16, 1 + (i % 8000) as u16);
        let mut ip = vec![0x45, 0, 0, 28, (id >> 8) as u8, id as u8, 0x20 | (offset >> 8) as u8, offset as u8];
        ip.extend_from_slice(&[64, 6, 0, 0, 10, 0, (i >> 8) as u8, i as u8, 10, 0, 0, 2]);
        ip.extend_from_slice(&[0xde; 8]);
        let mut frame = vec![4u8; 6];
        frame.extend_from_slice(&[2; 6]);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&ip);
        let _ = engine.handle_frame(LinkType::Ethernet, &frame, Timestamp(u64::from(i) * 1000), &mut out);
    }
    engine.finish(&mut out);
    assert_eq!(engine.stats().fragments, u64::from(n));
    assert_eq!(engine.flow_count(), 0);
    assert!(out.is_empty(), "{out:?}");
}
