use super::*;

const C: Dir = Dir::ClientToServer;
const S: Dir = Dir::ServerToClient;

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Feeds (direction, time, bytes) in order and returns what the dissector reported.
fn run(steps: &[(Dir, u64, &[u8])]) -> (HttpDissector, Vec<HttpOutcome>) {
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
fn pair_timeout_then_the_late_response_is_not_an_orphan() {
    let (mut d, mut out) = run(&[(C, 0, b"GET /slow HTTP/1.1\r\n\r\n")]);
    d.check(t(29_999), 30_000, &mut out);
    assert!(out.is_empty());
    d.check(t(30_000), 30_000, &mut out);
    assert!(matches!(&out[..], [HttpOutcome::MissingResponse { decided, .. }] if *decided == t(30_000)));
    d.on_data(S, t(31_000), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &mut out);
    d.on_close(t(32_000), "capture ended", &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
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
    let (_, out) = run(&[(C, 0, b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n")]);
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
    assert!(matches!(&out[..], [HttpOutcome::Dissection { msg, .. }] if msg.contains("longer than 65536")), "{out:?}");
}

#[test]
fn gap_inside_a_sized_body_is_tolerated_elsewhere_it_stops() {
    let (mut d, mut out) =
        run(&[(C, 0, b"GET / HTTP/1.1\r\n\r\n"), (S, 1, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")]);
    assert!(!d.on_gap(S, 4));
    d.on_data(S, t(2), b"cdef", &mut out);
    assert_eq!(pairs(&out), vec![pair("GET", "/", 200, 10)]);
    assert!(d.on_gap(C, 100), "a gap between requests loses the framing");
    d.on_close(t(3), "connection reset", &mut out);
    assert_eq!(out.len(), 1);
}
