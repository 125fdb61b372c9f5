//! The threaded shards against one engine where the front must move a flow's state between shards: NATed
//! connections whose copies on one interface were missed at first (capture started late there, or lost
//! packets), so that one tuple was tracked on its own shard before the pair showed.

use std::net::IpAddr;
use std::sync::Arc;

use etherparse::PacketBuilder;
use faultline_core::engine::frames::FrameSource;
use faultline_core::wire::LinkType;
use faultline_core::{Analyzer, Engine, EngineConfig, Entry, Timestamp};

use super::threaded;
use crate::frames::FrameBatch;

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

fn tcp(src: (IpAddr, u16), dst: (IpAddr, u16), flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.0, dst.0) else { return Vec::new() };
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(s.octets(), d.octets(), 64).tcp(src.1, dst.1, seq, 65535);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    let mut f = Vec::new();
    b.write(&mut f, payload).expect("frame");
    f
}

/// (ms, from the client, flags, seq, ack, payload)
type Packet<'a> = (u64, bool, u8, u32, u32, &'a [u8]);

/// (interface, ms, frame): connections to a Service seen before DNAT (interface 1) and after (2). In the
/// even ones interface 1 missed the SYN; in the odd ones it missed everything before the response.
fn capture() -> Vec<(u32, u64, Vec<u8>)> {
    let service = ("10.96.0.30".parse().expect("ip"), 80);
    let backend = ("10.244.1.7".parse().expect("ip"), 8080);
    let get = b"GET / HTTP/1.1\r\nHost: s\r\n\r\n";
    let resp = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    let mut cap = Vec::new();
    for i in 0..48u16 {
        let client = ("10.244.1.20".parse().expect("ip"), 40_000 + i);
        let (c, s) = (1000 + u32::from(i) * 7919, 50_000 + u32::from(i) * 104_729);
        let t = u64::from(i) * 20;
        let acked = c + 1 + get.len() as u32;
        let packets: [Packet; 5] = [
            (0, true, SYN, c, 0, b""),
            (2, false, SYN | ACK, s, c + 1, b""),
            (4, true, ACK, c + 1, s + 1, b""),
            (6, true, PSH | ACK, c + 1, s + 1, get),
            (8, false, PSH | ACK, s + 1, acked, resp),
        ];
        let missed_before = if i % 2 == 0 { 1 } else { 4 };
        for (n, (ms, from_client, flags, seq, ack, payload)) in packets.into_iter().enumerate() {
            let (pre, post) = if from_client {
                ((client, service), (client, backend))
            } else {
                ((service, client), (backend, client))
            };
            // Interface 2's copy first for requests, interface 1's for replies (as DNAT orders them).
            let post_first = from_client;
            if n >= missed_before {
                cap.push((1, t + ms + u64::from(post_first), tcp(pre.0, pre.1, flags, seq, ack, payload)));
            }
            cap.push((2, t + ms + u64::from(!post_first), tcp(post.0, post.1, flags, seq, ack, payload)));
        }
    }
    cap.sort_by_key(|(_, ms, _)| *ms);
    cap
}

/// The capture through `engine`: frame by frame (copied by a sharded engine), or `shared` in buffers of a
/// few frames each that the engine may keep (as capture threads and the file reader hand them over).
fn run(mut engine: Box<dyn Analyzer>, shared: bool) -> Vec<String> {
    engine.expect_several_interfaces();
    let mut out: Vec<Entry> = Vec::new();
    let at = |ms: u64| Timestamp::from_millis(1_800_000_000_000 + ms);
    if shared {
        for chunk in capture().chunks(7) {
            let mut batch = FrameBatch::default();
            for (iface, ms, f) in chunk {
                batch.push_on(*iface, LinkType::Ethernet, at(*ms), f);
            }
            let frames: Arc<dyn FrameSource> = Arc::new(batch);
            for (i, (_, ms, _)) in chunk.iter().enumerate() {
                engine.handle_shared(&frames, i, at(*ms), &mut out).expect("decodes");
            }
        }
    } else {
        for (iface, ms, f) in capture() {
            engine.handle_frame_on(iface, LinkType::Ethernet, &f, at(ms), &mut out).expect("decodes");
        }
    }
    engine.finish(&mut out);
    out.iter().map(|e| serde_json::to_string(e).expect("json")).collect()
}

#[test]
fn a_natted_tuple_tracked_apart_moves_to_its_pairs_shard() {
    let cfg = EngineConfig::default();
    let one = run(Box::new(Engine::new(cfg.clone())), false);
    // Every connection once, with its 503: no second report of a tuple left behind on another shard.
    assert_eq!(one.len(), 48, "{one:#?}");
    assert!(one.iter().all(|e| e.contains("\"status\":503")), "{one:#?}");
    for n in [2, 3, 5] {
        assert_eq!(run(Box::new(threaded(cfg.clone(), n)), false), one, "{n} engine threads");
        assert_eq!(run(Box::new(threaded(cfg.clone(), n)), true), one, "{n} threads, frames shared");
    }
}
