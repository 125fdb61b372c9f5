//! Flows sharded across engines find what one engine finds, entry for entry and counter for counter — in
//! particular where one flow's fate depends on packets of another: ICMP errors quoting a flow, a DNS
//! client's search steps and retries on new sockets, the two tuples of a NATed connection, servers known
//! from one connection's handshake deciding roles in another picked up mid-stream. Each case has enough
//! flows (64) that a routing rule missing would split some of them across shards.

mod common;

use std::net::IpAddr;

use common::rng::Rng;
use common::{tcp_frame, ACK, PSH, RST, SYN, T0_MS};
use etherparse::{Icmpv4Type, PacketBuilder};
use faultline_core::engine::inline::ShardedInline;
use faultline_core::entry::{Entry, SynReason, TcpState};
use faultline_core::stats::Stats;
use faultline_core::wire::LinkType;
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};

const FLOWS: u16 = 64;

/// (interface, ms after T0, frame)
type Capture = Vec<(u32, u64, Vec<u8>)>;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn v4(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    }
}

fn udp(src: (IpAddr, u16), dst: (IpAddr, u16), payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(v4(src.0), v4(dst.0), 64).udp(src.1, dst.1);
    let mut f = Vec::new();
    b.write(&mut f, payload).expect("udp");
    f
}

/// An ICMP error from `router` to the sender of `frame`, quoting its IP header and first 8 bytes.
fn icmp_error(router: IpAddr, frame: &[u8], code: u8) -> Vec<u8> {
    let ip_packet = &frame[14..];
    let sender = [ip_packet[12], ip_packet[13], ip_packet[14], ip_packet[15]];
    let ty = Icmpv4Type::Unknown { type_u8: 3, code_u8: code, bytes5to8: [0; 4] };
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(v4(router), sender, 64).icmpv4(ty);
    let mut f = Vec::new();
    b.write(&mut f, &ip_packet[..28]).expect("icmp");
    f
}

fn dns_query(id: u16, name: &str, response_code: Option<u8>) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(rcode) = response_code {
        b[2] = 0x81;
        b[3] = 0x80 | rcode;
    }
    b
}

/// What the engine found and counted.
fn run(capture: &Capture, shards: usize, several_interfaces: bool) -> (Vec<String>, Stats) {
    let cfg = EngineConfig { syn_timeout_ms: 3_000, dns_timeout_ms: 5_000, ..EngineConfig::default() };
    let mut out: Vec<Entry> = Vec::new();
    let at = |ms: u64| Timestamp::from_millis(T0_MS + ms);
    let mut e: Box<dyn Analyzer> =
        if shards == 1 { Box::new(Engine::new(cfg)) } else { Box::new(ShardedInline::new(cfg, shards)) };
    if several_interfaces {
        e.expect_several_interfaces();
    }
    for (iface, ms, f) in capture {
        e.handle_frame_on(*iface, LinkType::Ethernet, f, at(*ms), &mut out).expect("decodes");
    }
    e.finish(&mut out);
    let stats = e.stats();
    (out.iter().map(|e| serde_json::to_string(e).expect("json")).collect(), stats)
}

/// One engine's entries and counters, after checking 2, 3 and 4 shards find exactly the same.
fn same_whatever_the_shards(capture: &Capture, several_interfaces: bool) -> (Vec<Entry>, Stats) {
    let (one, one_stats) = run(capture, 1, several_interfaces);
    for n in [2, 3, 4] {
        let (sharded, stats) = run(capture, n, several_interfaces);
        assert_eq!(sharded.len(), one.len(), "{n} shards: a different number of entries");
        for (a, b) in one.iter().zip(&sharded) {
            assert_eq!(a, b, "{n} shards");
        }
        assert_eq!(stats, one_stats, "{n} shards: the counters");
    }
    (one.iter().map(|j| serde_json::from_str(j).expect("entry")).collect(), one_stats)
}

#[test]
fn icmp_errors_reach_the_shard_of_the_flow_they_quote() {
    // SYNs rejected by a router (administratively prohibited) and datagrams to a closed port: the ICMP
    // error's own addresses (router, client) hash elsewhere than the flow it quotes.
    let router = ip("10.0.0.254");
    let mut cap = Capture::new();
    for i in 0..FLOWS {
        let client = (ip("10.0.1.1"), 41_000 + i);
        let server = (ip("10.0.2.2"), 8_000 + i);
        let syn = tcp_frame(client, server, SYN, 1000, 0, b"");
        cap.push((0, u64::from(i), syn.clone()));
        cap.push((0, u64::from(i) + 1, icmp_error(router, &syn, 13)));
        let datagram = udp((client.0, 50_000 + i), (server.0, 9), b"hello");
        cap.push((0, u64::from(i) + 2, datagram.clone()));
        cap.push((0, u64::from(i) + 3, icmp_error(server.0, &datagram, 3)));
    }
    let (out, _) = same_whatever_the_shards(&cap, false);
    let unreachable = common::tcp_errors(&out)
        .into_iter()
        .filter(|t| *t == (TcpState::SynSent, Some(SynReason::Unreachable), None))
        .count();
    assert_eq!(unreachable, usize::from(FLOWS), "every rejected SYN is decided by its ICMP error");
    assert_eq!(out.iter().filter(|e| e.icmp.is_some()).count(), 2 * usize::from(FLOWS));
}

#[test]
fn a_dns_clients_search_steps_on_new_sockets_stay_together() {
    // Each client walks `svc` through two search domains (NXDOMAIN, each from a new socket) to the
    // answer: the NXDOMAINs are steps, not errors — which only the shard that saw all three can tell.
    let server = (ip("10.96.0.10"), 53);
    let mut cap = Capture::new();
    for i in 0..FLOWS {
        let client = ip(&format!("10.0.3.{}", i + 1));
        let ms = u64::from(i) * 10;
        let names = ["svc.default.svc.cluster.local", "svc.svc.cluster.local", "svc"];
        for (step, name) in names.iter().enumerate() {
            let sock = (client, 33_000 + (step as u16) * 100 + i);
            let code = if step < 2 { 3 } else { 0 };
            let id = 100 + step as u16;
            cap.push((0, ms + step as u64 * 2, udp(sock, server, &dns_query(id, name, None))));
            cap.push((0, ms + step as u64 * 2 + 1, udp(server, sock, &dns_query(id, name, Some(code)))));
        }
    }
    let (out, stats) = same_whatever_the_shards(&cap, false);
    assert_eq!(stats.dns_search_steps, 2 * u64::from(FLOWS));
    assert_eq!(out.iter().filter(|e| e.error.is_some()).count(), 0, "no NXDOMAIN reported as an error");
}

#[test]
fn the_two_tuples_of_a_natted_connection_are_decided_together() {
    // Service connections seen on the client's veth (to the ClusterIP) and the backend's (after DNAT),
    // refused by the backend: one entry each, under the backend, naming the Service.
    let (service, backend) = ((ip("10.96.0.20"), 80), (ip("10.244.0.9"), 8080));
    let mut cap = Capture::new();
    for i in 0..FLOWS {
        let client = (ip("10.244.0.5"), 42_000 + i);
        let ms = u64::from(i) * 5;
        // Initial sequence numbers differ (they are random): copies are told apart by them.
        let isn = 1000 + u32::from(i) * 7919;
        cap.push((1, ms, tcp_frame(client, service, SYN, isn, 0, b"")));
        cap.push((2, ms, tcp_frame(client, backend, SYN, isn, 0, b"")));
        cap.push((2, ms + 1, tcp_frame(backend, client, RST | ACK, 0, isn + 1, b"")));
        cap.push((1, ms + 1, tcp_frame(service, client, RST | ACK, 0, isn + 1, b"")));
    }
    let (out, stats) = same_whatever_the_shards(&cap, true);
    assert_eq!(out.len(), usize::from(FLOWS), "one report per connection");
    for e in &out {
        assert_eq!(e.tcp.as_ref().map(|t| (t.state, t.reason)), Some((TcpState::SynSent, Some(SynReason::Refused))));
        assert_eq!((e.dst.ip, e.dst.port), (backend.0, Some(backend.1)));
        assert_eq!(e.service.as_ref().map(|s| (s.ip, s.port)), Some(service));
    }
    assert_eq!(stats.nat_copies, 2 * u64::from(FLOWS));
}

#[test]
fn the_tuple_seen_both_ways_is_kept_whichever_shard_saw_it_first() {
    // The node calls a Service backed by a pod on the node: the request leaves DNATed and SNATed (seen
    // on the bridge and the pod's veth); the reply is seen on the veth, and on the bridge half translated
    // back. Only the first tuple is seen both ways — which the shard deciding must know of both tuples.
    let pod = (ip("10.88.0.3"), 8080);
    let get = b"GET / HTTP/1.1\r\nHost: s\r\n\r\n";
    let unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    let mut cap = Capture::new();
    for i in 0..FLOWS {
        let (snat, host) = ((ip("10.88.0.1"), 5_000 + i), (ip("192.0.2.2"), 48_000 + i));
        let ms = u64::from(i) * 10;
        let (c, s) = (1000 + u32::from(i) * 7919, 5000 + u32::from(i) * 104_729);
        let both = |cap: &mut Capture, ms, f: Vec<u8>| {
            cap.push((1, ms, f.clone()));
            cap.push((2, ms, f));
        };
        both(&mut cap, ms, tcp_frame(snat, pod, SYN, c, 0, b""));
        cap.push((2, ms + 1, tcp_frame(pod, snat, SYN | ACK, s, c + 1, b"")));
        cap.push((1, ms + 1, tcp_frame(pod, host, SYN | ACK, s, c + 1, b"")));
        both(&mut cap, ms + 2, tcp_frame(snat, pod, ACK, c + 1, s + 1, b""));
        both(&mut cap, ms + 3, tcp_frame(snat, pod, PSH | ACK, c + 1, s + 1, get));
        let acked = c + 1 + get.len() as u32;
        cap.push((2, ms + 4, tcp_frame(pod, snat, PSH | ACK, s + 1, acked, unavailable)));
        cap.push((1, ms + 4, tcp_frame(pod, host, PSH | ACK, s + 1, acked, unavailable)));
    }
    let (out, _) = same_whatever_the_shards(&cap, true);
    assert_eq!(out.len(), usize::from(FLOWS), "one report per connection");
    for e in &out {
        assert_eq!(e.response.as_ref().map(|r| r.status), Some(503));
        assert_eq!(e.src.ip, ip("10.88.0.1"), "the tuple seen both ways");
    }
}

#[test]
fn a_server_seen_answering_a_syn_decides_roles_on_every_shard() {
    // A server listening on a high port (50,000) answers one handshake; then connections to it from lower
    // ports are picked up mid-stream and reset by it. The port guess would take the client for the
    // server; knowing the listener (learnt on whichever shard had the handshake) says otherwise.
    let server = (ip("10.0.4.4"), 50_000);
    let mut cap = Capture::new();
    let first = (ip("10.0.4.1"), 60_000);
    cap.push((0, 0, tcp_frame(first, server, SYN, 1000, 0, b"")));
    cap.push((0, 1, tcp_frame(server, first, SYN | ACK, 5000, 1001, b"")));
    cap.push((0, 2, tcp_frame(first, server, ACK, 1001, 5001, b"")));
    for i in 0..FLOWS {
        let client = (ip("10.0.4.2"), 20_000 + i);
        let ms = 10 + u64::from(i) * 3;
        cap.push((0, ms, tcp_frame(client, server, PSH | ACK, 7000, 9000, b"\x00\x01ping")));
        cap.push((0, ms + 1, tcp_frame(server, client, PSH | ACK, 9000, 7006, b"\x00\x02pong")));
        cap.push((0, ms + 2, tcp_frame(server, client, RST | ACK, 9006, 7006, b"")));
    }
    let (out, _) = same_whatever_the_shards(&cap, false);
    let by_server = out
        .iter()
        .filter(|e| e.tcp.as_ref().is_some_and(|t| t.state == TcpState::Reset) && e.dst.port == Some(server.1))
        .count();
    assert_eq!(by_server, usize::from(FLOWS), "reset by the server, whose port is the destination");
}

#[test]
fn a_mixed_capture_with_timers_is_the_same_in_order() {
    // Unanswered SYNs, refused ones, HTTP errors and unanswered requests over 20 s of capture: entries
    // found by the timers of many sweeps, interleaved with entries found by packets.
    let mut cap = Capture::new();
    let server = (ip("10.0.5.5"), 80);
    for i in 0..200u16 {
        let client = (ip(&format!("10.0.6.{}", i % 50 + 1)), 30_000 + i);
        let ms = u64::from(i) * 100;
        match i % 4 {
            0 => cap.push((0, ms, tcp_frame(client, server, SYN, 1000, 0, b""))),
            1 => {
                cap.push((0, ms, tcp_frame(client, server, SYN, 1000, 0, b"")));
                cap.push((0, ms + 1, tcp_frame(server, client, RST | ACK, 0, 1001, b"")));
            }
            _ => {
                cap.push((0, ms, tcp_frame(client, server, SYN, 1000, 0, b"")));
                cap.push((0, ms + 1, tcp_frame(server, client, SYN | ACK, 5000, 1001, b"")));
                cap.push((0, ms + 2, tcp_frame(client, server, ACK, 1001, 5001, b"")));
                let req = b"GET / HTTP/1.1\r\nHost: s\r\n\r\n";
                cap.push((0, ms + 3, tcp_frame(client, server, PSH | ACK, 1001, 5001, req)));
                if i % 4 == 2 {
                    let resp = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
                    cap.push((0, ms + 4, tcp_frame(server, client, PSH | ACK, 5001, 1001 + req.len() as u32, resp)));
                }
            }
        }
    }
    let (out, _) = same_whatever_the_shards(&cap, false);
    let count = |f: &dyn Fn(&Entry) -> bool| out.iter().filter(|e| f(e)).count();
    assert_eq!(count(&|e| e.tcp.as_ref().is_some_and(|t| t.reason == Some(SynReason::Timeout))), 50);
    assert_eq!(count(&|e| e.tcp.as_ref().is_some_and(|t| t.reason == Some(SynReason::Refused))), 50);
    assert_eq!(count(&|e| e.response.as_ref().is_some_and(|r| r.status == 500)), 50);
}

#[test]
fn natted_connections_in_any_order_with_copies_missing_are_the_same() {
    // Service connections seen before DNAT (interface 1) and after (interface 2), in random shapes:
    // either copy first, copies missing on one side (capture started late there, or dropped), handshakes
    // refused, answered with 200 or 503, or left unanswered — the cases where one tuple is seen before the
    // pair is known. Whatever happened, shards must agree with one engine.
    let service = (ip("10.96.0.30"), 80);
    let backends = [(ip("10.244.1.7"), 8080), (ip("10.244.1.8"), 8080)];
    let get = b"GET /x HTTP/1.1\r\nHost: s\r\n\r\n";
    for seed in 1..=150u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut cap = Capture::new();
        for i in 0..16u16 {
            let client = (ip(&format!("10.244.1.{}", 20 + rng.below(8))), 40_000 + i);
            let backend = backends[rng.below(2)];
            let (c, s) = (rng.next() as u32, rng.next() as u32);
            let start = rng.below(2_000) as u64;
            // Packets of the connection, each (ms, from the client, flags, seq, ack, payload).
            let mut packets = vec![(0, true, SYN, c, 0, Vec::new())];
            match rng.below(4) {
                0 => packets.push((1, false, RST | ACK, 0, c.wrapping_add(1), Vec::new())),
                1 => {}
                _ => {
                    packets.push((1, false, SYN | ACK, s, c.wrapping_add(1), Vec::new()));
                    packets.push((2, true, ACK, c.wrapping_add(1), s.wrapping_add(1), Vec::new()));
                    packets.push((3, true, PSH | ACK, c.wrapping_add(1), s.wrapping_add(1), get.to_vec()));
                    if rng.chance(70) {
                        let status: &[u8] = if rng.chance(50) { b"200 OK" } else { b"503 Unavailable" };
                        let mut resp = b"HTTP/1.1 ".to_vec();
                        resp.extend_from_slice(status);
                        resp.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
                        let acked = c.wrapping_add(1).wrapping_add(get.len() as u32);
                        packets.push((4, false, PSH | ACK, s.wrapping_add(1), acked, resp));
                    }
                }
            }
            // Interface 1 may start capturing late (its first packets missing), and any copy may be lost.
            let late = if rng.chance(30) { rng.below(packets.len()) } else { 0 };
            for (n, (ms, from_client, flags, seq, ack, payload)) in packets.into_iter().enumerate() {
                let (before, after) = if from_client {
                    ((client, service), (client, backend))
                } else {
                    ((service, client), (backend, client))
                };
                let first_after = rng.chance(50);
                let t = start + ms * 3;
                let pre = (n >= late && !rng.chance(10))
                    .then(|| (1, t + u64::from(first_after), tcp_frame(before.0, before.1, flags, seq, ack, &payload)));
                let post = (!rng.chance(10))
                    .then(|| (2, t + u64::from(!first_after), tcp_frame(after.0, after.1, flags, seq, ack, &payload)));
                cap.extend(pre.into_iter().chain(post));
            }
        }
        // In capture order (a stable sort: copies at one time stay in the order made).
        cap.sort_by_key(|(_, ms, _)| *ms);
        let (one, one_stats) = run(&cap, 1, true);
        for n in [2, 3, 4] {
            let (sharded, stats) = run(&cap, n, true);
            assert_eq!(sharded, one, "seed {seed}: {n} shards found otherwise than one engine");
            assert_eq!(stats, one_stats, "seed {seed}: {n} shards counted otherwise");
        }
    }
}

#[test]
fn pairs_decided_on_two_shards_and_linked_later_are_counted() {
    // Addresses rewritten mid-stream: two pairs of tuples (A~B, then C~D) are each routed to a shard of
    // their own before a packet seen as B on one interface and C on the other links them. What each shard
    // decided of its pair stays there; shards cannot join them, and say so.
    let mut cap = Capture::new();
    for i in 0..FLOWS {
        let ms = u64::from(i) * 10;
        let isn = 1000 + u32::from(i) * 7919;
        let a = ((ip("10.0.7.1"), 40_000 + i), (ip("10.96.0.7"), 80));
        let b = ((ip("10.0.7.1"), 40_000 + i), (ip("10.0.8.8"), 8080));
        let c = ((ip("10.0.9.1"), 41_000 + i), (ip("10.96.0.9"), 80));
        let d = ((ip("10.0.9.1"), 41_000 + i), (ip("10.0.8.9"), 8080));
        cap.push((1, ms, tcp_frame(a.0, a.1, SYN, isn, 0, b"")));
        cap.push((2, ms, tcp_frame(b.0, b.1, SYN, isn, 0, b"")));
        cap.push((1, ms + 1, tcp_frame(c.0, c.1, SYN, isn + 7, 0, b"")));
        cap.push((2, ms + 1, tcp_frame(d.0, d.1, SYN, isn + 7, 0, b"")));
        cap.push((2, ms + 2, tcp_frame(b.0, b.1, PSH | ACK, isn + 1, 5, b"link")));
        cap.push((1, ms + 2, tcp_frame(c.0, c.1, PSH | ACK, isn + 1, 5, b"link")));
    }
    let (_, one) = run(&cap, 1, true);
    let (_, three) = run(&cap, 3, true);
    assert_eq!(one.nat_tuples_apart, 0, "one engine keeps every tuple together");
    assert!(three.nat_tuples_apart > 0, "some of the 64 linked pairs were on two shards: {three:?}");
    assert!(three.nat_tuples_apart <= u64::from(FLOWS));
}
