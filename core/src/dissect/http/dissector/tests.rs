use super::*;

const C: Direction = Direction::ToServer;
const S: Direction = Direction::ToClient;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Feeds (direction, time, bytes) in order and returns what the dissector reported.
fn run(steps: &[(Direction, u64, &[u8])]) -> (HttpDissector, Vec<HttpOutcome>) {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    for (dir, ms, bytes) in steps {
        d.on_data(*dir, t(*ms), bytes, &mut out);
    }
    (d, out)
}

fn pairs(out: &[HttpOutcome]) -> Vec<(String, String, u16, u64)> {
    out.iter()
        .filter_map(|o| match o {
            HttpOutcome::Pair { request, response, .. } => {
                Some((request.method.clone(), request.path.clone(), response.status, response.body_size))
            }
            _ => None,
        })
        .collect()
}

fn pair(m: &str, p: &str, s: u16, b: u64) -> (String, String, u16, u64) {
    (m.into(), p.into(), s, b)
}

#[test]
fn content_length_pair_with_latency() {
    let (_, out) = run(&[
        (C, 0, b"GET /a HTTP/1.1\r\nHost: x\r\nX-Request-Id: 42\r\n\r\n"),
        (S, 7, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
    ]);
    assert_eq!(pairs(&out), vec![pair("GET", "/a", 200, 5)]);
    let HttpOutcome::Pair { req_ts, resp_ts, request, .. } = &out[0] else { panic!("{out:?}") };
    assert_eq!(resp_ts.millis_since(*req_ts), 7.0);
    assert_eq!(request.headers.get("x-request-id"), Some("42"));
}

#[test]
fn pipelined_requests_pair_in_order() {
    let (_, out) = run(&[
        (C, 0, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPOST /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
        (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        (S, 2, b"HTTP/1.1 503 Busy\r\nContent-Length: 2\r\n\r\nno"),
    ]);
    assert_eq!(pairs(&out), vec![pair("GET", "/1", 200, 1), pair("GET", "/2", 404, 0), pair("POST", "/3", 503, 2)]);
}

#[test]
fn chunked_body_split_at_every_byte() {
    let resp: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n";
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    d.on_data(C, t(0), b"GET / HTTP/1.1\r\n\r\n", &mut out);
    for (i, b) in resp.iter().enumerate() {
        d.on_data(S, t(1 + i as u64), std::slice::from_ref(b), &mut out);
    }
    assert_eq!(pairs(&out), vec![pair("GET", "/", 200, 9)]);
}

#[test]
fn request_split_at_every_byte() {
    let req: &[u8] = b"POST /form HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /next HTTP/1.1\r\n\r\n";
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    for b in req {
        d.on_data(C, t(0), std::slice::from_ref(b), &mut out);
    }
    d.on_data(
        S,
        t(1),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        &mut out,
    );
    assert_eq!(pairs(&out), vec![pair("POST", "/form", 200, 0), pair("GET", "/next", 200, 0)]);
}

#[test]
fn close_delimited_body_ends_at_fin() {
    let (mut d, mut out) =
        run(&[(C, 0, b"GET /old HTTP/1.0\r\n\r\n"), (S, 1, b"HTTP/1.0 200 OK\r\n\r\nsome "), (S, 2, b"bytes")]);
    assert!(out.is_empty(), "not complete before the FIN");
    d.on_end(S, t(3), &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/old", 200, 10)]);
    assert_eq!(out.len(), 1);
}

#[test]
fn head_response_has_no_body_despite_content_length() {
    let (_, out) = run(&[
        (C, 0, b"HEAD /big HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n"),
        (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
    ]);
    assert_eq!(pairs(&out), vec![pair("HEAD", "/big", 200, 0), pair("GET", "/small", 200, 2)]);
}

#[test]
fn interim_100_continue_does_not_pair() {
    let (_, out) = run(&[
        (C, 0, b"PUT /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
        (S, 1, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (C, 2, b"data"),
        (S, 3, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ]);
    assert_eq!(pairs(&out), vec![pair("PUT", "/up", 201, 0)]);
}

#[test]
fn no_content_and_not_modified_have_no_body() {
    let (_, out) = run(&[
        (C, 0, b"DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\nGET /z HTTP/1.1\r\n\r\n"),
        (S, 1, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
        (S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!"),
    ]);
    assert_eq!(pairs(&out), vec![pair("DELETE", "/x", 204, 0), pair("GET", "/y", 304, 0), pair("GET", "/z", 200, 1)]);
}

#[test]
fn switching_protocols_ends_dissection_quietly() {
    let (mut d, mut out) = run(&[
        (C, 0, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
        (S, 1, b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello"),
        (C, 2, b"\x81\x85garbage"),
    ]);
    d.on_close(t(3), "connection reset", &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/ws", 101, 0)]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(d.is_stopped());
}

#[test]
fn garbage_response_is_a_parser_error_carrying_the_request() {
    let (mut d, mut out) = run(&[(C, 0, b"GET /g HTTP/1.1\r\n\r\n"), (S, 1, b"garbage\r\n\r\n")]);
    d.on_end(S, t(2), &mut out);
    assert_eq!(out.len(), 1, "no pair-not-found after a dissection error: {out:?}");
    let HttpOutcome::Dissection { msg, request, .. } = &out[0] else { panic!("{out:?}") };
    assert!(msg.starts_with("parser error"), "{msg}");
    assert_eq!(request.as_ref().map(|(_, r)| r.path.as_str()), Some("/g"));
}

#[test]
fn response_cut_short_is_unexpected_eof() {
    let (mut d, mut out) = run(&[
        (C, 0, b"GET /cut HTTP/1.1\r\n\r\n"),
        (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"),
    ]);
    d.on_end(S, t(2), &mut out);
    assert_eq!(out.len(), 1);
    let HttpOutcome::Dissection { msg, request, response, .. } = &out[0] else { panic!("{out:?}") };
    assert_eq!(msg, "unexpected EOF: connection closed 90 bytes short of the response body's Content-Length");
    assert_eq!(request.as_ref().map(|(_, r)| r.path.as_str()), Some("/cut"));
    assert_eq!(response.as_ref().map(|r| r.status), Some(200));
}

#[test]
fn eof_inside_a_header_and_inside_chunks() {
    let (mut d, mut out) = run(&[(C, 0, b"GET / HTTP/1.1\r\n\r\n"), (S, 1, b"HTTP/1.1 200 OK\r\nConte")]);
    d.on_close(t(2), "connection reset", &mut out);
    assert!(
        matches!(&out[..], [HttpOutcome::Dissection { msg, .. }] if msg == "unexpected EOF: connection reset after 22 bytes of the response header"),
        "{out:?}"
    );
    let (mut d, mut out) = run(&[
        (C, 0, b"GET / HTTP/1.1\r\n\r\n"),
        (S, 1, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"),
    ]);
    d.on_end(S, t(2), &mut out);
    assert!(matches!(&out[..], [HttpOutcome::Dissection { msg, .. }] if msg.contains("before the last chunk")));
}

#[test]
fn request_without_response_is_missing_response_at_server_fin_or_reset() {
    let (mut d, mut out) = run(&[(C, 0, b"GET /silent HTTP/1.1\r\n\r\n")]);
    d.on_end(C, t(1), &mut out);
    assert!(out.is_empty(), "the client's FIN does not stop the server from answering");
    d.on_end(S, t(2), &mut out);
    assert!(matches!(&out[..], [HttpOutcome::MissingResponse { why: "server closed the connection", .. }]));

    let (mut d, mut out) = run(&[(C, 0, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")]);
    d.on_close(t(5), "connection reset", &mut out);
    assert_eq!(out.len(), 2, "one per request: {out:?}");
}

#[test]
fn pair_timeout_then_the_late_response_is_its_late_answer_not_an_orphan() {
    let (mut d, mut out) = run(&[(C, 0, b"GET /slow HTTP/1.1\r\n\r\n")]);
    d.check(t(29_999), 30_000, &mut out);
    assert!(out.is_empty());
    d.check(t(30_000), 30_000, &mut out);
    assert!(matches!(&out[..], [HttpOutcome::MissingResponse { decided, .. }] if *decided == t(30_000)));
    d.on_data(S, t(31_000), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_close(t(32_000), "capture ended", &mut out);
    // Reported as its request's late answer (SPEC §3.5), never as an orphan.
    assert!(matches!(&out[1..], [HttpOutcome::Pair { late: Some(30_000), .. }]), "{out:?}");
}

#[test]
fn response_without_request_is_missing_request_at_close() {
    let (mut d, mut out) = run(&[(S, 0, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")]);
    assert!(out.is_empty(), "decided only at close or after pairTimeoutMs");
    d.on_end(S, t(1), &mut out);
    assert!(matches!(&out[..], [HttpOutcome::MissingRequest { .. }]), "{out:?}");
}

#[test]
fn bad_request_head_is_a_parser_error_without_request() {
    let (mut d, mut out) = run(&[(C, 0, b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")]);
    assert!(out.is_empty(), "the server's answer decides: {out:?}");
    d.on_end(S, t(5), &mut out);
    assert!(
        matches!(&out[..], [HttpOutcome::Dissection { msg, request: None, .. }] if msg == "parser error: request invalid header name"),
        "{out:?}"
    );
}

#[test]
fn oversized_header_is_a_parser_error() {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    d.on_data(C, t(0), b"GET / HTTP/1.1\r\nX: ", &mut out);
    let filler = vec![b'a'; 8192];
    for i in 0..10 {
        d.on_data(C, t(i), &filler, &mut out);
    }
    // Nginx answers 431; the error carries it.
    d.on_data(S, t(11), b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n", &mut out);
    assert!(matches!(&out[..], [HttpOutcome::Dissection { response: Some(r), .. }] if r.status == 431), "{out:?}");
    assert!(matches!(&out[..], [HttpOutcome::Dissection { msg, .. }] if msg.contains("longer than 65536")), "{out:?}");
}

#[test]
fn gap_inside_a_sized_body_is_counted_and_a_gap_between_messages_resynchronises() {
    let (mut d, mut out) =
        run(&[(C, 0, b"GET / HTTP/1.1\r\n\r\n"), (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")]);
    d.on_gap(S, 4, t(2), &mut out);
    d.on_data(S, t(2), b"cdef", &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/", 200, 10)]);
    // A whole request lost between two others: its answer is dropped (counted), the next pair is found.
    d.on_gap(C, 100, t(3), &mut out);
    d.on_data(S, t(4), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_data(C, t(5), b"GET /next HTTP/1.1\r\n\r\n", &mut out);
    d.on_data(S, t(6), b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_close(t(7), "connection reset", &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/", 200, 10), pair("GET", "/next", 503, 0)]);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(d.pairing.counters.lost_exchanges, 1);
}

#[test]
fn a_gap_exactly_the_rest_of_a_body_ends_the_message() {
    let (mut d, mut out) =
        run(&[(C, 0, b"GET / HTTP/1.1\r\n\r\n"), (S, 1, b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nab")]);
    d.on_gap(S, 8, t(2), &mut out);
    d.on_data(C, t(3), b"GET /2 HTTP/1.1\r\n\r\n", &mut out);
    d.on_data(S, t(4), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/", 500, 10), pair("GET", "/2", 200, 0)]);
}

#[test]
fn a_lost_response_costs_its_exchange_only() {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    d.on_data(C, t(0), b"GET /1 HTTP/1.1\r\n\r\n", &mut out);
    // The whole response to /1 is in a gap (the client's ACK proved it was sent).
    d.on_gap(S, 40, t(1), &mut out);
    d.on_data(C, t(2), b"GET /2 HTTP/1.1\r\n\r\n", &mut out);
    d.on_data(S, t(3), b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_data(C, t(4), b"GET /3 HTTP/1.1\r\n\r\n", &mut out);
    d.on_data(S, t(5), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_close(t(6), "connection closed", &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/2", 502, 0), pair("GET", "/3", 200, 0)]);
    assert_eq!(out.len(), 2, "no half connection for the exchange the gap hit: {out:?}");
    assert_eq!(d.pairing.counters.lost_exchanges, 1);
}

#[test]
fn a_chunked_response_cut_by_a_gap_is_still_reported_with_its_status() {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    d.on_data(C, t(0), b"GET /1 HTTP/1.1\r\n\r\n", &mut out);
    d.on_data(S, t(1), b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", &mut out);
    d.on_gap(S, 3000, t(2), &mut out);
    // Resynchronised in the middle of a segment, after a newline.
    d.on_data(S, t(3), b"garbage\r\n0\r\n\r\n", &mut out);
    d.on_data(C, t(4), b"GET /2 HTTP/1.1\r\n\r\n", &mut out);
    d.on_data(S, t(5), b"tail\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    // The body as sent: 2 bytes seen and 3000 missed.
    assert_eq!(pairs(&out), vec![pair("GET", "/1", 503, 3002), pair("GET", "/2", 200, 0)]);
}

#[test]
fn mid_stream_responses_before_the_first_request_are_counted_not_reported() {
    let mut d = HttpDissector::new(true);
    let mut out = Vec::new();
    d.on_data(S, t(0), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", &mut out);
    d.on_data(C, t(1), b"GET /x HTTP/1.1\r\n\r\n", &mut out);
    d.on_data(S, t(2), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_data(S, t(3), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_close(t(40_000), "capture ended", &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/x", 200, 0)]);
    assert_eq!(out.len(), 2, "a response after the first request without one is still an orphan: {out:?}");
    assert_eq!(d.pairing.counters.early_responses, 1);
}

#[test]
fn the_pair_timer_starts_when_the_request_is_sent_whole_and_late_answers_are_reported() {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    d.on_data(C, t(0), b"POST /upload HTTP/1.1\r\nContent-Length: 6\r\n\r\nab", &mut out);
    d.check(t(50_000), 30_000, &mut out);
    assert!(out.is_empty(), "a slow upload is not waiting for its answer yet: {out:?}");
    d.on_data(C, t(60_000), b"cdef", &mut out);
    d.check(t(89_999), 30_000, &mut out);
    assert!(out.is_empty());
    d.check(t(95_000), 30_000, &mut out);
    let [HttpOutcome::MissingResponse { decided, .. }] = &out[..] else { panic!("{out:?}") };
    assert_eq!(*decided, t(90_000), "decided at the deadline, not at the sweep");
    d.on_data(S, t(96_000), b"HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\n\r\n", &mut out);
    let HttpOutcome::Pair { late, response, .. } = &out[1] else { panic!("{out:?}") };
    assert_eq!((*late, response.status), (Some(30_000), 504));
}

#[test]
fn a_final_status_to_expect_100_continue_completes_the_exchange() {
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    d.on_data(C, t(0), b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n", &mut out);
    d.on_data(S, t(1), b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", &mut out);
    d.on_end(C, t(2), &mut out);
    d.on_end(S, t(2), &mut out);
    assert_eq!(pairs(&out), vec![pair("PUT", "/f", 413, 0)]);
    assert_eq!(out.len(), 1, "no unexpected EOF: {out:?}");
}

#[test]
fn lenient_like_nginx_and_browsers() {
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\nX-Folded: a\r\n  b\r\n".to_vec();
    for i in 0..200 {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\nok");
    let (_, out) = run(&[(C, 0, b"GET / HTTP/1.1\r\n\r\n"), (S, 1, &head)]);
    assert_eq!(pairs(&out), vec![pair("GET", "/", 200, 2)]);
    let HttpOutcome::Pair { response, .. } = &out[0] else { panic!() };
    assert_eq!(response.headers.get("x-folded"), Some("a b"));
    let (_, out) =
        run(&[(C, 0, b"GET / HTTP/1.1\r\n\r\n"), (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok")]);
    assert_eq!(pairs(&out), vec![pair("GET", "/", 200, 2)]);
    let (_, out) =
        run(&[(C, 0, b"GET / HTTP/1.1\r\n\r\n"), (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok")]);
    assert!(matches!(&out[..], [HttpOutcome::Dissection { msg, .. }] if msg.starts_with("parser error")), "{out:?}");
}

#[test]
fn a_head_in_one_byte_segments_is_parsed_in_linear_time() {
    // 60 KiB of headers a byte at a time: re-parsing the buffer per byte would be ~1.8 G byte visits.
    let mut d = HttpDissector::default();
    let mut out = Vec::new();
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    while head.len() < 60_000 {
        head.extend_from_slice(format!("X-Filler: {}\r\n", "a".repeat(600)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let started = std::time::Instant::now();
    for b in head.chunks(1) {
        d.on_data(C, t(0), b, &mut out);
    }
    d.on_data(S, t(1), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    assert_eq!(pairs(&out).len(), 1, "{out:?}");
    // Generous: linear work is a few ms even unoptimised; quadratic was tens of seconds.
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_request_that_does_not_parse_is_a_parser_error_with_the_servers_verdict() {
    // A pipelined good request, then one with a broken header line; nginx answers the first, then 400.
    let (mut d, mut out) = run(&[
        (C, 0, b"GET /ok HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nBad Header\r\n\r\n"),
        (S, 3, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (S, 4, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"),
    ]);
    d.on_end(S, t(5), &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/ok", 200, 0)]);
    let [_, HttpOutcome::Dissection { ts, end, msg, request: None, response: Some(r) }] = &out[..] else {
        panic!("{out:?}")
    };
    assert_eq!((msg.as_str(), r.status, r.body_size), ("parser error: request invalid header name", 400, 3));
    assert_eq!((*ts, *end), (t(0), t(4)));
}

#[test]
fn a_request_that_does_not_parse_and_is_never_answered_is_a_parser_error_at_the_pair_timeout() {
    let (mut d, mut out) = run(&[(C, 0, b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")]);
    d.check(t(29_999), 30_000, &mut out);
    assert!(out.is_empty());
    d.check(t(30_000), 30_000, &mut out);
    assert!(
        matches!(&out[..], [HttpOutcome::Dissection { response: None, msg, .. }] if msg.starts_with("parser error")),
        "{out:?}"
    );
    assert!(!d.awaits_response());
}

#[test]
fn an_http_0_9_request_answered_is_no_error() {
    // Answered with the body alone (HTTP/0.9), or with a status line (a modern server).
    let (mut d, mut out) = run(&[(C, 0, b"GET /\r\n"), (S, 1, b"<html>hello</html>")]);
    d.on_end(S, t(2), &mut out);
    assert!(out.is_empty(), "{out:?}");
    let (mut d, mut out) =
        run(&[(C, 0, b"GET /index.html\n"), (S, 1, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")]);
    d.on_end(S, t(2), &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/index.html", 400, 0)]);
    let HttpOutcome::Pair { request, .. } = &out[0] else { panic!() };
    assert_eq!(request.version, "HTTP/0.9");
    // Never answered: a half connection like any request.
    let (mut d, mut out) = run(&[(C, 0, b"GET /\r\n")]);
    d.on_end(S, t(2), &mut out);
    assert!(matches!(&out[..], [HttpOutcome::MissingResponse { .. }]), "{out:?}");
}
