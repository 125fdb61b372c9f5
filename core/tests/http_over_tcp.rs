//! HTTP through the whole engine: reassembly, detection by content, pairing, and the entries of §3.5.

mod common;

use common::*;
use faultline_core::entry::{Entry, ErrorType, TcpState};

fn kinds(out: &[Entry]) -> Vec<String> {
    out.iter()
        .map(|e| match (&e.error, &e.response, &e.tcp) {
            (Some(err), _, Some(t)) => format!("{}:{}", err.kind.as_str(), t.state.as_str()),
            (Some(err), _, None) => format!("{}:{}", err.kind.as_str(), err.msg),
            (None, Some(r), _) => format!("http:{}", r.status),
            _ => "other".into(),
        })
        .collect()
}

#[test]
fn request_and_response_on_a_high_port_pair_with_latency() {
    let mut s = Sim::new();
    s.server.1 = 31337;
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
    s.s(35, PSH | ACK, 5001, 1035, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
    s.c(36, FIN | ACK, 1035, 5071, b"");
    s.s(37, FIN | ACK, 5071, 1036, b"");
    s.c(38, ACK, 1036, 5072, b"");
    let out = s.finish();
    assert_eq!(kinds(&out), vec!["http:503"]);
    let e = &out[0];
    assert_eq!(e.elapsed_time, 25.0);
    assert_eq!(e.request.as_ref().map(|r| r.path.as_str()), Some("/health"));
    assert_eq!(e.dst.port, Some(31337));
}

#[test]
fn out_of_order_segments_are_reassembled() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1010, 5001, b"HTTP/1.1\r\n\r\n");
    s.c(11, PSH | ACK, 1001, 5001, b"GET /ooo ");
    s.c(12, PSH | ACK, 1001, 5001, b"GET /ooo "); // retransmission
    s.s(20, PSH | ACK, 5001, 1022, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let out = s.finish();
    assert_eq!(kinds(&out), vec!["http:200"]);
}

#[test]
fn request_answered_by_reset_is_reset_plus_missing_response() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET /boom HTTP/1.1\r\n\r\n");
    s.s(11, RST | ACK, 5001, 1023, b"");
    let out = s.finish();
    assert_eq!(kinds(&out), vec!["connection:Reset", "pair-not-found:missing response: connection reset"]);
    assert_eq!(out[1].request.as_ref().map(|r| r.path.as_str()), Some("/boom"));
}

#[test]
fn server_that_never_answers_yields_missing_response_at_its_fin() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET /void HTTP/1.1\r\n\r\n");
    s.s(11, ACK, 5001, 1023, b"");
    s.c(1000, FIN | ACK, 1023, 5001, b"");
    s.s(1001, FIN | ACK, 5001, 1024, b"");
    s.c(1002, ACK, 1024, 5002, b"");
    let out = s.finish();
    assert_eq!(kinds(&out), vec!["pair-not-found:missing response: server closed the connection"]);
    assert_eq!(out[0].elapsed_time, 991.0);
}

#[test]
fn unanswered_request_at_end_of_capture_is_missing_response() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET /pending HTTP/1.1\r\n\r\n");
    let out = s.finish();
    assert_eq!(kinds(&out), vec!["pair-not-found:missing response: capture ended"]);
}

#[test]
fn garbage_answer_and_short_answer_are_dissection_errors() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET / HTTP/1.1\r\n\r\n");
    s.s(11, PSH | ACK, 5001, 1019, b"\x00\x01garbage\r\n\r\n");
    s.s(12, FIN | ACK, 5014, 1019, b"");
    let out = s.finish();
    assert_eq!(out.len(), 1, "{out:?}");
    let err = out[0].error.as_ref().expect("error");
    assert_eq!(err.kind, ErrorType::Dissection);
    assert!(err.msg.starts_with("parser error"), "{}", err.msg);
    assert!(out[0].request.is_some());

    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET / HTTP/1.1\r\n\r\n");
    s.s(11, PSH | ACK, 5001, 1019, b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort");
    s.s(12, FIN | ACK, 5044, 1019, b"");
    s.c(13, FIN | ACK, 1019, 5045, b"");
    s.s(14, ACK, 5045, 1020, b"");
    let out = s.finish();
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].error.as_ref().is_some_and(|e| e.msg.starts_with("unexpected EOF")));
}

#[test]
fn non_http_stream_counts_a_stream_timeout_only() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"\x16\x03\x01\x00\x05hello");
    s.advance(20_000);
    assert!(s.out.is_empty(), "stream timeouts are entries only when showStreamTimeouts is on");
    assert_eq!(s.engine.stats().streams_timed_out, 1);

    let cfg = faultline_core::EngineConfig { show_stream_timeouts: true, ..Default::default() };
    let mut s = Sim::with(cfg);
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"\x16\x03\x01\x00\x05hello");
    s.advance(20_000);
    assert_eq!(kinds(&s.out), vec!["timeout:stream timeout: no protocol identified within 10000 ms"]);
}

#[test]
fn sequence_gap_counts_missed_bytes() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"GET /a HTTP/1.1\r\n\r\n");
    // 100 bytes never captured, then more.
    s.c(11, PSH | ACK, 1120, 5001, b"GET /b HTTP/1.1\r\n\r\n");
    s.c(12, RST, 1140, 0, b"");
    assert_eq!(s.engine.stats().missed_bytes, 100);
    assert_eq!(s.engine.stats().http_resyncs, 1, "a gap between requests hides the framing");
    let out = s.finish();
    // The parser found /b after the gap: both requests seen were unanswered when the client reset.
    assert_eq!(
        kinds(&out),
        vec![
            "connection:Reset",
            "pair-not-found:missing response: connection reset",
            "pair-not-found:missing response: connection reset"
        ]
    );
    assert!(tcp_errors(&out).contains(&(TcpState::Reset, None, Some("client"))));
}

/// Requests no HTTP probe recognises (`GET/`, `OPTIONSHTTP/1.1`, a method with bytes outside ASCII) but
/// that the server answers with a status line: HTTP, reported as a parser error that carries the server's
/// verdict (SPEC §3.5). A server that answers with anything else leaves the stream undissected.
#[test]
fn a_request_no_probe_recognises_answered_by_an_http_status_is_a_parser_error_with_that_status() {
    for (request, answer, want) in [
        (
            &b"GET/ HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
            Some(400),
        ),
        (b"OPTIONSHTTP/1.1\r\n\r\n", b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n", Some(405)),
        (b"G\xc3\x89T / HTTP/1.1\r\n\r\n", b"HTTP/1.0 400 Bad Request\r\n\r\n", Some(400)),
        (b"GET/ HTTP/1.1\r\n\r\n", b"+OK redis here\r\n", None),
    ] {
        let mut s = Sim::new();
        s.handshake(0);
        let q = request.len() as u32;
        s.c(10, PSH | ACK, 1001, 5001, request);
        s.s(12, PSH | ACK, 5001, 1001 + q, answer);
        s.s(13, FIN | ACK, 5001 + answer.len() as u32, 1001 + q, b"");
        s.c(14, FIN | ACK, 1001 + q, 5002 + answer.len() as u32, b"");
        s.s(15, ACK, 5002 + answer.len() as u32, 1002 + q, b"");
        let out = s.finish();
        let http: Vec<_> = out.iter().filter(|e| e.protocol == faultline_core::entry::Protocol::Http).collect();
        match want {
            Some(status) => {
                let [e] = &http[..] else { panic!("{:?}: {out:?}", String::from_utf8_lossy(request)) };
                let err = e.error.as_ref().expect("an error");
                assert_eq!(err.kind, ErrorType::Dissection);
                assert!(err.msg.starts_with("parser error"), "{}", err.msg);
                assert_eq!(e.response.as_ref().map(|r| r.status), Some(status));
                assert_eq!(e.elapsed_time, 2.0);
            }
            None => assert!(http.is_empty(), "{out:?}"),
        }
    }
}
