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

/// One connection after `Sim::handshake`, its sequence numbers kept.
struct Conv {
    sim: Sim,
    seq: [u32; 2],
    ms: u64,
}

impl Conv {
    fn new() -> Conv {
        let mut sim = Sim::new();
        sim.handshake(0);
        Conv { sim, seq: [C, S], ms: 10 }
    }

    fn send(&mut self, from_client: bool, bytes: &[u8]) -> &mut Conv {
        self.flags(from_client, PSH | ACK, bytes)
    }

    fn flags(&mut self, from_client: bool, flags: u8, bytes: &[u8]) -> &mut Conv {
        let me = usize::from(!from_client);
        let (seq, ack) = (self.seq[me], self.seq[1 - me]);
        self.sim.tcp(self.ms, from_client, flags, seq, ack, bytes);
        self.seq[me] = seq.wrapping_add(bytes.len() as u32 + u32::from(flags & (FIN | RST) == FIN));
        self.ms += 1;
        self
    }

    /// ClientHello; ServerHello (TLS 1.3), the compatibility CCS and the server's encrypted flight.
    fn tls13(&mut self, sni: &str) -> &mut Conv {
        self.send(true, &client_hello(sni, true));
        let flight = [server_hello(true), record(20, &[1]), record(23, &[0xee; 2400])].concat();
        self.send(false, &flight)
    }

    fn fins(&mut self, client_first: bool) -> Vec<Entry> {
        self.flags(client_first, FIN | ACK, b"");
        self.flags(!client_first, FIN | ACK, b"");
        self.flags(client_first, ACK, b"");
        let sim = std::mem::replace(&mut self.sim, Sim::new());
        sim.finish()
    }
}

/// A TLS 1.3 alert encrypted: 2 bytes, the inner content type and a 16-byte tag.
fn encrypted_alert() -> Vec<u8> {
    record(23, &[0xa1; 19])
}

#[test]
fn tls13_a_client_rejecting_the_servers_certificate_sends_an_alert_sized_record_and_leaves() {
    let mut c = Conv::new();
    c.tls13("expired.example");
    c.send(true, &[record(20, &[1]), encrypted_alert()].concat());
    let out = c.fins(true);
    assert_eq!(
        tls(&out),
        ["- client TLS 1.3 expired.example | encrypted alert: the client gave up after the server's handshake \
          flight (most likely rejecting its certificate)"]
    );
    assert!(out.iter().all(|e| e.tcp.is_none()), "{out:?}");
}

#[test]
fn tls13_a_server_rejecting_the_clients_certificate_answers_its_flight_with_an_alert_sized_record() {
    let mut c = Conv::new();
    c.tls13("mtls.example");
    // The client's certificate, its signature and Finished; then the HTTP request it sends at once.
    c.send(
        true,
        &[record(20, &[1]), record(23, &[0xc1; 900]), record(23, &[0xc2; 53]), record(23, &[0xc3; 120])].concat(),
    );
    c.send(false, &encrypted_alert());
    let out = c.fins(false);
    assert_eq!(
        tls(&out),
        ["- server TLS 1.3 mtls.example | encrypted alert: the server gave up after the client's handshake flight \
          (most likely rejecting its certificate: mTLS)"]
    );
}

#[test]
fn tls13_completed_handshakes_and_their_close_notifies_are_no_entry() {
    // Tickets and data both ways.
    let mut c = Conv::new();
    c.tls13("ok.example");
    c.send(true, &[record(23, &[1; 53]), record(23, &[2; 300])].concat());
    c.send(false, &[record(23, &[3; 250]), record(23, &[4; 900])].concat());
    c.send(true, &encrypted_alert());
    c.send(false, &encrypted_alert());
    assert!(c.fins(true).is_empty());
    // A handshake-only check (tickets off): Finished and close_notify, answered by the server's close_notify.
    let mut c = Conv::new();
    c.tls13("probe.example");
    c.send(true, &[record(23, &[1; 53]), encrypted_alert()].concat());
    c.send(false, &encrypted_alert());
    assert!(c.fins(true).is_empty());
}

#[test]
fn a_clients_reset_after_its_close_notify_crossing_the_servers_close_is_a_close() {
    // Found on the real node (a Go TLS client's handshake-only check through the masquerade): the client
    // sends Finished and close_notify and closes its socket with the server's ticket unread, so its kernel
    // resets (RST|ACK) just as the server's close_notify and FIN, in one segment, cross it; the FIN then
    // finds no socket (a bare RST). The server's close_notify was never received, and nothing was lost.
    let mut c = Conv::new();
    c.tls13("secure.example");
    c.send(true, &[record(23, &[1; 53]), encrypted_alert()].concat());
    c.send(false, &record(23, &[3; 250]));
    let before_close = c.seq[1];
    c.flags(false, FIN | PSH | ACK, &encrypted_alert());
    let client = c.seq[0];
    c.sim.tcp(c.ms, true, RST | ACK, client, before_close, b"");
    c.sim.tcp(c.ms + 1, true, RST, client, 0, b"");
    let sim = std::mem::replace(&mut c.sim, Sim::new());
    let stats = sim.engine.stats().clone();
    let out = sim.finish();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(stats.closed_by_reset, 1);
}

#[test]
fn a_servers_close_notify_then_its_reset_is_a_close() {
    // A Go server closing an idle keep-alive connection as the client's next request crosses it: its
    // close_notify, then (the request unread) an RST instead of a FIN.
    let mut c = Conv::new();
    c.tls13("api.example");
    c.send(true, &[record(23, &[1; 53]), record(23, &[2; 300])].concat());
    c.send(false, &[record(23, &[3; 250]), record(23, &[4; 900])].concat());
    c.send(false, &encrypted_alert());
    c.send(true, &record(23, &[5; 300]));
    c.flags(false, RST | ACK, b"");
    let sim = std::mem::replace(&mut c.sim, Sim::new());
    let stats = sim.engine.stats().clone();
    let out = sim.finish();
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(stats.closed_by_reset, 1);

    // Without the close_notify, the same reset is a reset.
    let mut c = Conv::new();
    c.tls13("api.example");
    c.send(true, &[record(23, &[1; 53]), record(23, &[2; 300])].concat());
    c.send(false, &[record(23, &[3; 250]), record(23, &[4; 900])].concat());
    c.send(true, &record(23, &[5; 300]));
    c.flags(false, RST | ACK, b"");
    let sim = std::mem::replace(&mut c.sim, Sim::new());
    assert_eq!(common::tcp_errors(&sim.finish()).len(), 1);
}

/// A HelloRetryRequest: a ServerHello whose random is RFC 8446's fixed value.
fn hello_retry_request() -> Vec<u8> {
    let random: [u8; 32] = [
        0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2,
        0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
    ];
    let mut b = vec![3, 3];
    b.extend_from_slice(&random);
    b.push(0);
    b.extend_from_slice(&[0x13, 0x01, 0]);
    b.extend_from_slice(&[0, 6, 0, 43, 0, 2, 3, 4]);
    handshake(2, &b)
}

#[test]
fn a_hello_retry_request_is_not_the_server_hello() {
    // The retry, then the client gives up on the retry's terms: its alert in the clear is read.
    let mut c = Conv::new();
    c.send(true, &client_hello("hrr.example", true));
    c.send(false, &hello_retry_request());
    c.send(true, &[record(20, &[1]), client_hello("hrr.example", true)].concat());
    c.send(false, &[server_hello(true), record(20, &[1]), record(23, &[0xee; 2400])].concat());
    c.send(true, &encrypted_alert());
    let out = c.fins(true);
    assert_eq!(tls(&out).len(), 1);
    assert!(tls(&out)[0].starts_with("- client TLS 1.3 hrr.example | encrypted alert"), "{:?}", tls(&out));

    // A retry that is never followed: the ClientHello still waits for its ServerHello.
    let mut c = Conv::new();
    c.send(true, &client_hello("hrr.example", true));
    c.send(false, &hello_retry_request());
    let out = c.fins(false);
    assert_eq!(
        tls(&out),
        ["- server TLS 1.3 hrr.example | no ServerHello: the ClientHello was answered by a close (FIN) from the server"]
    );
}

#[test]
fn an_alert_in_the_clear_after_a_tls13_server_hello_is_read() {
    let mut c = Conv::new();
    c.send(true, &client_hello("clear.example", true));
    c.send(false, &[server_hello(true), record(20, &[1]), record(23, &[0xee; 2400])].concat());
    c.send(true, &alert(2, 47));
    let out = c.fins(true);
    assert_eq!(tls(&out), ["illegal_parameter client TLS 1.3 clear.example | illegal_parameter"]);
}

#[test]
fn a_tls12_warning_ends_the_handshake_only_if_it_does_not_go_on() {
    // unrecognized_name as a warning, then the handshake completes.
    let mut c = Conv::new();
    c.send(true, &client_hello("vhost.example", false));
    c.send(false, &[alert(1, 112), server_hello(false), handshake(11, &[0, 0, 0]), handshake(14, &[])].concat());
    c.send(true, &[handshake(16, &[0; 33]), record(20, &[1]), record(22, &[0xf0; 40])].concat());
    c.send(false, &[record(20, &[1]), record(22, &[0xf1; 40]), record(23, &[0xf2; 200])].concat());
    assert!(c.fins(true).is_empty());

    // The same warning, and the server closes.
    let mut c = Conv::new();
    c.send(true, &client_hello("vhost.example", false));
    c.send(false, &alert(1, 112));
    let out = c.fins(false);
    assert_eq!(tls(&out), ["unrecognized_name server TLS 1.2 vhost.example | unrecognized_name"]);
}

#[test]
fn a_client_hello_answered_by_plain_http_is_not_tls() {
    let mut c = Conv::new();
    c.send(true, &client_hello("web.example", true));
    c.send(false, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let out = c.fins(false);
    assert_eq!(tls(&out), ["- server TLS 1.3 web.example | not TLS: the server answered \"HTTP/1.1 400 Bad Request\""]);
}

#[test]
fn the_side_that_resets_is_the_one_named() {
    let mut c = Conv::new();
    c.send(true, &client_hello("gone.example", true));
    c.flags(true, RST | ACK, b"");
    let sim = std::mem::replace(&mut c.sim, Sim::new());
    assert_eq!(
        tls(&sim.finish()),
        ["- client TLS 1.3 gone.example | no ServerHello: the ClientHello was answered by connection reset"]
    );
}

#[test]
fn a_client_hello_still_waiting_at_the_end_of_the_capture_is_decided_as_its_timer_would() {
    let mut c = Conv::new();
    c.send(true, &client_hello("late.example", true));
    let sim = std::mem::replace(&mut c.sim, Sim::new());
    assert_eq!(
        tls(&sim.finish()),
        ["- - TLS 1.3 late.example | no ServerHello within tlsHandshakeTimeoutMs (10000 ms)"]
    );
}

#[test]
fn the_reset_that_follows_a_failing_alert_is_no_second_error() {
    // Go's client: its encrypted alert, then an RST (the server's flight was left unread).
    let mut c = Conv::new();
    c.tls13("expired.example");
    c.send(true, &[record(20, &[1]), encrypted_alert()].concat());
    c.flags(true, RST | ACK, b"");
    let sim = std::mem::replace(&mut c.sim, Sim::new());
    let out = sim.finish();
    assert_eq!(tls(&out).len(), 1);
    assert!(tls(&out)[0].starts_with("- client TLS 1.3 expired.example | encrypted alert"), "{:?}", tls(&out));
    assert!(common::tcp_errors(&out).is_empty(), "{out:?}");
}

/// Found on the real node: a client (rustls in the operator) finishes its handshake and closes the
/// connection at once, without a close_notify (a pooled connection it did not need); Go's server answers
/// the FIN with its own close_notify. The server's lone alert-sized record came after the client had
/// left: a close, not a rejection of the client's certificate.
#[test]
fn tls13_a_servers_close_notify_after_the_client_left_is_no_rejection() {
    let mut c = Conv::new();
    c.tls13("kubernetes.default.svc");
    c.send(true, &[record(20, &[1]), record(23, &[1; 53])].concat());
    c.flags(true, FIN | ACK, b"");
    c.send(false, &encrypted_alert());
    c.flags(false, FIN | ACK, b"");
    c.flags(true, ACK, b"");
    let sim = std::mem::replace(&mut c.sim, Sim::new());
    let out = sim.finish();
    assert!(out.is_empty(), "{:?}", tls(&out));
}

/// Found on the real node: the API server closes a connection a client opened, finished its handshake on
/// and never used — its close_notify comes tens of seconds after the client's flight. A verdict on a
/// certificate comes at once; this is a close.
#[test]
fn tls13_a_servers_close_notify_long_after_the_clients_flight_is_no_rejection() {
    let mut c = Conv::new();
    c.tls13("kubernetes.default.svc");
    c.send(true, &[record(20, &[1]), record(23, &[1; 25]), record(23, &[1; 53])].concat());
    c.ms += 30_000;
    c.send(false, &encrypted_alert());
    let out = c.fins(false);
    assert!(out.is_empty(), "{:?}", tls(&out));
}
