//! Cross-node pod traffic on a node's uplink is encapsulated by the CNI: VXLAN (4789, Flannel's 8472),
//! Geneve (6081) or IP-in-IP. The inner flows are the ones analysed: a connection refused between two pods
//! is the same entry whether it was captured on a pod's veth or inside a tunnel on the uplink.

mod common;

use common::{tcp_frame, ACK, RST, SYN};
use etherparse::PacketBuilder;
use faultline_core::entry::{SynReason, TcpState};
use faultline_core::wire::LinkType;
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};

const POD_A: ([u8; 4], u16) = ([10, 244, 1, 5], 41_000);
const POD_B: ([u8; 4], u16) = ([10, 244, 2, 7], 8080);

fn ip(a: [u8; 4]) -> std::net::IpAddr {
    std::net::IpAddr::from(a)
}

/// A frame from node 1 to node 2 carrying `payload` over UDP to `port`.
fn udp_outer(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([192, 0, 2, 11], [192, 0, 2, 12], 64)
        .udp(55_555, port)
        .write(&mut f, payload)
        .expect("outer");
    f
}

fn vxlan(port: u16, inner: &[u8]) -> Vec<u8> {
    let mut p = vec![0x08, 0, 0, 0, 0, 0, 1, 0]; // I flag, VNI 1
    p.extend_from_slice(inner);
    udp_outer(port, &p)
}

fn geneve(inner: &[u8], ethernet: bool) -> Vec<u8> {
    // Version 0, one 4-byte option, protocol type, VNI; then the option (class, type, length 0).
    let proto: u16 = if ethernet { 0x6558 } else { 0x0800 };
    let mut p = vec![0x01, 0, (proto >> 8) as u8, proto as u8, 0, 0, 1, 0, 0x01, 0x02, 0x80, 0];
    p.extend_from_slice(inner);
    udp_outer(6081, &p)
}

fn ipip(inner_ip: &[u8]) -> Vec<u8> {
    let mut f = vec![4u8; 6];
    f.extend([2u8; 6]);
    f.extend([0x08, 0x00]);
    let total = 20 + inner_ip.len();
    let mut h = [0x45u8, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 4, 0, 0, 192, 0, 2, 11, 192, 0, 2, 12];
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend(h);
    f.extend(inner_ip);
    f
}

fn checksum(h: &[u8]) -> u16 {
    let mut s: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A refused connection from pod A to pod B, each frame wrapped by `wrap`, through a fresh engine.
fn refused_through(wrap: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<faultline_core::Entry> {
    let (a, b) = ((ip(POD_A.0), POD_A.1), (ip(POD_B.0), POD_B.1));
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    for (ms, frame) in [(0, tcp_frame(a, b, SYN, 1000, 0, b"")), (1, tcp_frame(b, a, RST | ACK, 0, 1001, b""))] {
        let ts = Timestamp::from_millis(common::T0_MS + ms);
        engine.handle_frame(LinkType::Ethernet, &wrap(&frame), ts, &mut out).expect("decodes");
    }
    engine.finish(&mut out);
    out
}

fn assert_refused_between_the_pods(out: &[faultline_core::Entry], how: &str) {
    assert_eq!(
        common::tcp_errors(out),
        [(TcpState::SynSent, Some(SynReason::Refused), Some("server"))],
        "{how}: {out:?}"
    );
    assert_eq!((out[0].src.ip, out[0].dst.ip), (ip(POD_A.0), ip(POD_B.0)), "{how}");
}

#[test]
fn vxlan_on_both_ports_is_decapsulated() {
    for port in [4789, 8472] {
        assert_refused_between_the_pods(&refused_through(&|f| vxlan(port, f)), &format!("vxlan {port}"));
    }
}

#[test]
fn geneve_with_ethernet_or_ip_inside_is_decapsulated() {
    assert_refused_between_the_pods(&refused_through(&|f| geneve(f, true)), "geneve ethernet");
    assert_refused_between_the_pods(&refused_through(&|f| geneve(&f[14..], false)), "geneve ip");
}

#[test]
fn ip_in_ip_is_decapsulated() {
    assert_refused_between_the_pods(&refused_through(&|f| ipip(&f[14..])), "ipip");
}

#[test]
fn udp_on_a_tunnel_port_that_is_not_a_tunnel_stays_udp_and_nesting_is_bounded() {
    // No VXLAN "I" flag: an ordinary datagram to port 4789.
    let mut engine = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    let plain = udp_outer(4789, b"\x00\x00\x00\x00\x00\x00\x00\x00hello");
    engine.handle_frame(LinkType::Ethernet, &plain, Timestamp(1), &mut out).expect("decodes");
    assert_eq!(engine.stats().udp_datagrams, 1);
    // VXLAN in VXLAN in … five deep: decoding stops, counted.
    let mut f = tcp_frame((ip(POD_A.0), 1), (ip(POD_B.0), 2), ACK, 1, 1, b"");
    for _ in 0..5 {
        f = vxlan(4789, &f);
    }
    engine.handle_frame(LinkType::Ethernet, &f, Timestamp(2), &mut out).expect("decodes");
    assert_eq!(engine.stats().tunnels_too_deep, 1);
    assert_eq!(engine.stats().tcp_segments, 0);
}
