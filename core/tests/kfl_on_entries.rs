//! KFL over real engine entries: the `Entry` record (no allocation) must agree with KFL over the entry's
//! JSON form (SPEC §2) for every query, so that what `analyze --query` selects is what the JSON says.

mod common;

use common::*;
use faultline_core::Entry;
use faultline_kfl::Query;

fn sample_entries() -> Vec<Entry> {
    let mut s = Sim::new();
    s.c(0, SYN, 1000, 0, b"");
    s.s(1, RST | ACK, 0, 1001, b"");
    s.client.1 = 40001;
    s.handshake(10);
    s.c(20, PSH | ACK, 1001, 5001, b"GET /api/v1/x HTTP/1.1\r\nX-Request-Id: abc-7\r\n\r\n");
    s.s(25, PSH | ACK, 5001, 1047, b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nRetry-After: 30\r\n\r\n");
    s.c(30, PSH | ACK, 1047, 5058, b"GET /hang HTTP/1.1\r\n\r\n");
    s.s(40, RST | ACK, 5058, 1070, b"");
    let mut quoted = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    quoted.extend([0x9c, 0x40, 0x00, 0x35, 0, 8, 0, 0]);
    let ty = etherparse::Icmpv4Type::Unknown { type_u8: 3, code_u8: 13, bytes5to8: [0; 4] };
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 254], [10, 0, 0, 1], 64)
        .icmpv4(ty)
        .write(&mut f, &quoted)
        .expect("builds");
    s.frame(50, &f);
    let mut out = s.finish();
    // The operator's explanation (SPEC §3.7) on the refused connection.
    if let Some(e) = out.iter_mut().find(|e| e.tcp.as_ref().is_some_and(|t| t.reason.is_some())) {
        e.cause = Some(faultline_core::entry::Cause {
            reason: faultline_core::entry::CauseReason::PortNotServed,
            message: "pod shop/web does not declare port 80/TCP".into(),
            objects: vec![faultline_core::entry::ObjectRef::new("Pod", Some("shop"), "web")],
            evidence: vec![],
        });
    }
    out
}

const QUERIES: &[&str] = &[
    "response.status > 400 or error or icmp or tcp",
    "!error",
    "!icmp",
    "!tcp",
    "http",
    "response.status > 400 or icmp",
    r#"request.headers["x-request-id"] == "abc-7""#,
    r#"request.headers["X-REQUEST-ID"].startsWith("abc")"#,
    r#"response.headers["retry-after"] >= 30"#,
    "icmp.original.dst.port == 53",
    r#"icmp.codeName == "CommunicationAdministrativelyProhibited""#,
    r#"tcp.state == "SynSent" and tcp.reason == "refused""#,
    r#"tcp.by == "server""#,
    r#"error.type == "pair-not-found" and error.msg.startsWith("missing response")"#,
    r#"src.ip == "10.0.0.1" and dst.port == 80"#,
    r#"src.ip.startsWith("10.0.0.")"#,
    r#"timestamp > "2026-11-27T23:12:57.020000Z""#,
    r#"request.path == r"^/api/v\d+/""#,
    "elapsedTime > 1",
    "node == null",
    "src.port == null",
    "tcp.reason == null",
    r#"cause.reason == "PortNotServed""#,
    r#"cause.message.contains("does not declare")"#,
    "cause == null",
    "cause and tcp",
];

#[test]
fn entry_records_agree_with_their_json() {
    let entries = sample_entries();
    assert!(entries.len() >= 5, "{entries:?}");
    let json: Vec<serde_json::Value> = entries.iter().map(|e| serde_json::to_value(e).expect("serialises")).collect();
    for q in QUERIES {
        let query = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        let on_entries: Vec<bool> = entries.iter().map(|e| query.matches(e)).collect();
        let on_json: Vec<bool> = json.iter().map(|j| query.matches(j)).collect();
        assert_eq!(on_entries, on_json, "{q}");
    }
}

#[test]
fn the_dashboard_query_selects_every_error_and_the_5xx() {
    let entries = sample_entries();
    let q = Query::parse("response.status > 400 or error or icmp or tcp").expect("parses");
    let picked: Vec<String> = entries
        .iter()
        .filter(|e| q.matches(*e))
        .map(|e| match (&e.tcp, &e.response, &e.error, &e.icmp) {
            (Some(t), ..) => t.state.as_str().to_owned(),
            (_, Some(r), ..) => r.status.to_string(),
            (_, _, Some(err), _) => err.kind.as_str().to_owned(),
            (.., Some(i)) => i.type_name.clone(),
            _ => "?".into(),
        })
        .collect();
    assert_eq!(picked, vec!["SynSent", "503", "Reset", "pair-not-found", "DestinationUnreachable"]);
}
