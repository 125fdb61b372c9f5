//! HTTP/2 and gRPC (SPEC §3.5), from crafted frames over crafted TCP: a pair per stream, gRPC status from
//! trailers and trailers-only responses, RST_STREAM and GOAWAY named by their codes, a client's cancel,
//! streams timed by their deadline or not at all, a client going away, streams never answered, grammar
//! violations, HPACK's dynamic table across requests, capture loss, and connections picked up mid-stream.

mod common;

use common::{Sim, ACK, FIN, PSH};
use faultline_core::dissect::{Dissector, Dissectors};
use faultline_core::entry::{Entry, ErrorType};
use faultline_core::EngineConfig;
use loona_hpack::Encoder;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const WINDOW_UPDATE: u8 = 8;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

/// One HTTP/2 connection: each side's HPACK encoder and next sequence number.
struct H2 {
    sim: Sim,
    enc: [Encoder<'static>; 2],
    seq: [u32; 2],
    ms: u64,
}

impl H2 {
    fn new(cfg: EngineConfig) -> H2 {
        let mut sim = Sim::with(cfg);
        sim.handshake(0);
        let mut h = H2 { sim, enc: [Encoder::new(), Encoder::new()], seq: [1001, 5001], ms: 10 };
        h.send(true, PREFACE);
        h.send(true, &frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]));
        h.send(false, &frame(SETTINGS, 0, 0, &[]));
        h
    }

    /// A connection the capture joins mid-stream: no handshake, no preface, HPACK tables already in use.
    fn midstream(cfg: EngineConfig) -> H2 {
        H2 { sim: Sim::with(cfg), enc: [Encoder::new(), Encoder::new()], seq: [70_001, 90_001], ms: 10 }
    }

    fn send(&mut self, from_client: bool, bytes: &[u8]) {
        let me = usize::from(!from_client);
        let (seq, ack) = (self.seq[me], self.seq[1 - me]);
        self.sim.tcp(self.ms, from_client, PSH | ACK, seq, ack, bytes);
        self.seq[me] = seq.wrapping_add(bytes.len() as u32);
        self.ms += 1;
    }

    /// Bytes the capture misses (the sequence numbers move on).
    fn lose(&mut self, from_client: bool, bytes: &[u8]) {
        let me = usize::from(!from_client);
        self.seq[me] = self.seq[me].wrapping_add(bytes.len() as u32);
    }

    fn block(&mut self, from_client: bool, fields: &[(&str, &str)]) -> Vec<u8> {
        let me = usize::from(!from_client);
        self.enc[me].encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    fn headers(&mut self, from_client: bool, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.block(from_client, fields);
        frame(HEADERS, END_HEADERS | if end_stream { END_STREAM } else { 0 }, stream, &block)
    }

    fn grpc_call(&mut self, stream: u32, path: &str) {
        self.grpc_call_within(stream, path, None);
    }

    /// A gRPC call with a deadline (`grpc-timeout`), or none.
    fn grpc_call_within(&mut self, stream: u32, path: &str, timeout: Option<&str>) {
        let mut fields = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "cart:50051"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        if let Some(t) = timeout {
            fields.push(("grpc-timeout", t));
        }
        let req = self.headers(true, stream, &fields, false);
        let body = frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 2, 8, 1]);
        self.send(true, &[req, body].concat());
    }

    fn grpc_answer(&mut self, stream: u32, status: &str, message: Option<&str>) {
        let head = self.headers(false, stream, &[(":status", "200"), ("content-type", "application/grpc")], false);
        let body = frame(DATA, 0, stream, &[0, 0, 0, 0, 1, 7]);
        let mut trailers = vec![("grpc-status", status)];
        if let Some(m) = message {
            trailers.push(("grpc-message", m));
        }
        let trailers = self.headers(false, stream, &trailers, true);
        self.send(false, &[head, body, trailers].concat());
    }

    fn close(self) -> (Vec<Entry>, faultline_core::stats::Stats) {
        self.close_by(false)
    }

    /// Both FINs, the server's first — or the client's (`client_first`).
    fn close_by(mut self, client_first: bool) -> (Vec<Entry>, faultline_core::stats::Stats) {
        let (c, s) = (self.seq[0], self.seq[1]);
        if client_first {
            self.sim.c(self.ms, FIN | ACK, c, s, b"");
            self.sim.s(self.ms + 1, FIN | ACK, s, c + 1, b"");
            self.sim.c(self.ms + 2, ACK, c + 1, s + 1, b"");
        } else {
            self.sim.s(self.ms, FIN | ACK, s, c, b"");
            self.sim.c(self.ms + 1, FIN | ACK, c, s + 1, b"");
            self.sim.s(self.ms + 2, ACK, s + 1, c + 1, b"");
        }
        let stats = self.sim.engine.stats().clone();
        (self.sim.finish(), stats)
    }

    /// The capture ends with the connection open.
    fn capture_ends(self) -> (Vec<Entry>, faultline_core::stats::Stats) {
        let stats = self.sim.engine.stats().clone();
        (self.sim.finish(), stats)
    }
}

/// `protocol status-or-error` per HTTP/2 entry, in order.
fn summary(out: &[Entry]) -> Vec<String> {
    out.iter()
        .filter(|e| matches!(e.protocol.as_str(), "http2" | "grpc"))
        .map(|e| {
            let what = match (&e.error, &e.response) {
                (Some(err), _) => format!("{}: {}", err.kind.as_str(), err.msg),
                (None, Some(r)) => r.status.to_string(),
                (None, None) => "-".into(),
            };
            let path = e.request.as_ref().map_or("", |r| r.path.as_str());
            format!("{} {path} {what}", e.protocol.as_str())
        })
        .collect()
}

#[test]
fn grpc_calls_carry_their_status_from_trailers_and_trailers_only_responses() {
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Add");
    h.grpc_answer(1, "0", None);
    h.grpc_call(3, "/shop.Cart/Checkout");
    h.grpc_answer(3, "14", Some("no%20healthy%20upstream"));
    // Trailers-only: one HEADERS with :status and grpc-status, END_STREAM.
    h.grpc_call(5, "/shop.Cart/Slow");
    let only = h.headers(
        false,
        5,
        &[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "4"),
            ("grpc-message", "Deadline Exceeded"),
        ],
        true,
    );
    h.send(false, &only);
    let (out, _) = h.close();
    assert_eq!(
        summary(&out),
        [
            "grpc /shop.Cart/Add 200",
            "grpc /shop.Cart/Checkout grpc: UNAVAILABLE: no healthy upstream",
            "grpc /shop.Cart/Slow grpc: DEADLINE_EXCEEDED: Deadline Exceeded",
        ]
    );
    let g = out[1].grpc.as_ref().expect("grpc");
    assert_eq!((g.service.as_str(), g.method.as_str(), g.status), ("shop.Cart", "Checkout", Some(14)));
    assert_eq!(out[1].error.as_ref().map(|e| e.kind), Some(ErrorType::Grpc));
    assert_eq!(out[0].request.as_ref().and_then(|r| r.headers.get("host")), Some("cart:50051"));
    assert_eq!(out[0].request.as_ref().map(|r| r.body_size), Some(7));
}

#[test]
fn plain_http2_pairs_carry_the_status_and_hpack_state_spans_requests() {
    let mut h = H2::new(EngineConfig::default());
    for (stream, path) in [(1, "/a"), (3, "/b"), (5, "/a")] {
        // The same custom fields each time: the encoder indexes them, later blocks refer to the table.
        let req = h.headers(
            true,
            stream,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "web"),
                ("x-request-id", "abcdef0123456789"),
            ],
            true,
        );
        h.send(true, &req);
    }
    for (stream, status) in [(3, "503"), (1, "200"), (5, "404")] {
        let resp = h.headers(false, stream, &[(":status", status), ("server", "envoy")], true);
        h.send(false, &resp);
    }
    let (out, _) = h.close();
    assert_eq!(summary(&out), ["http2 /b 503", "http2 /a 200", "http2 /a 404"]);
    for e in &out {
        let r = e.request.as_ref().expect("request");
        assert_eq!(r.headers.get("x-request-id"), Some("abcdef0123456789"), "decoded through the dynamic table");
        assert_eq!(e.response.as_ref().and_then(|r| r.headers.get("server")), Some("envoy"));
    }
}

#[test]
fn a_reset_stream_and_a_goaway_are_named_by_their_error_codes() {
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Add");
    h.send(false, &frame(RST_STREAM, 0, 1, &2u32.to_be_bytes())); // INTERNAL_ERROR from the server
    h.grpc_call(3, "/shop.Cart/Add");
    h.grpc_call(5, "/shop.Cart/Add");
    // The server processed up to stream 3, then gives up on the connection.
    let mut goaway = 3u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0xbu32.to_be_bytes());
    goaway.extend_from_slice(b"too_many_pings");
    h.grpc_answer(3, "0", None);
    h.send(false, &frame(GOAWAY, 0, 0, &goaway));
    let (out, stats) = h.close();
    assert_eq!(
        summary(&out),
        [
            "grpc /shop.Cart/Add http2: RST_STREAM INTERNAL_ERROR from the server (stream 1)",
            "grpc /shop.Cart/Add 200",
            "http2  http2: GOAWAY ENHANCE_YOUR_CALM from the server (last stream 3): too_many_pings",
        ]
    );
    let rst = out[0].http2.as_ref().expect("http2 info");
    assert_eq!(
        (rst.frame.as_str(), rst.error_code.as_str(), rst.by.as_str()),
        ("RST_STREAM", "INTERNAL_ERROR", "server")
    );
    assert_eq!(stats.http2_refused_by_goaway, 1, "stream 5 was not processed: clients retry it");
}

#[test]
fn a_stream_never_answered_is_a_half_connection_at_the_timeout_or_the_close() {
    // A gRPC call is timed by its deadline (plus a second); a plain HTTP/2 request by the pair timeout.
    let mut h = H2::new(EngineConfig { pair_timeout_ms: 1_000, ..EngineConfig::default() });
    h.grpc_call_within(1, "/shop.Cart/Add", Some("500m"));
    h.grpc_call_within(3, "/shop.Cart/Get", Some("10S"));
    let get =
        h.headers(true, 5, &[(":method", "GET"), (":scheme", "http"), (":path", "/x"), (":authority", "w")], true);
    h.send(true, &get);
    h.sim.advance(1_700);
    // Stream 1 is answered late: still reported, as a late pair.
    h.ms = 1_800;
    h.grpc_answer(1, "0", None);
    let (out, _) = h.close();
    let s = summary(&out);
    assert_eq!(s.len(), 4, "{s:?}");
    assert!(s[0].starts_with(
        "grpc /shop.Cart/Add pair-not-found: missing response: no response within its grpc-timeout (500 ms)"
    ));
    assert!(s[1].starts_with("http2 /x pair-not-found: missing response: no response within 1000 ms"), "{s:?}");
    assert!(s[2].starts_with("grpc /shop.Cart/Add pair-not-found: late response: status 200"), "{s:?}");
    assert!(s[3].starts_with("grpc /shop.Cart/Get pair-not-found: missing response: connection closed"), "{s:?}");
}

#[test]
fn a_frame_that_breaks_the_grammar_is_a_parser_error_once() {
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Add");
    h.send(false, &frame(RST_STREAM, 0, 0, &[0, 0, 0, 1])); // RST_STREAM on stream 0
    h.grpc_answer(1, "0", None);
    let (out, _) = h.close();
    assert_eq!(summary(&out), ["grpc /shop.Cart/Add dissection: parser error: RST_STREAM frame on stream 0"]);

    // A CONTINUATION that never comes: another frame in its place.
    let mut h = H2::new(EngineConfig::default());
    let block = h.block(true, &[(":method", "GET"), (":scheme", "http"), (":path", "/x"), (":authority", "w")]);
    let (a, b) = block.split_at(3);
    h.send(true, &frame(HEADERS, END_STREAM, 1, a));
    h.send(true, &frame(DATA, 0, 1, b"x"));
    let _ = b;
    let (out, _) = h.close();
    assert_eq!(summary(&out).len(), 1);
    assert!(summary(&out)[0].contains("parser error: DATA frame where the CONTINUATION of stream 1 was due"));
}

#[test]
fn continuation_frames_and_byte_by_byte_segments_are_read() {
    let mut h = H2::new(EngineConfig::default());
    let block = h.block(true, &[(":method", "GET"), (":scheme", "http"), (":path", "/split"), (":authority", "w")]);
    let (a, b) = block.split_at(4);
    let bytes = [frame(HEADERS, END_STREAM, 1, a), frame(CONTINUATION, END_HEADERS, 1, b)].concat();
    for byte in bytes {
        h.send(true, &[byte]);
    }
    let resp = h.headers(false, 1, &[(":status", "500")], true);
    for byte in resp {
        h.send(false, &[byte]);
    }
    let (out, _) = h.close();
    assert_eq!(summary(&out), ["http2 /split 500"]);
}

#[test]
fn loss_inside_a_data_payload_is_passed_over_and_loss_of_a_header_block_stops_quietly() {
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Upload");
    let head = h.headers(false, 1, &[(":status", "200"), ("content-type", "application/grpc")], false);
    h.send(false, &head);
    // A 3000-byte DATA frame whose middle the capture missed; the server's ACKs give the hole up.
    let data = frame(DATA, 0, 1, &[7; 3000]);
    h.send(false, &data[..1000]);
    h.lose(false, &data[1000..2000]);
    h.send(false, &data[2000..]);
    let trailers = h.headers(false, 1, &[("grpc-status", "13"), ("grpc-message", "boom")], true);
    h.send(false, &trailers);
    let (c, s) = (h.seq[0], h.seq[1]);
    h.sim.c(h.ms, ACK, c, s, b"");
    h.ms += 1;
    h.grpc_call(3, "/shop.Cart/Next");
    h.grpc_answer(3, "0", None);
    let (out, stats) = h.close();
    assert_eq!(summary(&out), ["grpc /shop.Cart/Upload grpc: INTERNAL: boom", "grpc /shop.Cart/Next 200"]);
    assert_eq!((stats.http2_gaps_skipped, stats.http2_broken), (1, 0));

    // The response's HEADERS lost: HPACK's table may have changed; nothing more is said of the connection.
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Add");
    h.grpc_call(3, "/shop.Cart/Add");
    let lost = h.headers(false, 1, &[(":status", "200"), ("content-type", "application/grpc"), ("x-new", "v")], false);
    h.lose(false, &lost);
    let rest = h.headers(false, 3, &[(":status", "200"), ("x-new", "v")], true);
    h.send(false, &rest);
    let (c, s) = (h.seq[0], h.seq[1]);
    h.sim.c(h.ms, ACK, c, s, b"");
    h.ms += 1;
    let (out, stats) = h.close();
    assert_eq!(summary(&out), Vec::<String>::new(), "no false errors");
    assert_eq!((stats.http2_broken, stats.http2_lost_streams), (1, 2));
}

#[test]
fn the_server_preface_may_come_first_and_the_dissector_can_be_switched_off() {
    let mut sim = Sim::new();
    sim.handshake(0);
    let settings = frame(SETTINGS, 0, 0, &[]);
    sim.s(10, PSH | ACK, 5001, 1001, &settings);
    let mut enc = Encoder::new();
    let req = enc.encode([(&b":method"[..], &b"GET"[..]), (b":path", b"/first"), (b":scheme", b"http")]);
    let bytes = [PREFACE.to_vec(), frame(HEADERS, END_HEADERS | END_STREAM, 1, &req)].concat();
    sim.c(11, PSH | ACK, 1001, 5001 + settings.len() as u32, &bytes);
    let resp = Encoder::new().encode([(&b":status"[..], &b"502"[..])]);
    let r = frame(HEADERS, END_HEADERS | END_STREAM, 1, &resp);
    sim.s(12, PSH | ACK, 5001 + settings.len() as u32, 1001 + bytes.len() as u32, &r);
    assert_eq!(summary(&sim.finish()), ["http2 /first 502"]);

    let mut h =
        H2::new(EngineConfig { dissectors: Dissectors::ALL.without(Dissector::Http2), ..EngineConfig::default() });
    h.grpc_call(1, "/shop.Cart/Add");
    h.grpc_answer(1, "14", None);
    let (out, _) = h.close();
    assert!(summary(&out).is_empty());
}

#[test]
fn kfl_selects_grpc_and_http2_fields() {
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Checkout");
    h.grpc_answer(1, "14", Some("down"));
    let get = h.headers(true, 3, &[(":method", "GET"), (":scheme", "http"), (":path", "/p")], true);
    h.send(true, &get);
    h.send(false, &frame(RST_STREAM, 0, 3, &7u32.to_be_bytes()));
    let (out, _) = h.close();
    let q = |s: &str| faultline_kfl::Query::parse(s).expect("query");
    let count = |s: &str| out.iter().filter(|e| q(s).matches(*e)).count();
    assert_eq!(count("grpc"), 1);
    assert_eq!(count("http2"), 2, "gRPC is HTTP/2 too");
    assert_eq!(count("http"), 0);
    assert_eq!(count(r#"grpc.statusName == "UNAVAILABLE" and grpc.service == "shop.Cart""#), 1);
    assert_eq!(count("grpc.status == 14"), 1);
    assert_eq!(count(r#"kind == "grpc/UNAVAILABLE""#), 1, "the kind, as ErrorViews count it");
    assert_eq!(count(r#"kind == "http2/REFUSED_STREAM""#), 1);
    assert_eq!(count(r#"http2.errorCode == "REFUSED_STREAM" and error.type == "http2""#), 1);
    assert_eq!(count("response.status > 400 or error or icmp or tcp"), 2, "both are errors on the dashboard");
}

#[test]
fn an_h2c_upgrade_continues_as_http2_with_the_upgrade_request_as_stream_1() {
    for http2 in [true, false] {
        let mut sim = Sim::with(EngineConfig {
            dissectors: if http2 { Dissectors::ALL } else { Dissectors::ALL.without(Dissector::Http2) },
            ..EngineConfig::default()
        });
        sim.handshake(0);
        let (mut c, mut s) = (1001u32, 5001u32);
        let up = b"GET /up HTTP/1.1\r\nHost: web\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                   HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n";
        sim.c(10, PSH | ACK, c, s, up);
        c += up.len() as u32;
        // The 101 and the server's first HTTP/2 frames in one segment: its answer to the upgrade request.
        let mut server_enc = Encoder::new();
        let answer = server_enc.encode([(&b":status"[..], &b"503"[..])]);
        let first = [
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec(),
            frame(SETTINGS, 0, 0, &[]),
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &answer),
        ]
        .concat();
        sim.s(11, PSH | ACK, s, c, &first);
        s += first.len() as u32;
        let req = Encoder::new().encode([(&b":method"[..], &b"GET"[..]), (b":path", b"/next"), (b":scheme", b"http")]);
        let then =
            [PREFACE.to_vec(), frame(SETTINGS, 0, 0, &[]), frame(HEADERS, END_HEADERS | END_STREAM, 3, &req)].concat();
        sim.c(12, PSH | ACK, c, s, &then);
        c += then.len() as u32;
        let ok = server_enc.encode([(&b":status"[..], &b"200"[..])]);
        sim.s(13, PSH | ACK, s, c, &frame(HEADERS, END_HEADERS | END_STREAM, 3, &ok));
        let out = sim.finish();
        if http2 {
            assert_eq!(summary(&out), ["http2 /up 503", "http2 /next 200"]);
        } else {
            let http: Vec<_> =
                out.iter().map(|e| (e.protocol.as_str(), e.response.as_ref().map(|r| r.status))).collect();
            assert_eq!(http, [("http", Some(101))], "without the HTTP/2 dissector the upgrade is an exchange");
        }
    }
}

fn cancel(h: &mut H2, stream: u32) {
    h.send(true, &frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
}

#[test]
fn a_clients_cancel_is_a_pair_unless_it_came_at_the_calls_deadline() {
    let mut h = H2::new(EngineConfig::default());
    // No deadline: the client changed its mind (grpc-go and grpc-java cancel routinely).
    h.grpc_call(1, "/shop.Cart/Watch");
    h.ms += 100;
    cancel(&mut h, 1);
    // Cancelled well before its 2 s deadline.
    h.grpc_call_within(3, "/shop.Cart/Get", Some("2S"));
    h.ms += 300;
    cancel(&mut h, 3);
    // Cancelled at its 500 ms deadline (the header rounds up; the client's timer fires a little early).
    h.grpc_call_within(5, "/shop.Cart/Slow", Some("500m"));
    h.ms += 495;
    cancel(&mut h, 5);
    // Plain HTTP/2: a browser navigating away.
    let get =
        h.headers(true, 7, &[(":method", "GET"), (":scheme", "http"), (":path", "/big"), (":authority", "w")], true);
    h.send(true, &get);
    let head = h.headers(false, 7, &[(":status", "200")], false);
    h.send(false, &head);
    cancel(&mut h, 7);
    // The server's CANCEL stays an error.
    h.grpc_call(9, "/shop.Cart/Add");
    h.send(false, &frame(RST_STREAM, 0, 9, &8u32.to_be_bytes()));
    let (out, _) = h.close();
    assert_eq!(
        summary(&out),
        [
            "grpc /shop.Cart/Watch -",
            "grpc /shop.Cart/Get -",
            "grpc /shop.Cart/Slow grpc: DEADLINE_EXCEEDED: the client cancelled the call at its deadline \
             (grpc-timeout 500 ms)",
            "http2 /big 200",
            "grpc /shop.Cart/Add http2: RST_STREAM CANCEL from the server (stream 9)",
        ]
    );
    let status = |i: usize| out[i].grpc.as_ref().and_then(|g| g.status_name.clone());
    assert_eq!(status(0).as_deref(), Some("CANCELLED"));
    assert_eq!(status(2).as_deref(), Some("DEADLINE_EXCEEDED"));
    for i in [0, 1, 3] {
        assert!(!faultline_core::kind::Kind::of(&out[i]).is_error(), "{:?}", out[i]);
        let rst = out[i].http2.as_ref().expect("the cancel is shown");
        assert_eq!((rst.error_code.as_str(), rst.by.as_str()), ("CANCEL", "client"));
    }
    assert_eq!(faultline_core::kind::Kind::of(&out[2]).to_string(), "grpc/DEADLINE_EXCEEDED");
    assert!((494.0..=496.0).contains(&out[2].elapsed_time), "{}", out[2].elapsed_time);
}

#[test]
fn grpc_calls_without_a_deadline_are_never_timed_out() {
    let mut h = H2::new(EngineConfig { pair_timeout_ms: 30_000, ..EngineConfig::default() });
    // A 40 s long poll, and a server stream that sends for a minute.
    h.grpc_call(1, "/shop.Events/Poll");
    h.grpc_call(3, "/shop.Events/Stream");
    let head = h.headers(false, 3, &[(":status", "200"), ("content-type", "application/grpc")], false);
    h.send(false, &head);
    for t in (1_000..60_000).step_by(5_000) {
        h.ms = t;
        h.send(false, &frame(DATA, 0, 3, &[0, 0, 0, 0, 1, 7]));
        h.sim.advance(t + 1);
    }
    h.ms = 40_000;
    h.grpc_answer(1, "0", None);
    h.ms = 61_000;
    let trailers = h.headers(false, 3, &[("grpc-status", "0")], true);
    h.send(false, &trailers);
    // A watch still open when the capture ends: nothing would have timed it out.
    h.grpc_call(5, "/shop.Events/Watch");
    h.ms = 200_000;
    h.sim.advance(200_000);
    let (out, _) = h.capture_ends();
    assert_eq!(summary(&out), ["grpc /shop.Events/Poll 200", "grpc /shop.Events/Stream 200"]);
    assert!((39_000.0..41_000.0).contains(&out[0].elapsed_time));
}

#[test]
fn a_client_that_goes_away_cuts_its_own_streams_and_a_server_that_does_leaves_them_unanswered() {
    // grpc-go's Close: GOAWAY, then the close, with a watch and a call open.
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Events/Watch");
    h.grpc_call_within(3, "/shop.Cart/Get", Some("5S"));
    let head = h.headers(false, 1, &[(":status", "200"), ("content-type", "application/grpc")], false);
    h.send(false, &head);
    h.send(true, &frame(GOAWAY, 0, 0, &[0; 8]));
    let (out, stats) = h.close_by(true);
    assert_eq!(summary(&out), Vec::<String>::new());
    assert_eq!(stats.http2_cut_by_client, 2);

    // A client that closes without GOAWAY (its process exited) left too.
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Events/Watch");
    let (out, stats) = h.close_by(true);
    assert_eq!((summary(&out).len(), stats.http2_cut_by_client), (0, 1));

    // The server closing with streams open leaves them unanswered.
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Events/Watch");
    h.grpc_call(3, "/shop.Cart/Get");
    let head = h.headers(false, 1, &[(":status", "200"), ("content-type", "application/grpc")], false);
    h.send(false, &head);
    let (out, stats) = h.close_by(false);
    assert_eq!(
        summary(&out),
        [
            "grpc /shop.Events/Watch dissection: unexpected EOF: connection closed before stream 1 ended",
            "grpc /shop.Cart/Get pair-not-found: missing response: connection closed",
        ]
    );
    assert_eq!(stats.http2_cut_by_client, 0);
}

#[test]
fn a_prior_knowledge_client_answered_by_http1_is_one_parser_error() {
    let mut sim = Sim::new();
    sim.handshake(0);
    let req = [PREFACE.to_vec(), frame(SETTINGS, 0, 0, &[])].concat();
    let mut enc = Encoder::new();
    let block = enc.encode(
        [(":method", "POST"), (":scheme", "http"), (":path", "/shop.Cart/Add"), (":authority", "web")]
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    let req = [req, frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)].concat();
    sim.c(10, PSH | ACK, 1001, 5001, &req);
    let resp = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request";
    sim.s(11, PSH | ACK, 5001, 1001 + req.len() as u32, resp);
    let c = 1001 + req.len() as u32;
    let s = 5001 + resp.len() as u32;
    sim.s(12, FIN | ACK, s, c, b"");
    sim.c(13, FIN | ACK, c, s + 1, b"");
    sim.s(14, ACK, s + 1, c + 1, b"");
    let out = sim.finish();
    assert_eq!(summary(&out), ["http2 /shop.Cart/Add dissection: parser error: server answered HTTP/1.x"]);
}

#[test]
fn grpc_status_is_read_after_trailers_beyond_the_header_bounds() {
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Add");
    let head = h.headers(false, 1, &[(":status", "200"), ("content-type", "application/grpc")], false);
    h.send(false, &head);
    // grpc-java appends grpc-status after the application's trailers: 100 of them here.
    let names: Vec<String> = (0..100).map(|i| format!("x-trailer-{i}")).collect();
    let value = "v".repeat(100);
    let mut fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    fields.push(("grpc-status", "14"));
    fields.push(("grpc-message", "backend%20down"));
    let trailers = h.headers(false, 1, &fields, true);
    h.send(false, &trailers);
    let (out, stats) = h.close();
    assert_eq!(summary(&out), ["grpc /shop.Cart/Add grpc: UNAVAILABLE: backend down"]);
    assert!(stats.http2_over_limit > 0, "the application's trailers were over the bounds");
}

#[test]
fn a_connection_picked_up_mid_stream_still_reports_its_resets_and_goaways() {
    let mut h = H2::midstream(EngineConfig::default());
    // The middle of a DATA frame first: no frame boundary, nothing read.
    h.send(false, &[7; 300]);
    // Streams 1..9 began before the capture did; the server resets one, the client cancels another.
    h.send(false, &frame(RST_STREAM, 0, 5, &7u32.to_be_bytes()));
    cancel(&mut h, 7);
    h.send(true, &[frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]), frame(PING, 0, 0, &[1; 8])].concat());
    // A new call, its header block made of literals (the encoder's table starts empty here too).
    h.grpc_call(11, "/shop.Cart/Add");
    h.grpc_answer(11, "14", Some("down"));
    let mut goaway = 11u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0xbu32.to_be_bytes());
    h.send(false, &frame(GOAWAY, 0, 0, &goaway));
    let (out, stats) = h.close_by(false);
    assert_eq!(
        summary(&out),
        [
            "http2  http2: RST_STREAM REFUSED_STREAM from the server (stream 5)",
            "grpc /shop.Cart/Add grpc: UNAVAILABLE: down",
            "http2  http2: GOAWAY ENHANCE_YOUR_CALM from the server (last stream 11)",
        ]
    );
    assert_eq!(stats.http2_cancels_unseen, 1, "a client's cancel is its choice, seen or not");
    assert!(stats.http2_resynced >= 2, "both directions found a frame boundary");
}

#[test]
fn mid_stream_a_header_block_that_refers_to_older_entries_stops_decoding_but_not_resets() {
    let mut h = H2::midstream(EngineConfig::default());
    // Before the capture: the server's encoder indexed its response fields.
    let _ = h.block(false, &[(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "0")]);
    h.send(false, &frame(PING, 0, 0, &[0; 8]));
    h.grpc_call(21, "/shop.Cart/Add");
    // Its answer refers to the table entries the dissector never saw: not decoded, counted.
    h.grpc_answer(21, "0", None);
    h.grpc_call(23, "/shop.Cart/Add");
    h.send(false, &frame(RST_STREAM, 0, 23, &2u32.to_be_bytes()));
    let (out, stats) = h.close_by(false);
    assert_eq!(summary(&out), ["grpc /shop.Cart/Add http2: RST_STREAM INTERNAL_ERROR from the server (stream 23)"]);
    assert!(stats.http2_blocks_undecoded >= 1 && stats.http2_broken == 1, "{stats:?}");
    assert_eq!(stats.http2_lost_streams, 1, "stream 21, open when decoding stopped: counted, not reported");
}

#[test]
fn after_loss_outside_a_data_payload_resets_are_still_reported() {
    let mut h = H2::new(EngineConfig::default());
    h.grpc_call(1, "/shop.Cart/Add");
    let lost = h.headers(false, 1, &[(":status", "200"), ("content-type", "application/grpc")], false);
    h.lose(false, &lost);
    let (c, s) = (h.seq[0], h.seq[1]);
    h.sim.c(h.ms, ACK, c, s, b"");
    h.ms += 1;
    // The next server segment starts with a frame: read from there.
    h.send(false, &frame(RST_STREAM, 0, 1, &2u32.to_be_bytes()));
    let (out, stats) = h.close();
    assert_eq!(summary(&out), ["grpc /shop.Cart/Add http2: RST_STREAM INTERNAL_ERROR from the server (stream 1)"]);
    assert_eq!(stats.http2_broken, 1);
}
