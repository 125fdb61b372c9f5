//! The bodies of the fuzz targets, one function per target. Shared by the cargo-fuzz binaries in
//! `fuzz_targets/` (nightly, coverage-guided) and by `core/tests/fuzz_seeds.rs`, which replays every file in
//! `fuzz/seeds/` on stable in `cargo test` — so the seed corpus, and every crash found and saved there, is
//! a regression test wherever the tests run. Each function must not panic on any input.

use faultline_core::dissect::http::HttpDissector;
use faultline_core::dissect::Direction;
use faultline_core::engine::inline::ShardedInline;
use faultline_core::pcap::PcapReader;
use faultline_core::wire::LinkType;
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};
use faultline_kfl::Query;

const LINKS: [LinkType; 5] =
    [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::RawIp, LinkType::Loopback];

/// Frames through the decoder and the engine. The input is split into frames by a 2-byte little-endian
/// length prefix; the first byte picks the link type and the time step, so one input is a conversation.
pub fn engine(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else { return };
    let link = LINKS[usize::from(first) % LINKS.len()];
    let mut engine = Engine::new(EngineConfig { max_flows: 16, ..EngineConfig::default() });
    let mut out = Vec::new();
    let mut t = 0u64;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        t += u64::from(first) * 1_000_000;
        let _ = engine.handle_frame(link, frame, Timestamp(t), &mut out);
        rest = &rest[2 + len..];
    }
    engine.finish(&mut out);
    for e in &out {
        // Rendering must not panic either: the table and Events print endpoints and times.
        let _ = format!("{} {} {}", e.timestamp, e.src, e.dst);
    }
}

/// The `engine` target's input through one engine and through three shards behind one front: what they
/// find (as JSON, ids included) and count must be the same, whatever the frames. Budgets are the defaults
/// (a fuzz input never reaches them: shards divide them, so past them shards may legitimately differ).
/// With the first byte's high bit set, frames alternate between two interfaces of one node, the low
/// seven bits milliseconds apart (copies of a packet are looked for within 50 ms): copies, NAT pairs, and
/// a tuple's state moving between shards when its pair shows late.
pub fn shards(data: &[u8]) {
    let Some((&first, frames)) = data.split_first() else { return };
    let link = LINKS[usize::from(first) % LINKS.len()];
    let two_interfaces = first & 0x80 != 0;
    let run = |mut engine: Box<dyn Analyzer>| {
        if two_interfaces {
            engine.expect_several_interfaces();
        }
        let (mut out, mut rest, mut t, mut k) = (Vec::new(), frames, 0u64, 0u32);
        while rest.len() >= 2 {
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
            t += u64::from(if two_interfaces { first & 0x7f } else { first }) * 1_000_000;
            let interface = if two_interfaces { k % 2 } else { 0 };
            k = k.wrapping_add(1);
            let _ = engine.handle_frame_on(interface, link, &rest[2..2 + len], Timestamp(t), &mut out);
            rest = &rest[2 + len..];
        }
        engine.finish(&mut out);
        let entries: Vec<String> = out.iter().map(|e| serde_json::to_string(e).unwrap_or_default()).collect();
        (entries, engine.stats())
    };
    let one = run(Box::new(Engine::new(EngineConfig::default())));
    let three = run(Box::new(ShardedInline::new(EngineConfig::default(), 3)));
    if three.1.nat_tuples_apart > 0 {
        // Shards said they could not keep a connection's tuples together (pairs decided apart, then
        // linked): the one case they may differ in, and it is counted.
        return;
    }
    assert_eq!(one, three, "three shards found or counted otherwise than one engine");
}

/// DNS datagrams between one client and one server on port 53, through the message parser and the
/// exchange tracker. Each datagram is `[control][length][bytes]`: control bit 0 is the direction (1: the
/// server's answer), bits 1-7 how many 100 ms passed before it.
pub fn dns(data: &[u8]) {
    let client = (std::net::IpAddr::from([10, 0, 0, 1]), 40000);
    let server = (std::net::IpAddr::from([10, 0, 0, 53]), 53);
    let mut tracker = faultline_core::dissect::dns::DnsTracker::default();
    let mut stats = faultline_core::stats::Stats::default();
    let mut out = Vec::new();
    let mut rest = data;
    let mut t = 0u64;
    while let [ctl, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        t += u64::from(ctl >> 1) * 100;
        let _ = faultline_core::dissect::dns::wire::Message::parse(payload);
        let (src, dst) = if ctl & 1 == 0 { (client, server) } else { (server, client) };
        tracker.on_datagram(src, dst, payload, Timestamp::from_millis(t), 5_000, &mut stats, &mut out);
        tracker.sweep(Timestamp::from_millis(t), false, 5_000, &mut out);
    }
    tracker.sweep(Timestamp::from_millis(t), true, 5_000, &mut out);
    for e in &out {
        let _ = serde_json::to_string(e);
    }
}

/// One chunk of a two-direction stream input (the `tls` and `http2` targets): `[control][length][bytes]`,
/// control bit 0 the direction (1: server), bit 1 a gap of `length` bytes instead of data, bit 2 a close
/// after it, bits 3-7 how many 100 ms passed before it.
struct StreamChunk<'a> {
    from_client: bool,
    gap: bool,
    close: bool,
    ts: Timestamp,
    bytes: &'a [u8],
}

/// The chunks of `data`, and the time after the last of them.
fn stream_chunks(data: &[u8]) -> (Vec<StreamChunk<'_>>, Timestamp) {
    let (mut rest, mut t, mut out) = (data, 0u64, Vec::new());
    while let [ctl, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        t += u64::from(ctl >> 3) * 100;
        out.push(StreamChunk {
            from_client: ctl & 1 == 0,
            gap: ctl & 2 != 0,
            close: ctl & 4 != 0,
            ts: Timestamp::from_millis(t),
            bytes,
        });
    }
    (out, Timestamp::from_millis(t))
}

/// Both directions of a TLS handshake through the record and handshake readers (chunks: `stream_chunks`).
pub fn tls(data: &[u8]) {
    let mut d = faultline_core::dissect::tls::TlsDissector::default();
    let (chunks, end) = stream_chunks(data);
    for c in chunks {
        if c.gap {
            d.on_gap();
        } else {
            d.on_data(c.from_client, c.ts, c.bytes);
        }
        d.check(c.ts, 10_000);
        if c.close {
            d.on_fin(c.ts, c.from_client, 10_000);
        }
        let _ = d.closing(c.from_client);
    }
    d.on_close(end, "capture ended", None, true, 10_000);
    for f in &d.failures {
        let _ = format!("{} {:?} {:?}", f.msg, f.sni, f.alert);
    }
}

/// Both directions of an HTTP/2 connection, from the client's preface on — or, after a leading `MID`,
/// picked up mid-stream (chunks: `stream_chunks`; a gap is of the chunk's length; the pair timer runs at
/// 1 s; a FIN ends a chunk that closes).
pub fn http2(data: &[u8]) {
    use faultline_core::dissect::http2::Http2Dissector;
    use faultline_core::dissect::Ending;
    let (mut d, data) = match data.strip_prefix(b"MID") {
        Some(rest) => (Http2Dissector::midstream(), rest),
        None => (Http2Dissector::new(true), data),
    };
    let (chunks, end) = stream_chunks(data);
    for c in chunks {
        if c.gap {
            d.on_gap(c.from_client, c.bytes.len() as u64, c.ts);
        } else {
            d.on_data(c.from_client, c.ts, c.bytes);
        }
        d.check(c.ts, 1_000);
        if c.close {
            d.on_end(c.from_client);
            d.on_close(c.ts, Ending::Closed);
        }
    }
    d.on_close(end, Ending::CaptureEnded);
    for o in &d.outcomes {
        let _ = format!("{o:?}");
    }
}

/// Both directions of an HTTP connection. Each chunk starts with a control byte: bit 0 the direction,
/// bits 1-2 data (0, 1), a gap (2) or an end/timer check (3, bit 7 picks which), bits 3-7 the length.
pub fn http(data: &[u8]) {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    let mut rest = data;
    let mut t = 0;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = usize::from(ctl >> 3).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        t += 1;
        let ts = Timestamp::from_millis(t);
        let dir = if ctl & 1 == 0 { Direction::ToServer } else { Direction::ToClient };
        match (ctl >> 1) & 3 {
            0 | 1 => d.on_data(dir, ts, chunk, &mut out),
            2 => d.on_gap(dir, len as u64, ts, &mut out),
            _ => {
                if ctl & 0x80 == 0 {
                    d.on_end(dir, ts, &mut out)
                } else {
                    d.check(ts, 3, &mut out)
                }
            }
        }
    }
    d.on_close(Timestamp::from_millis(t + 1), "capture ended", &mut out);
}

/// Capture files: classic pcap and pcapng headers, records and blocks.
pub fn pcap(data: &[u8]) {
    if let Ok(mut r) = PcapReader::new(data) {
        while let Ok(Some(rec)) = r.next_record() {
            assert!(rec.data.len() <= faultline_core::pcap::MAX_RECORD);
        }
    }
}

/// KFL queries: any text either parses or gives an error whose column lies inside the query; a parsed
/// query evaluates against a JSON entry without panicking.
pub fn kfl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Query::parse(text) {
        Ok(q) => {
            let entry = serde_json::json!({
                "protocol": "http", "error": null, "src": {"ip": "10.0.0.1", "port": 1},
                "request": {"path": "/a", "headers": {"x": "1"}}, "response": {"status": 503}
            });
            let _ = q.matches(&entry);
        }
        Err(e) => assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e}"),
    }
}

/// Both directions of a stream through a protocol's dissector as the engine drives it — data, gaps, a
/// side's end, timers, a hand-over to another protocol, the close (chunks: `stream_chunks`): the targets
/// of the backends (`redis`, `postgresql`, `mysql`, `amqp`, `kafka`).
pub fn stream(r: &faultline_core::dissect::Registration, data: &[u8]) {
    use faultline_core::dissect::dns::DnsTracker;
    use faultline_core::dissect::{Direction, Ending, Found, Probe};
    use faultline_core::engine::stats::Stats;
    let (cfg, mut stats, mut out, mut dns) =
        (EngineConfig::default(), Stats::default(), Vec::new(), DnsTracker::default());
    let (chunks, end) = stream_chunks(data);
    let first = chunks.first().map_or(&[][..], |c| c.bytes);
    let probe = Probe { bytes: first, dir: Direction::ToServer, skipped: 0, midstream: false, roles_settled: true };
    let _ = (r.probe)(&probe);
    let mut d = (r.start)(&probe);
    let ip = std::net::IpAddr::from([10, 0, 0, 1]);
    let mut found =
        Found { client: (ip, 40000), server: (ip, 6379), cfg: &cfg, stats: &mut stats, out: &mut out, dns: &mut dns };
    for c in chunks {
        let dir = if c.from_client { Direction::ToServer } else { Direction::ToClient };
        if c.gap {
            d.gap(dir, c.bytes.len() as u64, c.ts, &mut found);
        } else {
            d.data(dir, c.ts, c.bytes, &mut found);
        }
        if c.close {
            d.end(dir, c.ts, &mut found);
        }
        d.check(c.ts, &mut found);
        let _ = (d.answered_all(), d.buffered(), d.identified());
        if let Some(next) = d.take_over(c.ts, &mut found) {
            d = next;
        }
    }
    d.close(end, Ending::Reset(faultline_core::entry::Side::Client), &mut found);
    for e in found.out.iter() {
        let _ = serde_json::to_string(e);
    }
}
