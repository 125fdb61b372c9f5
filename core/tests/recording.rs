//! Errors-only recording: an error entry's flow, up to and including the error, as a pcap.

mod common;

use common::*;
use faultline_core::pcap::PcapReader;
use faultline_core::wire::{decode, Decoded, LinkType, Transport};
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};

fn frames(pcap: &[u8]) -> Vec<(u8, u16)> {
    let mut r = PcapReader::new(pcap).expect("a pcap");
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().expect("readable") {
        match decode(rec.link_type, rec.data, rec.ts) {
            Ok(Decoded::Packet(p)) => match p.transport {
                Transport::Tcp(t) => out.push((t.flags.0, t.dst_port)),
                Transport::Icmp(m) => out.push((m.icmp_type, 0)),
                Transport::Udp(u) => out.push((0, u.dst_port)),
            },
            other => panic!("{other:?}"),
        }
    }
    out
}

#[test]
fn a_refused_connection_comes_with_its_syn_and_rst() {
    let mut s = Sim::with(EngineConfig { record_errors: true, ..EngineConfig::default() });
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, RST | ACK, 0, 1001, b"");
    let rec = s.engine.take_recordings();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].0, s.out[0].id, "keyed by the entry's id");
    assert_eq!(frames(&rec[0].1), vec![(SYN, 80), (RST | ACK, 40000)]);
    assert!(s.engine.take_recordings().is_empty(), "taken once");
}

#[test]
fn healthy_flows_are_not_recorded_and_recording_is_off_by_default() {
    let mut s = Sim::with(EngineConfig { record_errors: true, ..EngineConfig::default() });
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET / HTTP/1.1\r\n\r\n");
    s.s(11, PSH | ACK, 5001, 1019, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert!(s.engine.take_recordings().is_empty());

    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, RST | ACK, 0, 1001, b"");
    assert!(s.engine.take_recordings().is_empty());
}

#[test]
fn an_icmp_error_comes_with_the_datagram_it_answers() {
    let mut engine = Engine::new(EngineConfig { record_errors: true, ..EngineConfig::default() });
    let mut out = Vec::new();
    let mut dgram = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(40000, 53)
        .write(&mut dgram, b"query")
        .expect("builds");
    engine.handle_frame(LinkType::Ethernet, &dgram, Timestamp(1), &mut out).expect("decodes");
    let mut icmp = Vec::new();
    let ty = etherparse::Icmpv4Type::Unknown { type_u8: 3, code_u8: 3, bytes5to8: [0; 4] };
    etherparse::PacketBuilder::ethernet2([4; 6], [2; 6])
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .icmpv4(ty)
        .write(&mut icmp, &dgram[14..14 + 28])
        .expect("builds");
    engine.handle_frame(LinkType::Ethernet, &icmp, Timestamp(2), &mut out).expect("decodes");
    let rec = engine.take_recordings();
    assert_eq!(rec.len(), 1);
    assert_eq!(frames(&rec[0].1), vec![(0, 53), (3, 0)]);
}
