//! Real traffic, decided (SPEC §3.1 "Real traffic, decided", §3.3, §3.5): loss, retransmissions, stale
//! state and lenient peers are not errors, and real errors on such connections are still found. Each test
//! crafts the packets of one pattern seen on real networks and asserts the SPEC's entries exactly.

mod common;

use common::{tcp_errors, Sim, ACK, FIN, PSH, RST, SYN};
use faultline_core::engine::inline::ShardedInline;
use faultline_core::entry::{Entry, SynReason, TcpState};
use faultline_core::EngineConfig;

/// What each entry is, in order: `tcp:<state>:<reason>:<by>`, `http:<status>`, or `<error type>:<msg>`.
fn kinds(out: &[Entry]) -> Vec<String> {
    out.iter()
        .map(|e| match (&e.error, &e.response, &e.tcp) {
            (_, _, Some(t)) => format!(
                "tcp:{}:{}:{}",
                t.state.as_str(),
                t.reason.map(|r| format!("{r:?}").to_lowercase()).unwrap_or_default(),
                t.by.map(|b| b.as_str()).unwrap_or_default()
            ),
            (Some(err), _, None) => format!("{}:{}", err.kind.as_str(), err.msg),
            (None, Some(r), _) => format!("http:{}", r.status),
            _ => "other".into(),
        })
        .collect()
}

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"; // 28 bytes
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"; // 40 bytes
const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"; // 55 bytes

fn len(b: &[u8]) -> u32 {
    b.len() as u32
}

// ---- TCP (SPEC §3.1) -----------------------------------------------------------------------------------

#[test]
fn a_syn_answered_late_is_one_timeout_and_the_connection_goes_on() {
    let mut s = Sim::with(EngineConfig { syn_timeout_ms: 2000, ..EngineConfig::default() });
    // Linux retransmits at 1 s and 3 s; the third copy is answered.
    s.c(0, SYN, 1000, 0, b"");
    s.c(1000, SYN, 1000, 0, b"");
    s.advance(2500);
    assert_eq!(kinds(&s.out), ["tcp:SynSent:timeout:"], "reported when the timer fires");
    s.c(3000, SYN, 1000, 0, b"");
    s.s(3001, SYN | ACK, 5000, 1001, b"");
    s.c(3002, ACK, 1001, 5001, b"");
    s.c(3003, PSH | ACK, 1001, 5001, GET);
    s.s(3010, PSH | ACK, 5001, 1001 + len(GET), UNAVAILABLE);
    s.s(3020, RST | ACK, 5001 + len(UNAVAILABLE), 1001 + len(GET), b"");
    let out = s.finish();
    assert_eq!(kinds(&out), ["tcp:SynSent:timeout:", "http:503", "tcp:Reset::server"]);
    assert_eq!(out[0].elapsed_time, 2000.0);
}

#[test]
fn an_rst_outside_the_window_is_ignored_and_counted() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, GET);
    // A stale RST from a middlebox, a million bytes off: not the server's.
    s.s(11, RST, 5001 + 1_000_000, 0, b"");
    s.s(20, PSH | ACK, 5001, 1001 + len(GET), UNAVAILABLE);
    s.c(30, FIN | ACK, 1001 + len(GET), 5001 + len(UNAVAILABLE), b"");
    s.s(31, FIN | ACK, 5001 + len(UNAVAILABLE), 1002 + len(GET), b"");
    s.c(32, ACK, 1002 + len(GET), 5002 + len(UNAVAILABLE), b"");
    assert_eq!(s.engine.stats().rst_out_of_window, 1);
    assert_eq!(kinds(&s.finish()), ["http:503"]);
}

#[test]
fn an_rst_in_the_window_but_not_at_the_next_sequence_number_counts() {
    let mut s = Sim::new();
    s.handshake(0);
    s.s(10, RST, 5001 + 100, 0, b"");
    assert_eq!(kinds(&s.finish()), ["tcp:Reset::server"]);
}

#[test]
fn an_rst_in_syn_sent_that_does_not_acknowledge_the_syn_is_not_a_refusal() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, RST | ACK, 0, 424_242, b"");
    s.s(2, SYN | ACK, 5000, 1001, b"");
    s.c(3, ACK, 1001, 5001, b"");
    s.c(4, PSH | ACK, 1001, 5001, GET);
    s.s(5, PSH | ACK, 5001, 1001 + len(GET), OK);
    assert_eq!(kinds(&s.finish()), ["http:200"]);
}

#[test]
fn a_challenge_ack_to_a_syn_is_not_an_answer() {
    let mut s = Sim::new();
    // Stale TIME_WAIT state on the server answers the new SYN with an ACK of the old connection; the
    // client resets it and retransmits its SYN, which is then answered.
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, ACK, 90_000, 777_777, b"");
    s.c(2, RST, 777_777, 0, b"");
    s.c(1000, SYN, 1000, 0, b"");
    s.s(1001, SYN | ACK, 5000, 1001, b"");
    s.c(1002, ACK, 1001, 5001, b"");
    s.c(1003, PSH | ACK, 1001, 5001, GET);
    s.s(1004, PSH | ACK, 5001, 1001 + len(GET), OK);
    assert_eq!(s.engine.stats().challenge_acks, 1);
    assert_eq!(kinds(&s.finish()), ["http:200"]);
}

#[test]
fn an_rst_before_the_handshake_completed_is_a_refusal_from_the_server_only() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, SYN | ACK, 5000, 1001, b"");
    s.s(2, RST, 5001, 0, b"");
    assert_eq!(tcp_errors(&s.finish()), [(TcpState::SynSent, Some(SynReason::Refused), Some("server"))]);

    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, SYN | ACK, 5000, 1001, b"");
    // A Happy-Eyeballs loser or a health probe: the client gives up.
    s.c(2, RST, 1001, 0, b"");
    assert!(s.finish().is_empty());
}

#[test]
fn the_payload_of_a_fast_open_syn_is_the_request() {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, GET);
    s.s(1, SYN | ACK, 5000, 1001 + len(GET), b"");
    s.c(2, ACK, 1001 + len(GET), 5001, b"");
    s.s(3, PSH | ACK, 5001, 1001 + len(GET), OK);
    let out = s.finish();
    assert_eq!(kinds(&out), ["http:200"]);
    assert_eq!(out[0].request.as_ref().map(|r| r.path.as_str()), Some("/a"));
}

#[test]
fn picked_up_mid_stream_the_side_that_sends_a_request_is_the_client_whatever_the_ports() {
    let mut s = Sim::new();
    // A gRPC-style server on a high port, its client on a lower ephemeral one.
    s.client.1 = 34_000;
    s.server.1 = 50_051;
    s.c(0, PSH | ACK, 1001, 5001, GET);
    s.s(1, PSH | ACK, 5001, 1001 + len(GET), UNAVAILABLE);
    s.s(2, RST, 5001 + len(UNAVAILABLE), 0, b"");
    let out = s.finish();
    assert_eq!(kinds(&out), ["http:503", "tcp:Reset::server"]);
    for e in &out {
        assert_eq!((e.src.port, e.dst.port), (Some(34_000), Some(50_051)), "{e:?}");
    }
}

#[test]
fn one_missing_final_ack_without_a_fin_retransmission_is_loss_not_last_ack() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, FIN | ACK, 5001, 1002, b"");
    // The client's last ACK is not in the capture, and the server never retransmitted its FIN.
    s.advance(20_000);
    assert!(s.out.is_empty(), "{:?}", s.out);
    assert_eq!(s.engine.stats().unacked_fins, 1);
    assert!(s.finish().is_empty());
}

#[test]
fn a_fin_the_capture_missed_but_the_peer_acknowledged_is_no_close_wait() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, GET);
    s.s(11, PSH | ACK, 5001, 1001 + len(GET), OK);
    // The client's FIN (seq 1029) is missing; the server acknowledges it (1030) and closes too.
    s.s(13, FIN | ACK, 5001 + len(OK), 1002 + len(GET), b"");
    s.c(14, ACK, 1002 + len(GET), 5002 + len(OK), b"");
    s.advance(20_000);
    assert_eq!(kinds(&s.out), ["http:200"]);
    assert_eq!(s.engine.stats().fins_inferred, 1);
    assert_eq!(s.finish().len(), 1);
}

#[test]
fn a_late_fin_retransmission_and_rst_after_the_close_are_absorbed() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, FIN | ACK, 1001, 5001, b"");
    s.s(11, FIN | ACK, 5001, 1002, b"");
    s.c(12, ACK, 1002, 5002, b"");
    // Well after closeTimeoutMs (5 s), within the minute a closed connection lingers.
    s.s(30_000, FIN | ACK, 5001, 1002, b"");
    s.c(30_001, RST, 1002, 0, b"");
    assert!(s.finish().is_empty());
}

#[test]
fn a_quiet_open_connection_expires_without_an_entry() {
    let mut s = Sim::with(EngineConfig { idle_timeout_ms: 60_000, pair_timeout_ms: 600_000, ..Default::default() });
    s.handshake(0);
    // A watch: the response head and a first chunk, then silence.
    s.c(10, PSH | ACK, 1001, 5001, b"GET /watch HTTP/1.1\r\n\r\n");
    s.s(11, PSH | ACK, 5001, 1024, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nevent\r\n");
    s.advance(200_000);
    assert!(s.out.is_empty(), "{:?}", s.out);
    assert_eq!(s.engine.stats().flows_expired, 1);
}

// ---- Loss and reassembly (SPEC §3.3) -------------------------------------------------------------------

/// A keep-alive connection with `n` exchanges; `status(i)` picks each response, `lost(i)` leaves the
/// i-th response out of the capture (the client's ACK of it is there).
fn keep_alive(s: &mut Sim, n: u32, status: impl Fn(u32) -> &'static [u8], lost: impl Fn(u32) -> bool) {
    s.handshake(0);
    let (mut c, mut sv) = (1001u32, 5001u32);
    for i in 0..n {
        let t = 10 + u64::from(i) * 10;
        s.c(t, PSH | ACK, c, sv, GET);
        c += len(GET);
        let resp = status(i);
        if !lost(i) {
            s.s(t + 1, PSH | ACK, sv, c, resp);
        }
        sv += len(resp);
        s.c(t + 2, ACK, c, sv, b"");
    }
    s.c(10_000, FIN | ACK, c, sv, b"");
    s.s(10_001, FIN | ACK, sv, c + 1, b"");
    s.c(10_002, ACK, c + 1, sv + 1, b"");
}

#[test]
fn one_lost_segment_on_a_keep_alive_connection_costs_only_its_exchange() {
    let mut s = Sim::new();
    keep_alive(&mut s, 6, |i| if i == 4 { UNAVAILABLE } else { OK }, |i| i == 1);
    let stats = s.engine.stats().clone();
    let out = s.finish();
    assert_eq!(kinds(&out), ["http:200", "http:200", "http:200", "http:503", "http:200"]);
    assert_eq!(stats.missed_bytes, u64::from(len(OK)));
    assert_eq!(stats.http_lost_exchanges, 1);
}

/// Seen on a lossy path (kernel test `test_a_lossy_reordering_path...`): a response's first segment (its
/// head) is lost to the capture while its body segment is captured ahead of the hole; the client's ACK of
/// the head alone lies below the highest sequence number seen. The hole must still be given up at that ACK:
/// otherwise the body waits behind it, later requests are queued before the gap is known, and every later
/// response is paired with the wrong request.
#[test]
fn a_hole_acknowledged_below_data_already_seen_is_given_up_at_once() {
    let mut s = Sim::new();
    s.handshake(0);
    let (mut c, mut sv) = (1001u32, 5001u32);
    let head: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    let body: &[u8] = b"0123456789";
    let paths = ["/0", "/1", "/2", "/3", "/4"];
    for (i, path) in paths.iter().enumerate() {
        let t = 10 + i as u64 * 10;
        let get = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        s.c(t, PSH | ACK, c, sv, get.as_bytes());
        c += len(get.as_bytes());
        let (resp_head, resp_body): (&[u8], &[u8]) = if i == 3 { (UNAVAILABLE, b"") } else { (head, body) };
        if i == 1 || i == 2 {
            // The head is lost; the body arrives; the client acknowledges the head only (a dup-ACK-like
            // ACK below the body already seen), then everything.
            s.s(t + 1, PSH | ACK, sv + len(resp_head), c, resp_body);
            s.c(t + 2, ACK, c, sv + len(resp_head), b"");
        } else {
            s.s(t + 1, PSH | ACK, sv, c, resp_head);
            if !resp_body.is_empty() {
                s.s(t + 1, PSH | ACK, sv + len(resp_head), c, resp_body);
            }
        }
        sv += len(resp_head) + len(resp_body);
        s.c(t + 3, ACK, c, sv, b"");
    }
    s.c(10_000, FIN | ACK, c, sv, b"");
    s.s(10_001, FIN | ACK, sv, c + 1, b"");
    s.c(10_002, ACK, c + 1, sv + 1, b"");
    let lost = s.engine.stats().http_lost_exchanges;
    let out = s.finish();
    let pairs: Vec<_> = out
        .iter()
        .map(|e| (e.request.as_ref().map(|r| r.path.clone()), e.response.as_ref().map(|r| r.status)))
        .collect();
    assert_eq!(pairs, [(Some("/0".into()), Some(200)), (Some("/3".into()), Some(503)), (Some("/4".into()), Some(200))]);
    assert_eq!(lost, 2);
}

#[test]
fn a_lost_request_costs_only_its_exchange() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, GET);
    s.s(11, PSH | ACK, 5001, 1029, OK);
    // The second request is not in the capture; the server's answer acknowledges it.
    s.s(21, PSH | ACK, 5041, 1057, OK);
    s.c(30, PSH | ACK, 1057, 5081, GET);
    s.s(31, PSH | ACK, 5081, 1085, UNAVAILABLE);
    let stats_out = s.finish();
    assert_eq!(kinds(&stats_out), ["http:200", "http:503"]);
}

#[test]
fn tail_loss_the_peer_acknowledged_is_counted_not_an_unexpected_eof() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, GET);
    let head = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 1000\r\n\r\n";
    s.s(11, PSH | ACK, 5001, 1029, head);
    // The 1000-byte body is not in the capture; the client acknowledged it, then both close.
    let end = 5001 + len(head) + 1000;
    s.c(13, ACK, 1029, end, b"");
    s.s(14, FIN | ACK, end, 1029, b"");
    s.c(15, FIN | ACK, 1029, end + 1, b"");
    s.s(16, ACK, end + 1, 1030, b"");
    let missed = s.engine.stats().missed_bytes;
    assert_eq!(kinds(&s.finish()), ["http:502"]);
    assert_eq!(missed, 1000);
}

#[test]
fn a_far_ahead_stale_segment_is_not_held() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(5, PSH | ACK, 1001 + (1 << 30), 5001, b"stale duplicate");
    s.c(10, PSH | ACK, 1001, 5001, GET);
    s.s(11, PSH | ACK, 5001, 1029, OK);
    s.c(12, FIN | ACK, 1029, 5041, b"");
    s.s(13, FIN | ACK, 5041, 1030, b"");
    s.c(14, ACK, 1030, 5042, b"");
    let stats = s.engine.stats().clone();
    assert_eq!(kinds(&s.finish()), ["http:200"]);
    assert_eq!(stats.missed_bytes, 0);
    assert_eq!(stats.segments_out_of_window, 1);
}

#[test]
fn out_of_order_bytes_have_an_engine_wide_budget() {
    let mut s = Sim::one(EngineConfig { max_out_of_order_total: 1000, ..Default::default() });
    for port in [40_001, 40_002] {
        s.client.1 = port;
        s.handshake(0);
        // 600 bytes held behind a 100-byte hole on each connection: the second passes the budget.
        s.c(10, PSH | ACK, 1101, 5001, &[b'x'; 600]);
    }
    assert_eq!(s.engine.stats().reassembly_over_budget, 1);
    assert_eq!(s.engine.stats().missed_bytes, 100, "the second connection gave its hole up");
}

#[test]
fn shards_divide_the_budget_of_out_of_order_bytes_rather_than_multiply_it() {
    // 1,000 bytes for the node: 250 for each of 4 shards. Eight connections each hold 600 bytes behind a
    // hole: every one is over its shard's budget, where one engine would have let the first one hold.
    let cfg = EngineConfig { max_out_of_order_total: 1000, ..Default::default() };
    let mut s = Sim::on(Box::new(ShardedInline::new(cfg, 4)));
    for port in 40_001..40_009 {
        s.client.1 = port;
        s.handshake(0);
        s.c(10, PSH | ACK, 1101, 5001, &[b'x'; 600]);
    }
    assert_eq!(s.engine.stats().reassembly_over_budget, 8);
    assert_eq!(s.engine.stats().missed_bytes, 800);
}

// ---- HTTP (SPEC §3.5) ----------------------------------------------------------------------------------

#[test]
fn a_gap_exactly_the_rest_of_a_body_keeps_the_connection_dissected() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, GET);
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
    s.s(11, PSH | ACK, 5001, 1029, head);
    let after = 5001 + len(head) + 100;
    s.c(12, PSH | ACK, 1029, after, GET);
    s.s(13, PSH | ACK, after, 1057, UNAVAILABLE);
    assert_eq!(kinds(&s.finish()), ["http:200", "http:503"]);
}

#[test]
fn a_response_before_the_first_request_of_a_mid_stream_pickup_is_not_missing_request() {
    let mut s = Sim::new();
    // The agent started while a response was on its way.
    s.s(0, PSH | ACK, 5001, 1029, OK);
    s.c(10, PSH | ACK, 1029, 5041, GET);
    s.s(11, PSH | ACK, 5041, 1057, UNAVAILABLE);
    let stats_before = s.engine.stats().http_early_responses;
    let out = s.finish();
    assert_eq!(kinds(&out), ["http:503"]);
    assert_eq!(stats_before, 1);
}

#[test]
fn a_slow_upload_is_not_a_half_connection_and_a_late_answer_is_reported() {
    let mut s = Sim::with(EngineConfig { pair_timeout_ms: 5_000, ..Default::default() });
    s.handshake(0);
    let head = b"POST /up HTTP/1.1\r\nContent-Length: 20\r\n\r\n";
    s.c(10, PSH | ACK, 1001, 5001, head);
    let body_at = 1001 + len(head);
    s.c(4_000, PSH | ACK, body_at, 5001, &[b'a'; 10]);
    s.c(8_000, PSH | ACK, body_at + 10, 5001, &[b'a'; 10]);
    s.advance(12_000);
    assert!(s.out.is_empty(), "{:?}", kinds(&s.out));
    s.advance(13_500);
    assert_eq!(kinds(&s.out), ["pair-not-found:missing response: no response within pairTimeoutMs"]);
    assert_eq!(s.out[0].elapsed_time, 13_000.0 - 10.0, "decided at the deadline, not at the sweep");
    s.s(20_000, PSH | ACK, 5001, body_at + 20, b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n");
    let out = s.finish();
    let last = kinds(&out[1..]);
    assert_eq!(last.len(), 1);
    assert!(last[0].starts_with("pair-not-found:late response: status 504"), "{last:?}");
    assert_eq!(out[1].response.as_ref().map(|r| r.status), Some(504));
}

#[test]
fn responses_real_servers_send_parse() {
    let mut s = Sim::new();
    s.handshake(0);
    let mut c = 1001u32;
    let mut sv = 5001u32;
    let mut many = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let responses: [&[u8]; 4] = [
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
        &many,
    ];
    for (i, r) in responses.iter().enumerate() {
        let t = 10 + i as u64 * 10;
        s.c(t, PSH | ACK, c, sv, GET);
        c += len(GET);
        s.s(t + 1, PSH | ACK, sv, c, r);
        sv += len(r);
    }
    assert_eq!(kinds(&s.finish()), ["http:200"; 4]);
}

#[test]
fn a_final_status_to_expect_continue_then_a_close_is_complete() {
    let mut s = Sim::new();
    s.handshake(0);
    let req = b"PUT /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n";
    s.c(10, PSH | ACK, 1001, 5001, req);
    let resp = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
    s.s(11, PSH | ACK, 5001, 1001 + len(req), resp);
    s.c(12, FIN | ACK, 1001 + len(req), 5001 + len(resp), b"");
    s.s(13, FIN | ACK, 5001 + len(resp), 1002 + len(req), b"");
    s.c(14, ACK, 1002 + len(req), 5002 + len(resp), b"");
    assert_eq!(kinds(&s.finish()), ["http:401"]);
}

#[test]
fn proxy_protocol_unknown_methods_and_a_leading_crlf_are_dissected() {
    for req in [
        &b"PROXY TCP4 192.0.2.7 10.0.0.2 51000 80\r\nGET /a HTTP/1.1\r\n\r\n"[..],
        b"PURGE /cache/a HTTP/1.1\r\n\r\n",
        b"QUERY /search HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"\r\nGET /a HTTP/1.1\r\n\r\n",
    ] {
        let mut s = Sim::new();
        s.handshake(0);
        s.c(10, PSH | ACK, 1001, 5001, req);
        s.s(11, PSH | ACK, 5001, 1001 + len(req), UNAVAILABLE);
        assert_eq!(kinds(&s.finish()), ["http:503"], "{}", String::from_utf8_lossy(req));
    }
}

// ---- Time and inputs -----------------------------------------------------------------------------------

#[test]
fn only_streams_never_identified_and_older_than_the_timeout_are_stream_timeouts() {
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"\x16\x03\x01\x00\x05hello");
    // A young unidentified stream at the end of the capture has not timed out.
    s.advance(5_000);
    assert_eq!(s.finish().len(), 0);
    let mut s = Sim::new();
    s.handshake(0);
    s.c(10, PSH | ACK, 1001, 5001, b"\x16\x03\x01\x00\x05hello");
    let s2 = {
        let mut s2 = Sim::new();
        s2.handshake(0);
        s2.c(10, PSH | ACK, 1001, 5001, GET);
        s2.s(11, PSH | ACK, 5001, 1029, OK);
        s2.advance(60_000);
        s2
    };
    assert_eq!(s2.engine.stats().streams_timed_out, 0, "an HTTP keep-alive connection never times out");
    s.advance(60_000);
    assert_eq!(s.engine.stats().streams_timed_out, 1);
    let mut young = Sim::new();
    young.handshake(0);
    young.c(10, PSH | ACK, 1001, 5001, b"\x16\x03\x01\x00\x05hello");
    young.engine.finish(&mut young.out);
    assert_eq!(young.engine.stats().streams_timed_out, 0, "not older than the timeout at the end");
}

// ---- One packet, one observation -----------------------------------------------------------------------

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("address")
}

fn udp_frame(src: (std::net::IpAddr, u16), dst: (std::net::IpAddr, u16), id: u16, payload: &[u8]) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.0, dst.0) else { panic!("v4 only") };
    let mut ip = etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::UDP, s.octets(), d.octets()).expect("ip");
    ip.identification = id;
    let b =
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6]).ip(etherparse::IpHeaders::Ipv4(ip, Default::default()));
    let mut f = Vec::new();
    b.udp(src.1, dst.1).write(&mut f, payload).expect("udp");
    f
}

/// An ICMP port unreachable from `from` quoting the UDP datagram `quoted` (an IP packet).
fn port_unreachable(from: std::net::IpAddr, to: std::net::IpAddr, quoted: &[u8]) -> Vec<u8> {
    let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (from, to) else { panic!("v4 only") };
    let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(s.octets(), d.octets(), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port));
    let mut f = Vec::new();
    b.write(&mut f, &quoted[..28]).expect("icmp");
    f
}

#[test]
fn a_packet_seen_on_two_veths_of_one_node_is_one_observation() {
    let mut s = Sim::new();
    s.engine.expect_several_interfaces();
    let (a, b) = ((ip("10.244.0.5"), 41_000), (ip("10.244.0.6"), 9999));
    let dgram = udp_frame(a, b, 7, b"ping");
    let icmp = port_unreachable(b.0, a.0, &dgram[14..]);
    // The sender's veth, then the receiver's; the ICMP error the other way round.
    s.frame_on(1, 0, &dgram);
    s.frame_on(2, 0, &dgram);
    s.frame_on(2, 1, &icmp);
    s.frame_on(1, 1, &icmp);
    let stats = s.engine.stats().clone();
    let out = s.finish();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(stats.duplicate_packets, 2);
    // A refused connection seen on both veths is one SynSent, and a retransmission on one interface is
    // not a copy.
    let mut s = Sim::new();
    s.engine.expect_several_interfaces();
    for (iface, ms) in [(1, 0), (2, 0), (1, 1000), (2, 1000)] {
        s.frame_on(iface, ms, &common::tcp_frame(s.client, s.server, SYN, 1000, 0, b""));
    }
    s.frame_on(2, 1001, &common::tcp_frame(s.server, s.client, RST | ACK, 0, 1001, b""));
    s.frame_on(1, 1001, &common::tcp_frame(s.server, s.client, RST | ACK, 0, 1001, b""));
    let stats = s.engine.stats().clone();
    assert_eq!(tcp_errors(&s.finish()), [(TcpState::SynSent, Some(SynReason::Refused), Some("server"))]);
    assert_eq!(stats.duplicate_packets, 3);
}

#[test]
fn a_service_connection_seen_before_and_after_dnat_is_reported_once_under_the_backend() {
    let mut s = Sim::new();
    s.engine.expect_several_interfaces();
    let client = (ip("10.244.0.5"), 41_000);
    let (service, backend) = ((ip("10.96.0.10"), 80), (ip("10.244.0.9"), 8080));
    // The client's veth sees the Service address; the backend's veth the pod after DNAT.
    s.frame_on(1, 0, &common::tcp_frame(client, service, SYN, 1000, 0, b""));
    s.frame_on(2, 0, &common::tcp_frame(client, backend, SYN, 1000, 0, b""));
    s.frame_on(2, 1, &common::tcp_frame(backend, client, RST | ACK, 0, 1001, b""));
    s.frame_on(1, 1, &common::tcp_frame(service, client, RST | ACK, 0, 1001, b""));
    let stats = s.engine.stats().clone();
    let out = s.finish();
    assert_eq!(tcp_errors(&out), [(TcpState::SynSent, Some(SynReason::Refused), Some("server"))]);
    assert_eq!((out[0].dst.ip, out[0].dst.port), (backend.0, Some(backend.1)));
    // The Service the client addressed is on the entry, for the agent to name.
    let svc = out[0].service.as_ref().expect("the Service address");
    assert_eq!((svc.ip, svc.port), (service.0, service.1));
    assert_eq!(stats.nat_copies, 2);
}

#[test]
fn a_service_connection_whose_syn_after_dnat_was_missed_is_still_named_by_its_service() {
    // The capture after DNAT lost the SYN (a full ring, a filter): the pair shows only at the SYN-ACK,
    // seen after DNAT first (the backend's veth) and then translated back (the client's). The connection
    // is kept under the backend, and the Service is the reply's source before translation.
    let mut s = Sim::new();
    s.engine.expect_several_interfaces();
    let client = (ip("10.244.0.5"), 41_000);
    let (service, backend) = ((ip("10.96.0.10"), 80), (ip("10.244.0.9"), 8080));
    s.frame_on(1, 0, &common::tcp_frame(client, service, SYN, 1000, 0, b""));
    s.frame_on(2, 1, &common::tcp_frame(backend, client, SYN | ACK, 5000, 1001, b""));
    s.frame_on(1, 1, &common::tcp_frame(service, client, SYN | ACK, 5000, 1001, b""));
    for (iface, to) in [(1, service), (2, backend)] {
        s.frame_on(iface, 2, &common::tcp_frame(client, to, ACK, 1001, 5001, b""));
    }
    for (iface, to) in [(1, service), (2, backend)] {
        s.frame_on(iface, 3, &common::tcp_frame(client, to, PSH | ACK, 1001, 5001, GET));
    }
    let acked = 1001 + GET.len() as u32;
    s.frame_on(2, 4, &common::tcp_frame(backend, client, PSH | ACK, 5001, acked, UNAVAILABLE));
    s.frame_on(1, 4, &common::tcp_frame(service, client, PSH | ACK, 5001, acked, UNAVAILABLE));
    let out = s.finish();
    assert_eq!(kinds(&out), ["http:503"], "{out:?}");
    assert_eq!((out[0].dst.ip, out[0].dst.port), (backend.0, Some(backend.1)));
    let svc = out[0].service.as_ref().map(|s| (s.ip, s.port));
    assert_eq!(svc, Some(service), "the Service the client addressed");
}

#[test]
fn an_egress_connection_seen_before_and_after_snat_is_reported_once_under_the_pod() {
    let mut s = Sim::with(EngineConfig { syn_timeout_ms: 1000, ..Default::default() });
    s.engine.expect_several_interfaces();
    let (pod, node, outside) = ((ip("10.244.0.5"), 41_000), (ip("192.0.2.10"), 61_000), (ip("198.51.100.7"), 443));
    for ms in [0, 1000, 3000] {
        s.frame_on(1, ms, &common::tcp_frame(pod, outside, SYN, 1000, 0, b""));
        s.frame_on(0, ms, &common::tcp_frame(node, outside, SYN, 1000, 0, b""));
    }
    let out = s.finish();
    assert_eq!(tcp_errors(&out), [(TcpState::SynSent, Some(SynReason::Timeout), None)]);
    assert_eq!((out[0].src.ip, out[0].src.port), (pod.0, Some(pod.1)));
}

#[test]
fn a_reply_seen_half_translated_back_does_not_replace_the_connection_seen_both_ways() {
    // The node itself calls a Service backed by a pod on the node: the request leaves DNATed and SNATed
    // (10.88.0.1:5785 -> 10.88.0.3:8080, on the bridge and the pod's veth); the reply is seen on the veth
    // as such, and again on the bridge half translated back (10.88.0.3:8080 -> 192.0.2.2:48974). Only the
    // first tuple is seen both ways: it is the connection.
    let mut s = Sim::new();
    s.engine.expect_several_interfaces();
    let (snat, pod, host) = ((ip("10.88.0.1"), 5785), (ip("10.88.0.3"), 8080), (ip("192.0.2.2"), 48_974));
    let both = |s: &mut Sim, ms, f: &[u8]| {
        s.frame_on(1, ms, f);
        s.frame_on(2, ms, f);
    };
    both(&mut s, 0, &common::tcp_frame(snat, pod, SYN, 1000, 0, b""));
    s.frame_on(2, 1, &common::tcp_frame(pod, snat, SYN | ACK, 5000, 1001, b""));
    s.frame_on(1, 1, &common::tcp_frame(pod, host, SYN | ACK, 5000, 1001, b""));
    both(&mut s, 2, &common::tcp_frame(snat, pod, ACK, 1001, 5001, b""));
    both(&mut s, 3, &common::tcp_frame(snat, pod, PSH | ACK, 1001, 5001, GET));
    s.frame_on(2, 4, &common::tcp_frame(pod, snat, PSH | ACK, 5001, 1029, UNAVAILABLE));
    s.frame_on(1, 4, &common::tcp_frame(pod, host, PSH | ACK, 5001, 1029, UNAVAILABLE));
    s.frame_on(2, 5, &common::tcp_frame(pod, snat, RST | ACK, 5056, 1029, b""));
    s.frame_on(1, 5, &common::tcp_frame(pod, host, RST | ACK, 5056, 1029, b""));
    let out = s.finish();
    assert_eq!(kinds(&out), ["http:503", "tcp:Reset::server"], "{out:?}");
    for e in &out {
        assert_eq!((e.src.ip, e.src.port), (snat.0, Some(snat.1)), "the tuple seen both ways");
    }
}

/// Dissectors' buffers (here an HTTP head arriving slowly) are charged to the same engine-wide budget as
/// out-of-order bytes (SPEC §3.5 "Bounds"): over it, a dissector holding more than 16 KiB stops reading its
/// stream (counted), and what it held is given back — the next connection is read again.
#[test]
fn dissector_buffers_are_charged_to_the_engine_wide_budget() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    while head.len() < 30_000 {
        head.extend_from_slice(format!("X-Filler: {}\r\n", "a".repeat(500)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    for (budget, want_pairs, want_stopped) in [(1 << 20, 2, 0), (20_000, 1, 1)] {
        let mut s = Sim::one(EngineConfig { max_out_of_order_total: budget, ..Default::default() });
        for (port, head) in [(40_001, &head[..]), (40_002, &b"GET /small HTTP/1.1\r\n\r\n"[..])] {
            s.client.1 = port;
            s.handshake(0);
            let mut seq = 1001u32;
            for chunk in head.chunks(1000) {
                s.c(1, PSH | ACK, seq, 5001, chunk);
                seq += chunk.len() as u32;
            }
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
            s.s(2, PSH | ACK, 5001, seq, ok);
            s.c(3, FIN | ACK, seq, 5001 + ok.len() as u32, b"");
            s.s(3, FIN | ACK, 5001 + ok.len() as u32, seq + 1, b"");
            s.c(3, ACK, seq + 1, 5002 + ok.len() as u32, b"");
        }
        let stopped = s.engine.stats().dissector_over_budget;
        let pairs = s.finish().iter().filter(|e| e.response.is_some() && e.error.is_none()).count();
        assert_eq!((pairs, stopped), (want_pairs, want_stopped), "budget {budget}");
    }
}

/// What a connection's dissector held is given back when the connection goes (here reset in the middle
/// of a head): otherwise every such connection would shrink the budget for good.
#[test]
fn a_closed_connection_gives_its_dissectors_bytes_back() {
    let filler = |n: usize| {
        let mut h = b"GET / HTTP/1.1\r\n".to_vec();
        while h.len() < n {
            h.extend_from_slice(format!("X-Filler: {}\r\n", "a".repeat(500)).as_bytes());
        }
        h
    };
    let mut s = Sim::one(EngineConfig { max_out_of_order_total: 40_000, ..Default::default() });
    s.client.1 = 40_001;
    s.handshake(0);
    let cut = filler(25_000);
    s.c(1, PSH | ACK, 1001, 5001, &cut);
    s.c(2, RST | ACK, 1001 + cut.len() as u32, 5001, b"");
    s.client.1 = 40_002;
    s.handshake(3);
    let mut head = filler(30_000);
    head.extend_from_slice(b"\r\n");
    let mut seq = 1001u32;
    for chunk in head.chunks(1000) {
        s.c(4, PSH | ACK, seq, 5001, chunk);
        seq += chunk.len() as u32;
    }
    s.s(5, PSH | ACK, 5001, seq, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let stopped = s.engine.stats().dissector_over_budget;
    let out = s.finish();
    assert_eq!(stopped, 0);
    assert!(out.iter().any(|e| e.response.as_ref().is_some_and(|r| r.status == 200)), "{out:?}");
}
