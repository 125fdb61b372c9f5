//! ICMP entries with their quoted flows, and every link layer the analyzer reads.

mod common;

use std::net::IpAddr;

use common::*;
use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder};
use faultline_core::entry::{Protocol, SynReason, TcpState};
use faultline_core::wire::{decode, Decoded, LinkType, Transport};
use faultline_core::Timestamp;

/// An IPv4 ICMP error from `router` to the client, quoting the client's UDP datagram to the server.
fn icmp4_error(router: [u8; 4], ty: Icmpv4Type, quoted_proto: u8) -> Vec<u8> {
    let mut quoted = vec![0x45, 0, 0, 48, 0, 1, 0x40, 0, 63, quoted_proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    quoted.extend([0x9c, 0x40, 0x00, 0x35, 0, 28, 0, 0]); // 40000 -> 53
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(router, [10, 0, 0, 1], 64).icmpv4(ty);
    let mut f = Vec::new();
    b.write(&mut f, &quoted).expect("builds");
    f
}

#[test]
fn every_destination_unreachable_code_becomes_a_named_entry_with_the_original_flow() {
    let mut s = Sim::new();
    for code in 0..=15u8 {
        let ty = Icmpv4Type::Unknown { type_u8: 3, code_u8: code, bytes5to8: [0, 0, 0x05, 0xdc] };
        s.frame(u64::from(code), &icmp4_error([10, 0, 0, 254], ty, 17));
    }
    let out = s.finish();
    assert_eq!(out.len(), 16);
    for (code, e) in out.iter().enumerate() {
        let icmp = e.icmp.as_ref().expect("icmp");
        assert_eq!((e.protocol, icmp.version, icmp.icmp_type, icmp.code as usize), (Protocol::Icmp, 4, 3, code));
        assert_eq!(icmp.type_name, "DestinationUnreachable");
        assert_ne!(icmp.code_name, "Unknown");
        let o = icmp.original.as_ref().expect("quoted flow");
        assert_eq!((o.protocol.as_str(), o.src.port, o.dst.port), ("udp", 40000, 53));
        assert_eq!(e.src.ip, "10.0.0.254".parse::<IpAddr>().expect("ip"), "src is the ICMP sender");
        assert!(e.error.is_none());
    }
    assert_eq!(out[3].icmp.as_ref().map(|i| i.code_name.as_str()), Some("Port"));
    assert_eq!(out[13].icmp.as_ref().map(|i| i.code_name.as_str()), Some("CommunicationAdministrativelyProhibited"));
    assert_eq!(out[4].icmp.as_ref().and_then(|i| i.mtu), Some(1500));
}

#[test]
fn echo_is_not_an_entry_unless_asked_for() {
    let mut s = Sim::new();
    let echo = Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 1, seq: 1 });
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).icmpv4(echo);
    let mut f = Vec::new();
    b.write(&mut f, b"ping").expect("builds");
    s.frame(0, &f);
    assert!(s.finish().is_empty());
}

#[test]
fn icmp_answer_to_a_syn_makes_it_syn_sent_unreachable() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    // The router rejects it, quoting the SYN (IP header + first 8 TCP bytes).
    let mut quoted = vec![0x45, 0, 0, 60, 0, 1, 0x40, 0, 63, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    quoted.extend([0x9c, 0x40, 0x00, 0x50, 0, 0, 0x03, 0xe8]);
    let ty = Icmpv4Type::Unknown { type_u8: 3, code_u8: 13, bytes5to8: [0; 4] };
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 0, 0, 254], [10, 0, 0, 1], 64).icmpv4(ty);
    let mut f = Vec::new();
    b.write(&mut f, &quoted).expect("builds");
    s.frame(1, &f);
    let out = s.finish();
    assert_eq!(tcp_errors(&out), vec![(TcpState::SynSent, Some(SynReason::Unreachable), None)]);
    let icmp = out.iter().find_map(|e| e.icmp.as_ref()).expect("the ICMP entry too");
    assert_eq!(icmp.original.as_ref().map(|o| (o.protocol.as_str(), o.dst.port)), Some(("tcp", 80)));
}

#[test]
fn icmpv6_errors_and_router_messages() {
    let mut s = Sim::new();
    let mut quoted = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
    quoted.extend("2001:db8::1".parse::<std::net::Ipv6Addr>().expect("ip").octets());
    quoted.extend("2001:db8::2".parse::<std::net::Ipv6Addr>().expect("ip").octets());
    quoted.extend([0x9c, 0x40, 0x00, 0x35, 0, 8, 0, 0]);
    let cases = [
        (
            Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::Port),
            "DestinationUnreachable",
            "Port",
        ),
        (Icmpv6Type::PacketTooBig { mtu: 1280 }, "PacketTooBig", "NoCode"),
        (
            Icmpv6Type::TimeExceeded(etherparse::icmpv6::TimeExceededCode::HopLimitExceeded),
            "TimeExceeded",
            "HopLimitExceededInTransit",
        ),
        (Icmpv6Type::Unknown { type_u8: 134, code_u8: 0, bytes5to8: [64, 0, 0, 0] }, "RouterAdvertisement", "NoCode"),
        (Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] }, "", ""),
    ];
    for (i, (ty, _, _)) in cases.iter().enumerate() {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6(
                "2001:db8::fe".parse::<std::net::Ipv6Addr>().expect("ip").octets(),
                "2001:db8::1".parse::<std::net::Ipv6Addr>().expect("ip").octets(),
                64,
            )
            .icmpv6(*ty);
        let mut f = Vec::new();
        b.write(&mut f, &quoted).expect("builds");
        s.frame(i as u64, &f);
    }
    let out = s.finish();
    let got: Vec<(String, String)> =
        out.iter().filter_map(|e| e.icmp.as_ref()).map(|i| (i.type_name.clone(), i.code_name.clone())).collect();
    let want: Vec<(String, String)> = cases[..4].iter().map(|(_, t, c)| (t.to_string(), c.to_string())).collect();
    assert_eq!(got, want, "neighbour solicitation is not an entry");
    assert_eq!(out[1].icmp.as_ref().and_then(|i| i.mtu), Some(1280));
    assert_eq!(out[0].icmp.as_ref().and_then(|i| i.original.as_ref()).map(|o| o.dst.port), Some(53));
}

fn ip_packet() -> Vec<u8> {
    let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 80, 1, 1000).syn();
    let mut p = Vec::new();
    b.write(&mut p, b"").expect("builds");
    p
}

fn assert_syn(link: LinkType, frame: &[u8]) {
    match decode(link, frame, Timestamp(0)) {
        Ok(Decoded::Packet(p)) => {
            let Transport::Tcp(seg) = p.transport else { panic!("{link:?}: not TCP") };
            assert_eq!((seg.src_port, seg.dst_port, seg.flags.syn()), (40000, 80, true), "{link:?}");
        }
        other => panic!("{link:?}: {other:?}"),
    }
}

#[test]
fn every_link_layer_decodes_to_the_same_segment() {
    let ip = ip_packet();
    let eth = |tags: &[[u8; 4]], et: u16| {
        let mut f = vec![4u8; 6];
        f.extend([2u8; 6]);
        for t in tags {
            f.extend(t);
        }
        f.extend(et.to_be_bytes());
        f.extend(&ip);
        f
    };
    assert_syn(LinkType::Ethernet, &eth(&[], 0x0800));
    assert_syn(LinkType::Ethernet, &eth(&[[0x81, 0x00, 0x00, 0x0a]], 0x0800)); // 802.1Q
    assert_syn(LinkType::Ethernet, &eth(&[[0x88, 0xa8, 0x00, 0x0a], [0x81, 0x00, 0x00, 0x14]], 0x0800)); // QinQ
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0, 0x08, 0x00];
    sll.extend(&ip);
    assert_syn(LinkType::LinuxSll, &sll);
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 2, 2, 2, 2, 2, 0, 0];
    sll2.extend(&ip);
    assert_syn(LinkType::LinuxSll2, &sll2);
    assert_syn(LinkType::RawIp, &ip);
    let mut null = vec![2, 0, 0, 0];
    null.extend(&ip);
    assert_syn(LinkType::Loopback, &null);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let src: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().expect("ip").octets();
    let dst: [u8; 16] = "2001:db8::2".parse::<std::net::Ipv6Addr>().expect("ip").octets();
    let mut p = vec![0x60, 0, 0, 0, 0, 28, 0, 64]; // next header: hop-by-hop
    p.extend(src);
    p.extend(dst);
    p.extend([6, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop (PadN) -> TCP
    p.extend([0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    assert_syn(LinkType::RawIp, &p);
}

#[test]
fn truncated_and_hostile_frames_are_errors_not_panics() {
    let ip = ip_packet();
    for cut in 0..ip.len() {
        let _ = decode(LinkType::RawIp, &ip[..cut], Timestamp(0));
    }
    assert!(decode(LinkType::RawIp, &ip[..10], Timestamp(0)).is_err());
    assert!(decode(LinkType::LinuxSll2, &[0; 5], Timestamp(0)).is_err());
    // An IHL pointing past the end, and a TCP data offset past the end.
    let mut bad = ip.clone();
    bad[0] = 0x4f;
    assert!(decode(LinkType::RawIp, &bad, Timestamp(0)).is_err());
    let mut bad = ip.clone();
    bad[32] = 0xf0;
    assert!(decode(LinkType::RawIp, &bad, Timestamp(0)).is_err());
}

#[test]
fn snap_length_cut_tcp_payload_keeps_its_sequence_length() {
    let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 80, 1, 1000).ack(1);
    let mut p = Vec::new();
    b.write(&mut p, &[b'x'; 500]).expect("builds");
    match decode(LinkType::RawIp, &p[..100], Timestamp(0)) {
        Ok(Decoded::Packet(pkt)) => {
            let Transport::Tcp(seg) = pkt.transport else { panic!("not TCP") };
            assert_eq!((seg.payload.len(), seg.seg_len), (60, 500));
        }
        other => panic!("{other:?}"),
    }
}

/// BSD and macOS loopback captures (DLT_NULL) say IPv6 with address family 24, 28 or 30 depending on the
/// system, in the writer's byte order.
#[test]
fn bsd_loopback_ipv6_families_decode_as_ipv6() {
    let b = PacketBuilder::ipv6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0; 16], 64)
        .tcp(40000, 80, 1, 1000)
        .syn();
    let mut ip = Vec::new();
    b.write(&mut ip, b"").expect("builds");
    for af in [24u32, 28, 30] {
        for header in [af.to_le_bytes(), af.to_be_bytes()] {
            let mut frame = header.to_vec();
            frame.extend(&ip);
            match decode(LinkType::Loopback, &frame, Timestamp(0)) {
                Ok(Decoded::Packet(p)) => assert!(p.src.is_ipv6(), "AF {af}: {p:?}"),
                other => panic!("AF {af}: {other:?}"),
            }
        }
    }
}
