//! TLS handshakes (SPEC §3.5), from crafted records: fatal alerts named with the side that sent them, a
//! ClientHello answered by a close or a reset, no ServerHello in time; completed handshakes are no entry.

mod common;

use common::{Sim, ACK, FIN, PSH, RST};
use faultline_core::dissect::{Dissector, Dissectors};
use faultline_core::entry::{Entry, ErrorType, Side};
use faultline_core::EngineConfig;

fn record(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![kind, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut h = vec![kind, 0, (body.len() >> 8) as u8, body.len() as u8];
    h.extend_from_slice(body);
    record(22, &h)
}

/// A ClientHello for `sni` offering TLS 1.3 and 1.2 (supported_versions), or 1.2 only.
fn client_hello(sni: &str, tls13: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[7; 32]);
    b.push(0); // session id
    b.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]); // cipher suites
    b.extend_from_slice(&[1, 0]); // compression
    let mut exts = Vec::new();
    let name = sni.as_bytes();
    let mut sn = Vec::new();
    sn.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sn.push(0);
    sn.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sn.extend_from_slice(name);
    exts.extend_from_slice(&[0, 0]);
    exts.extend_from_slice(&(sn.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sn);
    let versions: &[u8] = if tls13 { &[4, 0x03, 0x04, 0x03, 0x03] } else { &[2, 0x03, 0x03] };
    exts.extend_from_slice(&[0, 43]);
    exts.extend_from_slice(&(versions.len() as u16).to_be_bytes());
    exts.extend_from_slice(versions);
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend_from_slice(&exts);
    handshake(1, &b)
}

fn server_hello(tls13: bool) -> Vec<u8> {
    let mut b = vec![3, 3];
    b.extend_from_slice(&[9; 32]);
    b.push(0);
    b.extend_from_slice(&[0x13, 0x01, 0]);
    if tls13 {
        b.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
    } else {
        b.extend_from_slice(&[0, 0]);
    }
    handshake(2, &b)
}

fn alert(level: u8, code: u8) -> Vec<u8> {
    record(21, &[level, code])
}

/// `alert by version sni msg` of each TLS entry.
fn tls(out: &[Entry]) -> Vec<String> {
    out.iter()
        .filter_map(|e| {
            let t = e.tls.as_ref()?;
            let err = e.error.as_ref().expect("an error");
            assert_eq!(err.kind, ErrorType::Tls);
            Some(format!(
                "{} {} {} {} | {}",
                t.alert.as_deref().unwrap_or("-"),
                t.by.map_or("-", Side::as_str),
                t.version.as_deref().unwrap_or("-"),
                t.sni.as_deref().unwrap_or("-"),
                err.msg
            ))
        })
        .collect()
}

/// Client and server sequence numbers after the handshake of `Sim::handshake`.
const C: u32 = 1001;
const S: u32 = 5001;

#[test]
fn a_fatal_alert_from_the_client_is_named_with_its_sender() {
    // TLS 1.2: the client does not trust the certificate and says so in the clear.
    let mut s = Sim::new();
    s.handshake(0);
    let ch = client_hello("shop.example", false);
    s.c(10, PSH | ACK, C, S, &ch);
    let sh = [server_hello(false), handshake(11, &[0, 0, 0]), handshake(14, &[])].concat();
    s.s(11, PSH | ACK, S, C + ch.len() as u32, &sh);
    let a = alert(2, 48);
    s.c(12, PSH | ACK, C + ch.len() as u32, S + sh.len() as u32, &a);
    s.c(13, FIN | ACK, C + (ch.len() + a.len()) as u32, S + sh.len() as u32, b"");
    let out = s.finish();
    assert_eq!(tls(&out), ["unknown_ca client TLS 1.2 shop.example | unknown_ca"]);
    let e = out.iter().find(|e| e.tls.is_some()).expect("entry");
    assert_eq!(e.protocol.as_str(), "tls");
    assert_eq!(e.elapsed_time, 2.0, "from the ClientHello to the alert");
}

#[test]
fn a_protocol_version_alert_from_the_server() {
    let mut s = Sim::new();
    s.handshake(0);
    let ch = client_hello("old.example", false);
    s.c(10, PSH | ACK, C, S, &ch);
    s.s(11, PSH | ACK, S, C + ch.len() as u32, &alert(2, 70));
    let out = s.finish();
    assert_eq!(tls(&out), ["protocol_version server TLS 1.2 old.example | protocol_version"]);
}

#[test]
fn completed_handshakes_are_no_entry_and_no_stream_timeout() {
    for tls13 in [true, false] {
        let mut s = Sim::with(EngineConfig { tcp_stream_channel_timeout_ms: 1000, ..EngineConfig::default() });
        s.handshake(0);
        let ch = client_hello("ok.example", tls13);
        s.c(10, PSH | ACK, C, S, &ch);
        let mut sh = server_hello(tls13);
        if !tls13 {
            sh.extend(record(20, &[1]));
        }
        sh.extend(record(23, &[0xaa; 40]));
        s.s(11, PSH | ACK, S, C + ch.len() as u32, &sh);
        // Application data, an encrypted alert (type 21 of 26 bytes in 1.2, or inside type 23 in 1.3).
        let late = if tls13 { record(23, &[0xbb; 30]) } else { record(21, &[0xcc; 26]) };
        s.c(12, PSH | ACK, C + ch.len() as u32, S + sh.len() as u32, &late);
        s.advance(5_000);
        let stats = s.engine.stats().clone();
        assert!(s.finish().is_empty(), "tls13={tls13}");
        assert_eq!(stats.streams_timed_out, 0);
    }
}

#[test]
fn a_client_hello_answered_by_a_reset_or_a_close() {
    let mut s = Sim::new();
    s.handshake(0);
    let ch = client_hello("a.example", true);
    s.c(10, PSH | ACK, C, S, &ch);
    s.s(11, RST | ACK, S, C + ch.len() as u32, b"");
    let out = s.finish();
    assert_eq!(
        tls(&out),
        ["- server TLS 1.3 a.example | no ServerHello: the ClientHello was answered by connection reset"]
    );

    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, C, S, &ch);
    s.s(11, FIN | ACK, S, C + ch.len() as u32, b"");
    assert_eq!(
        tls(&s.finish()),
        ["- server TLS 1.3 a.example | no ServerHello: the ClientHello was answered by a close (FIN) from the server"]
    );
}

#[test]
fn no_server_hello_in_time() {
    let mut s = Sim::with(EngineConfig { tls_handshake_timeout_ms: 2_000, ..EngineConfig::default() });
    s.handshake(0);
    let ch = client_hello("slow.example", true);
    s.c(10, PSH | ACK, C, S, &ch);
    s.advance(1_500);
    assert!(tls(&s.out).is_empty());
    s.advance(2_500);
    assert_eq!(tls(&s.out), ["- - TLS 1.3 slow.example | no ServerHello within tlsHandshakeTimeoutMs (2000 ms)"]);
}

#[test]
fn a_client_hello_split_over_segments_is_read() {
    let mut s = Sim::new();
    s.handshake(0);
    let ch = client_hello("split.example", false);
    let (a, b) = ch.split_at(7);
    s.c(10, PSH | ACK, C, S, a);
    s.c(10, PSH | ACK, C + a.len() as u32, S, b);
    s.s(11, PSH | ACK, S, C + ch.len() as u32, &alert(2, 40));
    assert_eq!(tls(&s.finish()), ["handshake_failure server TLS 1.2 split.example | handshake_failure"]);
}

#[test]
fn tls_can_be_switched_off() {
    let mut s =
        Sim::with(EngineConfig { dissectors: Dissectors::ALL.without(Dissector::Tls), ..EngineConfig::default() });
    s.handshake(0);
    let ch = client_hello("a.example", false);
    s.c(10, PSH | ACK, C, S, &ch);
    s.s(11, PSH | ACK, S, C + ch.len() as u32, &alert(2, 40));
    assert!(tls(&s.finish()).is_empty());
}

#[test]
fn kfl_selects_tls_fields() {
    let mut s = Sim::new();
    s.handshake(0);
    let ch = client_hello("shop.example", false);
    s.c(10, PSH | ACK, C, S, &ch);
    s.s(11, PSH | ACK, S, C + ch.len() as u32, &alert(2, 70));
    let out = s.finish();
    let e = out.iter().find(|e| e.tls.is_some()).expect("entry");
    for (q, want) in [
        ("tls", true),
        ("tls and error", true),
        (r#"tls.alert == "protocol_version""#, true),
        (r#"tls.sni == "shop.example""#, true),
        (r#"tls.by == "server""#, true),
        (r#"error.type == "tls""#, true),
        ("http", false),
    ] {
        assert_eq!(faultline_kfl::Query::parse(q).expect("parses").matches(e), want, "{q}");
    }
}
