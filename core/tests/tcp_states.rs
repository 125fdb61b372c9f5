//! One test per row of SPEC §3.1, and one per non-error it names, on crafted packet sequences.

mod common;

use common::*;
use faultline_core::entry::{ErrorType, SynReason, TcpState};
use faultline_core::EngineConfig;

#[test]
fn syn_answered_by_rst_is_refused_not_reset() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, RST | ACK, 0, 1001, b"");
    let out = s.finish();
    assert_eq!(tcp_errors(&out), vec![(TcpState::SynSent, Some(SynReason::Refused), Some("server"))]);
    let e = &out[0];
    assert_eq!(e.error.as_ref().map(|e| (e.kind, e.msg.as_str())), Some((ErrorType::Connection, "SynSent")));
    assert_eq!((e.src.port, e.dst.port), (Some(40000), Some(80)), "src is the client");
    assert_eq!(e.elapsed_time, 1.0);
}

#[test]
fn unanswered_syn_with_retransmissions_is_one_timeout() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.c(1000, SYN, 1000, 0, b"");
    s.c(3000, SYN, 1000, 0, b"");
    s.c(7000, SYN, 1000, 0, b"");
    s.c(15_000, SYN, 1000, 0, b"");
    s.c(31_000, SYN, 1000, 0, b"");
    s.advance(40_000);
    assert_eq!(s.tcp_errors(), vec![(TcpState::SynSent, Some(SynReason::Timeout), None)]);
    assert_eq!(s.out[0].elapsed_time, 3000.0, "decided at synTimeoutMs");
    assert_eq!(s.finish().len(), 1);
}

#[test]
fn syn_timeout_follows_the_configured_value() {
    let mut s = Sim::with(EngineConfig { syn_timeout_ms: 500, ..EngineConfig::default() });
    s.c(0, SYN, 1000, 0, b"");
    s.advance(400);
    assert!(s.out.is_empty());
    s.advance(600);
    assert_eq!(s.tcp_errors(), vec![(TcpState::SynSent, Some(SynReason::Timeout), None)]);
}

#[test]
fn answered_syn_retransmission_is_not_an_error() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.c(1000, SYN, 1000, 0, b"");
    s.s(1001, SYN | ACK, 5000, 1001, b"");
    s.c(1002, ACK, 1001, 5001, b"");
    s.c(1003, FIN | ACK, 1001, 5001, b"");
    s.s(1004, FIN | ACK, 5001, 1002, b"");
    s.c(1005, ACK, 1002, 5002, b"");
    assert!(s.finish().is_empty());
}

#[test]
fn rst_on_established_connection_is_reset_by_its_sender() {
    for (from_client, by) in [(true, "client"), (false, "server")] {
        let mut s = Sim::new();
        s.handshake(0);
        s.c(10, PSH | ACK, 1001, 5001, b"hello");
        s.s(11, ACK, 5001, 1006, b"");
        s.tcp(20, from_client, RST | ACK, if from_client { 1006 } else { 5001 }, 0, b"");
        // Further RSTs on the same connection are the same reset.
        s.tcp(21, from_client, RST, if from_client { 1006 } else { 5001 }, 0, b"");
        let out = s.finish();
        assert_eq!(tcp_errors(&out), vec![(TcpState::Reset, None, Some(by))]);
        assert_eq!(out.len(), 1);
    }
}

#[test]
fn peer_that_never_closes_after_fin_is_close_wait() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, ACK, 5001, 1002, b"");
    s.advance(5010);
    assert!(s.tcp_errors().is_empty(), "closeTimeoutMs not yet over");
    // Timers are checked every quarter of the shortest timeout; the entry carries the exact times.
    s.advance(6000);
    assert_eq!(s.tcp_errors(), vec![(TcpState::CloseWait, None, Some("server"))]);
    assert_eq!(s.out[0].elapsed_time, 5000.0);
    assert_eq!(s.finish().len(), 1, "reported once");
}

#[test]
fn data_after_the_fin_restarts_the_close_wait_clock_but_keepalives_do_not() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, ACK, 5001, 1002, b"");
    s.s(3000, PSH | ACK, 5001, 1002, b"late data");
    s.c(3001, ACK, 1002, 5010, b"");
    // A keep-alive repeats the last byte's sequence number: no new data.
    s.s(6000, ACK, 5009, 1002, b"");
    s.advance(7999);
    assert!(s.tcp_errors().is_empty());
    s.advance(9000);
    assert_eq!(s.tcp_errors(), vec![(TcpState::CloseWait, None, Some("server"))]);
    assert_eq!(s.out[0].timestamp.nanos(), (T0_MS + 3000) * 1_000_000, "quiet since the late data");
}

#[test]
fn unacknowledged_last_fin_is_last_ack() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, ACK, 5001, 1002, b"");
    s.s(12, FIN | ACK, 5001, 1002, b"");
    s.s(300, FIN | ACK, 5001, 1002, b""); // retransmitted: the last ACK was lost
    s.advance(5013);
    assert_eq!(s.tcp_errors(), vec![(TcpState::LastAck, None, Some("server"))]);
    assert_eq!(s.finish().len(), 1);
}

#[test]
fn graceful_and_simultaneous_closes_are_not_errors() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, FIN | ACK, 5001, 1002, b"");
    s.c(12, ACK, 1002, 5002, b"");
    s.advance(60_000);
    assert!(s.out.is_empty());

    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(10, FIN | ACK, 5001, 1001, b"");
    s.c(11, ACK, 1002, 5002, b"");
    s.s(11, ACK, 5002, 1002, b"");
    assert!(s.finish().is_empty());
}

#[test]
fn keepalives_on_an_idle_connection_are_not_errors() {
    let mut s = Sim::new();
    s.handshake(0);
    for i in 1..10 {
        s.c(i * 10_000, ACK, 1000, 5001, b"");
        s.s(i * 10_000 + 1, ACK, 5001, 1001, b"");
    }
    assert!(s.finish().is_empty());
}

#[test]
fn port_reuse_starts_a_new_connection() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, FIN | ACK, 5001, 1002, b"");
    s.c(12, ACK, 1002, 5002, b"");
    // Same 4-tuple, new ISN: a new attempt, refused this time.
    s.c(100, SYN, 90_000, 0, b"");
    s.s(101, RST | ACK, 0, 90_001, b"");
    assert_eq!(s.finish().len(), 1);
}

#[test]
fn late_rst_after_a_graceful_close_is_absorbed() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, FIN | ACK, 5001, 1002, b"");
    s.c(12, ACK, 1002, 5002, b"");
    s.s(500, RST, 5002, 0, b"");
    assert!(s.finish().is_empty());
}

#[test]
fn mid_stream_pickup_reports_resets_with_the_client_as_source() {
    let mut s = Sim::new();
    // First packet seen: server data, no handshake.
    s.s(0, PSH | ACK, 777_000, 333_000, b"some bytes");
    s.c(1, ACK, 333_000, 777_010, b"");
    s.s(2, RST | ACK, 777_010, 333_000, b"");
    let out = s.finish();
    assert_eq!(tcp_errors(&out), vec![(TcpState::Reset, None, Some("server"))]);
    assert_eq!(out[0].src.port, Some(40000));
}

#[test]
fn lone_rst_of_an_unknown_connection_is_counted_not_reported() {
    let mut s = Sim::new();
    s.s(0, RST, 1, 0, b"");
    assert_eq!(s.engine.stats().orphan_resets, 1);
    assert!(s.finish().is_empty());
}

#[test]
fn end_of_input_resolves_pending_states() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    let out = s.finish();
    assert_eq!(tcp_errors(&out), vec![(TcpState::SynSent, Some(SynReason::Timeout), None)]);
    assert_eq!(out[0].elapsed_time, 0.0, "decided at the end of a capture that lasted 0 ms");

    let mut s = Sim::new();
    s.handshake(0);
    s.s(10, FIN | ACK, 5001, 1001, b"");
    s.c(11, ACK, 1001, 5002, b"");
    assert_eq!(tcp_errors(&s.finish()), vec![(TcpState::CloseWait, None, Some("client"))]);
}

#[test]
fn flow_table_stays_within_its_capacity() {
    let mut s = Sim::with(EngineConfig { max_flows: 100, ..EngineConfig::default() });
    for i in 0..1000u16 {
        s.client.1 = 10_000 + i;
        s.c(u64::from(i), SYN, 1, 0, b"");
    }
    assert!(s.engine.flow_count() <= 100, "{}", s.engine.flow_count());
    assert!(s.engine.stats().flows_evicted >= 900);
}

/// A graceful close at 12 ms, then the connection's 4-tuple is remembered for a minute (SPEC §3.1).
fn close_gracefully(s: &mut Sim, port: u16, ms: u64) {
    s.client.1 = port;
    s.handshake(ms);
    s.c(ms + 10, FIN | ACK, 1001, 5001, b"");
    s.s(ms + 11, FIN | ACK, 5001, 1002, b"");
    s.c(ms + 12, ACK, 1002, 5002, b"");
}

#[test]
fn a_closed_connection_is_remembered_for_a_minute_after_its_last_packet_then_forgotten() {
    let mut s = Sim::new();
    close_gracefully(&mut s, 40_000, 0);
    assert_eq!(s.engine.flow_count(), 1, "lingering");
    s.advance(40_000);
    // A late retransmission of the last FIN is absorbed, not taken for a new mid-stream connection,
    // and a final RST after it is not a second report either.
    s.s(40_001, FIN | ACK, 5001, 1002, b"");
    s.c(40_002, RST, 1002, 0, b"");
    s.advance(61_000);
    assert_eq!(s.engine.flow_count(), 1, "late packets extend the lingering");
    assert_eq!(s.engine.stats().flows_created, 1);
    s.advance(100_100);
    assert_eq!(s.engine.flow_count(), 0, "forgotten a minute after the last packet");
    assert!(s.finish().is_empty());
}

#[test]
fn lingering_flows_make_room_before_live_ones() {
    let mut s = Sim::one(EngineConfig { max_flows: 16, ..EngineConfig::default() });
    for i in 0..16 {
        close_gracefully(&mut s, 30_000 + i, u64::from(i));
    }
    assert_eq!(s.engine.flow_count(), 16);
    // Eight unanswered attempts need room: closed connections make it, so every attempt is still
    // tracked and reported when its SYN times out.
    for i in 0..8 {
        s.client.1 = 50_000 + i;
        s.c(100 + u64::from(i), SYN, 1000, 0, b"");
    }
    assert!(s.engine.flow_count() <= 16);
    assert!(s.engine.stats().flows_evicted >= 8);
    let out = s.finish();
    assert_eq!(tcp_errors(&out), vec![(TcpState::SynSent, Some(SynReason::Timeout), None); 8]);
}

#[test]
fn ipv6_rows_behave_the_same() {
    let mut s = Sim::new().v6();
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, RST | ACK, 0, 1001, b"");
    s.client.1 = 40001;
    s.handshake(10);
    s.s(20, RST | ACK, 5001, 1001, b"");
    let out = s.finish();
    assert_eq!(
        tcp_errors(&out),
        vec![(TcpState::SynSent, Some(SynReason::Refused), Some("server")), (TcpState::Reset, None, Some("server"))]
    );
    assert_eq!(out[0].src.to_string(), "[2001:db8::1]:40000");
}
