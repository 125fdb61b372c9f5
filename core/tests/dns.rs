//! DNS over UDP (SPEC §3.5), from crafted datagrams: an entry per exchange, errors for the codes that are
//! errors, NXDOMAIN only when final, retransmissions and timeouts as a resolver makes them.

mod common;

use std::net::IpAddr;

use common::Sim;
use etherparse::PacketBuilder;
use faultline_core::dissect::{Dissector, Dissectors};
use faultline_core::entry::{Entry, ErrorType};
use faultline_core::EngineConfig;

const CLIENT: (&str, u16) = ("10.0.1.5", 40000);
const SERVER: (&str, u16) = ("10.0.0.10", 53);

fn sock((ip, port): (&str, u16)) -> (IpAddr, u16) {
    (ip.parse().expect("ip"), port)
}

fn udp(src: (IpAddr, u16), dst: (IpAddr, u16), payload: &[u8]) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.0, dst.0) else { panic!("v4 only") };
    let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(s.octets(), d.octets(), 64).udp(src.1, dst.1);
    let mut f = Vec::new();
    b.write(&mut f, payload).expect("udp");
    f
}

fn name_bytes(name: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    b.extend(name_bytes(name));
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&[0, 1]);
    b
}

/// The answer to `query(id, name, qtype)` with `rcode`, and one A record when the code is NOERROR.
fn answer(id: u16, name: &str, qtype: u16, rcode: u8) -> Vec<u8> {
    let mut b = query(id, name, qtype);
    b[2] = 0x81;
    b[3] = 0x80 | rcode;
    if rcode == 0 && qtype == 1 {
        b[7] = 1;
        b.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 2, 7]);
    }
    b
}

struct Dns {
    sim: Sim,
}

impl Dns {
    fn new() -> Dns {
        Dns { sim: Sim::with(EngineConfig { dns_timeout_ms: 5_000, ..EngineConfig::default() }) }
    }
    fn ask(&mut self, ms: u64, id: u16, name: &str, qtype: u16) {
        self.sim.frame(ms, &udp(sock(CLIENT), sock(SERVER), &query(id, name, qtype)));
    }
    fn answer(&mut self, ms: u64, id: u16, name: &str, qtype: u16, rcode: u8) {
        self.sim.frame(ms, &udp(sock(SERVER), sock(CLIENT), &answer(id, name, qtype, rcode)));
    }
}

/// `name type rcode-or-none error-type:msg-or-none elapsed`.
fn summary(out: &[Entry]) -> Vec<String> {
    out.iter()
        .map(|e| {
            let d = e.dns.as_ref().expect("a dns entry");
            format!(
                "{} {} {} {} {}",
                d.question.name,
                d.question.qtype,
                d.rcode_name.as_deref().unwrap_or("-"),
                e.error.as_ref().map(|x| format!("{}:{}", x.kind.as_str(), x.msg)).unwrap_or_else(|| "ok".into()),
                e.elapsed_time
            )
        })
        .collect()
}

#[test]
fn an_answered_query_is_one_entry_with_its_answer() {
    let mut d = Dns::new();
    d.ask(0, 1, "web.shop.svc.cluster.local", 1);
    d.answer(3, 1, "web.shop.svc.cluster.local", 1, 0);
    let out = d.sim.finish();
    assert_eq!(summary(&out), ["web.shop.svc.cluster.local A NOERROR ok 3"]);
    let e = &out[0];
    assert_eq!((e.src.port, e.dst.port), (Some(40000), Some(53)), "src is the client");
    assert_eq!(e.response.as_ref().map(|r| r.status), Some(0), "response.status is the rcode");
    assert_eq!(e.dns.as_ref().map(|d| d.answers.clone()), Some(vec!["A 10.0.2.7".to_owned()]));
    let json = serde_json::to_value(e).expect("json");
    assert_eq!(json["protocol"], "dns");
    assert_eq!(json["dns"]["question"]["type"], "A");
    assert_eq!(json["dns"]["rcodeName"], "NOERROR");
}

#[test]
fn servfail_refused_formerr_notimp_notauth_and_notzone_are_errors() {
    let mut d = Dns::new();
    for (i, rcode) in [2u8, 5, 1, 4, 9, 10].into_iter().enumerate() {
        let id = 10 + i as u16;
        let name = format!("db{i}.example");
        d.ask(i as u64 * 10, id, &name, 1);
        d.answer(i as u64 * 10 + 1, id, &name, 1, rcode);
    }
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        [
            "db0.example A SERVFAIL dns:SERVFAIL for db0.example A 1",
            "db1.example A REFUSED dns:REFUSED for db1.example A 1",
            "db2.example A FORMERR dns:FORMERR for db2.example A 1",
            "db3.example A NOTIMP dns:NOTIMP for db3.example A 1",
            "db4.example A NOTAUTH dns:NOTAUTH for db4.example A 1",
            "db5.example A NOTZONE dns:NOTZONE for db5.example A 1",
        ]
    );
}

#[test]
fn nxdomain_is_an_error_only_when_final() {
    // `nosuch` from a pod with ndots:5: three search domains answered NXDOMAIN, then the name itself.
    let mut d = Dns::new();
    let steps = ["nosuch.shop.svc.cluster.local", "nosuch.svc.cluster.local", "nosuch.cluster.local", "nosuch"];
    for (i, name) in steps.iter().enumerate() {
        let t = i as u64 * 4;
        d.ask(t, 100 + i as u16, name, 1);
        d.ask(t, 200 + i as u16, name, 28);
        d.answer(t + 1, 100 + i as u16, name, 1, 3);
        d.answer(t + 2, 200 + i as u16, name, 28, 3);
    }
    let search_steps = d.sim.engine.stats().dns_search_steps;
    let out = d.sim.finish();
    let errors: Vec<_> = out.iter().filter_map(|e| e.error.as_ref().map(|x| x.msg.clone())).collect();
    assert_eq!(errors, ["NXDOMAIN for nosuch A", "NXDOMAIN for nosuch AAAA"]);
    assert_eq!(out.len(), 8, "an entry per exchange, the search steps without error");
    assert_eq!(search_steps, 6);
}

#[test]
fn an_nxdomain_followed_by_another_name_later_than_two_seconds_is_final() {
    let mut d = Dns::new();
    d.ask(0, 1, "gone.shop.svc.cluster.local", 1);
    d.answer(1, 1, "gone.shop.svc.cluster.local", 1, 3);
    d.ask(2_500, 2, "gone.svc.cluster.local", 1);
    d.answer(2_501, 2, "gone.svc.cluster.local", 1, 0);
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        [
            "gone.shop.svc.cluster.local A NXDOMAIN dns:NXDOMAIN for gone.shop.svc.cluster.local A 1",
            "gone.svc.cluster.local A NOERROR ok 1"
        ]
    );
}

#[test]
fn a_query_answered_only_after_a_retransmission_is_an_error_with_the_whole_wait() {
    // The first query was lost (a conntrack race): the resolver asks again 5 s later and is answered.
    let mut d = Dns::new();
    d.ask(0, 7, "api.shop.svc.cluster.local", 1);
    d.ask(4_999, 7, "api.shop.svc.cluster.local", 1);
    d.answer(5_003, 7, "api.shop.svc.cluster.local", 1, 0);
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        ["api.shop.svc.cluster.local A NOERROR dns:answered after retransmission: 2 queries over 5003 ms (NOERROR for api.shop.svc.cluster.local A) 5003"]
    );
    assert_eq!(out[0].error.as_ref().map(|e| e.kind), Some(ErrorType::Dns));
}

#[test]
fn copies_each_answered_are_one_exchange_and_one_error() {
    // A resolver retrying a SERVFAIL with the same id: one entry.
    let mut d = Dns::new();
    d.ask(0, 9, "flaky.example", 1);
    d.answer(2, 9, "flaky.example", 1, 2);
    d.ask(1_000, 9, "flaky.example", 1);
    d.answer(1_002, 9, "flaky.example", 1, 2);
    let dup = d.sim.engine.stats().dns_duplicate_answers;
    let out = d.sim.finish();
    assert_eq!(summary(&out), ["flaky.example A SERVFAIL dns:SERVFAIL for flaky.example A 2"]);
    assert_eq!(dup, 1);
}

#[test]
fn a_retry_from_a_new_socket_with_the_same_id_is_the_same_exchange() {
    // glibc asks a server that answered SERVFAIL again, from a new socket, with the same id.
    let mut d = Dns::new();
    d.ask(0, 9, "flaky.example", 1);
    d.answer(1, 9, "flaky.example", 1, 2);
    let (again, server) = (sock(("10.0.1.5", 40999)), sock(SERVER));
    d.sim.frame(2, &udp(again, server, &query(9, "flaky.example", 1)));
    d.sim.frame(3, &udp(server, again, &answer(9, "flaky.example", 1, 2)));
    let out = d.sim.finish();
    assert_eq!(summary(&out), ["flaky.example A SERVFAIL dns:SERVFAIL for flaky.example A 1"]);
    assert_eq!(out[0].src.port, Some(40000), "the first socket");
}

#[test]
fn an_unanswered_query_is_a_half_connection_at_the_timeout() {
    let mut d = Dns::new();
    d.ask(0, 3, "slow.example", 1);
    d.sim.advance(6_900);
    assert!(d.sim.out.is_empty(), "not before dnsTimeoutMs + 2 s: a copy may still come");
    d.sim.advance(7_500);
    assert_eq!(
        summary(&d.sim.out),
        ["slow.example A - pair-not-found:missing response: no answer within dnsTimeoutMs 5000"]
    );
}

#[test]
fn pairs_are_by_socket_id_and_question_not_id_alone() {
    // A and AAAA with the same id from one socket, answered in the other order; and the same id reused
    // by another socket.
    let mut d = Dns::new();
    d.ask(0, 5, "web.example", 1);
    d.ask(0, 5, "web.example", 28);
    let other = ("10.0.1.6", 40001);
    d.sim.frame(0, &udp(sock(other), sock(SERVER), &query(5, "db.example", 1)));
    d.answer(1, 5, "web.example", 28, 0);
    d.sim.frame(1, &udp(sock(SERVER), sock(other), &answer(5, "db.example", 1, 2)));
    d.answer(2, 5, "web.example", 1, 0);
    let out = d.sim.finish();
    let mut s = summary(&out);
    s.sort();
    assert_eq!(
        s,
        [
            "db.example A SERVFAIL dns:SERVFAIL for db.example A 1",
            "web.example A NOERROR ok 2",
            "web.example AAAA NOERROR ok 1"
        ]
    );
}

#[test]
fn udp_that_merely_parses_as_a_query_on_another_port_never_times_out() {
    let mut d = Dns::new();
    let (c, s) = (sock(("10.0.1.5", 40000)), sock(("10.0.0.9", 9999)));
    d.sim.frame(0, &udp(c, s, &query(1, "x.example", 1)));
    let out = d.sim.finish();
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn dns_on_another_port_is_found_by_content() {
    let mut d = Dns::new();
    let (c, s) = (sock(("10.0.1.5", 40000)), sock(("10.0.0.9", 5353)));
    d.sim.frame(0, &udp(c, s, &query(1, "x.example", 1)));
    d.sim.frame(1, &udp(s, c, &answer(1, "x.example", 1, 5)));
    assert_eq!(summary(&d.sim.finish()), ["x.example A REFUSED dns:REFUSED for x.example A 1"]);
}

#[test]
fn dns_can_be_switched_off() {
    let mut sim =
        Sim::with(EngineConfig { dissectors: Dissectors::ALL.without(Dissector::Dns), ..EngineConfig::default() });
    sim.frame(0, &udp(sock(CLIENT), sock(SERVER), &query(1, "a.example", 1)));
    sim.frame(1, &udp(sock(SERVER), sock(CLIENT), &answer(1, "a.example", 1, 2)));
    assert!(sim.finish().is_empty());
}

#[test]
fn garbage_to_port_53_is_counted_not_reported() {
    let mut d = Dns::new();
    d.sim.frame(0, &udp(sock(CLIENT), sock(SERVER), b"\x00\x01garbage"));
    assert_eq!(d.sim.engine.stats().dns_malformed, 1);
    assert!(d.sim.finish().is_empty());
}

#[test]
fn kfl_selects_dns_fields() {
    let mut d = Dns::new();
    d.ask(0, 1, "db.example", 1);
    d.answer(1, 1, "db.example", 1, 2);
    let out = d.sim.finish();
    for (q, want) in [
        ("dns", true),
        ("dns and error", true),
        (r#"dns.rcodeName == "SERVFAIL""#, true),
        (r#"dns.question.name == "db.example""#, true),
        (r#"dns.question.type == "AAAA""#, false),
        (r#"error.type == "dns""#, true),
        ("http", false),
    ] {
        let query = faultline_kfl::Query::parse(q).expect("parses");
        assert_eq!(query.matches(&out[0]), want, "{q}");
    }
}

#[test]
fn a_query_asked_again_after_its_window_is_a_new_exchange_and_the_old_one_is_still_reported() {
    let mut d = Dns::new();
    d.ask(0, 3, "slow.example", 1);
    // The same id and question after dnsTimeoutMs + 2 s, before any timer ran: the first is decided, not lost.
    d.sim.frame(7_001, &udp(sock(CLIENT), sock(SERVER), &query(3, "slow.example", 1)));
    d.answer(7_002, 3, "slow.example", 1, 0);
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        [
            "slow.example A - pair-not-found:missing response: no answer within dnsTimeoutMs 5000",
            "slow.example A NOERROR ok 1"
        ]
    );
}

#[test]
fn thousands_of_clients_in_their_search_lists_are_decided_each_on_its_own() {
    // 2,000 clients each walking `svc-<i>` through two search domains to a final NXDOMAIN.
    let mut d = Dns::new();
    for i in 0..2_000u32 {
        let client = (IpAddr::from([10, 1, (i / 250) as u8, (i % 250) as u8 + 1]), 40000);
        let t = u64::from(i) / 10;
        for (step, suffix) in [".shop.svc.cluster.local", ".svc.cluster.local", ""].iter().enumerate() {
            let name = format!("svc-{i}{suffix}");
            let id = (i * 3 + step as u32) as u16;
            d.sim.frame(t, &udp(client, sock(SERVER), &query(id, &name, 1)));
            d.sim.frame(t, &udp(sock(SERVER), client, &answer(id, &name, 1, 3)));
        }
    }
    let steps = d.sim.engine.stats().dns_search_steps;
    let out = d.sim.finish();
    let finals = out.iter().filter(|e| e.error.is_some()).count();
    assert_eq!((out.len(), finals, steps), (6_000, 2_000, 4_000));
    assert!(out
        .iter()
        .filter(|e| e.error.is_some())
        .all(|e| !e.dns.as_ref().is_some_and(|d| d.question.name.contains('.'))));
}

#[test]
fn a_query_to_the_dns_service_seen_before_and_after_dnat_is_one_exchange() {
    // Found on the real node: a pod asks kube-dns's ClusterIP; the node sees the query on the pod's veth
    // (to the Service) and on CoreDNS's veth (to the pod after DNAT), the answer likewise. Four sockets' worth
    // of first queries each became a false timeout.
    let mut d = Dns::new();
    d.sim.engine.expect_several_interfaces();
    let client = sock(("10.244.0.5", 41_000));
    let (service, coredns) = (sock(("10.96.0.10", 53)), sock(("10.244.0.2", 53)));
    for (i, name) in ["web.shop.svc.cluster.local", "db.shop.svc.cluster.local"].iter().enumerate() {
        let t = i as u64 * 100;
        let c = (client.0, client.1 + i as u16);
        d.sim.frame_on(1, t, &udp(c, service, &query(7, name, 1)));
        d.sim.frame_on(2, t, &udp(c, coredns, &query(7, name, 1)));
        d.sim.frame_on(2, t + 1, &udp(coredns, c, &answer(7, name, 1, 0)));
        d.sim.frame_on(1, t + 1, &udp(service, c, &answer(7, name, 1, 0)));
    }
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        ["web.shop.svc.cluster.local A NOERROR ok 1", "db.shop.svc.cluster.local A NOERROR ok 1"]
    );
    assert_eq!(out[0].dst.ip, coredns.0, "under the pod that answered");
    assert_eq!(out[0].service.as_ref().map(|s| (s.ip, s.port)), Some(service), "with the Service asked");
}

/// The message with its two-byte length, as DNS over TCP sends it.
fn framed(msg: &[u8]) -> Vec<u8> {
    let mut b = (msg.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(msg);
    b
}

#[test]
fn dns_over_tcp_is_an_exchange_like_udp() {
    use common::{ACK, FIN, PSH};
    let mut s = Sim::new();
    s.handshake(0);
    let q = framed(&query(9, "big.example", 16));
    // Split inside the length, as a client may.
    s.c(10, PSH | ACK, 1001, 5001, &q[..1]);
    s.c(10, PSH | ACK, 1002, 5001, &q[1..]);
    let a = framed(&answer(9, "big.example", 16, 2));
    s.s(12, PSH | ACK, 5001, 1001 + q.len() as u32, &a);
    s.c(13, FIN | ACK, 1001 + q.len() as u32, 5001 + a.len() as u32, b"");
    let out = s.finish();
    let dns: Vec<_> = out.iter().filter(|e| e.dns.is_some()).collect();
    assert_eq!(dns.len(), 1, "{out:?}");
    assert_eq!(dns[0].error.as_ref().map(|e| e.msg.as_str()), Some("SERVFAIL for big.example TXT"), "{:?}", dns[0]);
    assert_eq!(dns[0].elapsed_time, 2.0);
}

#[test]
fn a_truncated_answer_followed_by_the_same_question_over_tcp_is_one_exchange() {
    use common::{tcp_frame, ACK, PSH, SYN};
    let mut d = Dns::new();
    d.ask(0, 4, "many.example", 1);
    let mut tc = answer(4, "many.example", 1, 0);
    tc[2] |= 0x02; // TC
    d.sim.frame(1, &udp(sock(SERVER), sock(CLIENT), &tc));
    // The resolver asks again over TCP, from a new port, with a new id.
    let (c, s) = (sock(("10.0.1.5", 41000)), sock(SERVER));
    d.sim.frame(2, &tcp_frame(c, s, SYN, 100, 0, b""));
    d.sim.frame(2, &tcp_frame(s, c, SYN | ACK, 500, 101, b""));
    d.sim.frame(2, &tcp_frame(c, s, ACK, 101, 501, b""));
    let q = framed(&query(77, "many.example", 1));
    d.sim.frame(3, &tcp_frame(c, s, PSH | ACK, 101, 501, &q));
    let a = framed(&answer(77, "many.example", 1, 0));
    d.sim.frame(5, &tcp_frame(s, c, PSH | ACK, 501, 101 + q.len() as u32, &a));
    let out = d.sim.finish();
    let dns: Vec<_> = out.iter().filter(|e| e.dns.is_some()).collect();
    assert_eq!(summary(&dns.iter().map(|e| (*e).clone()).collect::<Vec<_>>()), ["many.example A NOERROR ok 5"]);
    assert_eq!(dns[0].dns.as_ref().map(|d| d.answers.clone()), Some(vec!["A 10.0.2.7".to_owned()]));
}

#[test]
fn a_truncated_answer_never_followed_up_is_the_exchange() {
    let mut d = Dns::new();
    d.ask(0, 4, "many.example", 1);
    let mut tc = answer(4, "many.example", 1, 0);
    tc[2] |= 0x02;
    d.sim.frame(1, &udp(sock(SERVER), sock(CLIENT), &tc));
    assert_eq!(summary(&d.sim.finish()), ["many.example A NOERROR ok 1"]);
}

/// glibc's lost first query: its retry comes a few ms *after* its own 5 s timeout — past `dnsTimeoutMs`
/// but within the 2 s a copy still joins — and is answered at once.
#[test]
fn glibcs_retry_just_after_dns_timeout_is_one_exchange_answered_after_retransmission() {
    let mut d = Dns::new();
    d.ask(0, 7, "api.shop.svc.cluster.local", 1);
    d.sim.advance(5_002);
    d.ask(5_004, 7, "api.shop.svc.cluster.local", 1);
    d.answer(5_005, 7, "api.shop.svc.cluster.local", 1, 0);
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        ["api.shop.svc.cluster.local A NOERROR dns:answered after retransmission: 2 queries over 5005 ms (NOERROR for api.shop.svc.cluster.local A) 5005"]
    );
}

/// Go's resolver retries from a new socket with a new id; the answer comes to the retry.
#[test]
fn a_retry_with_a_new_id_and_socket_is_a_copy_of_the_unanswered_query() {
    let mut d = Dns::new();
    d.ask(0, 100, "api.example", 28);
    let retry = sock(("10.0.1.5", 47_000));
    d.sim.frame(5_001, &udp(retry, sock(SERVER), &query(555, "api.example", 28)));
    d.sim.frame(5_003, &udp(sock(SERVER), retry, &answer(555, "api.example", 28, 0)));
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        ["api.example AAAA NOERROR dns:answered after retransmission: 2 queries over 5003 ms (NOERROR for api.example AAAA) 5003"]
    );
    assert_eq!((out[0].src.port, out[0].dns.as_ref().map(|d| d.id)), (Some(40000), Some(100)), "the first copy");
}

/// Two threads of one pod looking the same name up at once are two lookups, not a retry; and a name asked
/// again after a clean answer is a new exchange.
#[test]
fn the_same_question_at_once_or_after_a_clean_answer_is_another_exchange() {
    let mut d = Dns::new();
    d.ask(0, 1, "web.example", 1);
    let other = sock(("10.0.1.5", 41_234));
    d.sim.frame(3, &udp(other, sock(SERVER), &query(2, "web.example", 1)));
    d.answer(4, 1, "web.example", 1, 0);
    d.sim.frame(5, &udp(sock(SERVER), other, &answer(2, "web.example", 1, 0)));
    d.ask(1_000, 3, "web.example", 1);
    d.answer(1_001, 3, "web.example", 1, 0);
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        ["web.example A NOERROR ok 4", "web.example A NOERROR ok 2", "web.example A NOERROR ok 1"]
    );
}

/// Go retrying a SERVFAIL at once, with a new id: one exchange, one error.
#[test]
fn a_servfail_retried_with_a_new_id_is_one_error() {
    let mut d = Dns::new();
    d.ask(0, 1, "flaky.example", 1);
    d.answer(1, 1, "flaky.example", 1, 2);
    d.ask(2, 2, "flaky.example", 1);
    d.answer(3, 2, "flaky.example", 1, 2);
    let dup = d.sim.engine.stats().dns_duplicate_answers;
    let out = d.sim.finish();
    assert_eq!(summary(&out), ["flaky.example A SERVFAIL dns:SERVFAIL for flaky.example A 1"]);
    assert_eq!(dup, 1);
}

#[test]
fn an_unanswered_query_sent_twice_is_decided_by_its_last_copy() {
    let mut d = Dns::new();
    d.ask(0, 3, "slow.example", 1);
    d.ask(5_004, 3, "slow.example", 1);
    d.sim.advance(9_000);
    assert!(d.sim.out.is_empty(), "the retry still waits for its answer");
    d.sim.advance(10_100);
    assert_eq!(
        summary(&d.sim.out),
        ["slow.example A - pair-not-found:missing response: no answer within dnsTimeoutMs (2 queries) 10004"]
    );
}

/// A message with `opcode` (and flags' low byte 0), without a question when `name` is `None`.
fn message(id: u16, opcode: u8, response: bool, rcode: u8, q: Option<(&str, u16)>) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.push(u8::from(response) << 7 | opcode << 3);
    b.push(rcode);
    b.extend_from_slice(&[0, u8::from(q.is_some()), 0, 0, 0, 0, 0, 0]);
    if let Some((name, qtype)) = q {
        b.extend(name_bytes(name));
        b.extend_from_slice(&qtype.to_be_bytes());
        b.extend_from_slice(&[0, 1]);
    }
    b
}

#[test]
fn an_answer_without_a_question_pairs_by_id() {
    let mut d = Dns::new();
    d.ask(0, 21, "weird.example", 1);
    d.sim.frame(2, &udp(sock(SERVER), sock(CLIENT), &message(21, 0, true, 1, None)));
    let out = d.sim.finish();
    assert_eq!(summary(&out), ["weird.example A FORMERR dns:FORMERR for weird.example A 2"]);
}

#[test]
fn updates_and_notifies_are_paired_like_queries() {
    // nsupdate's UPDATE (opcode 5; its zone is the question, SOA) refused; a NOTIFY (4) acknowledged; an
    // UPDATE never answered.
    let mut d = Dns::new();
    let (c, s) = (sock(CLIENT), sock(SERVER));
    d.sim.frame(0, &udp(c, s, &message(31, 5, false, 0, Some(("shop.example", 6)))));
    d.sim.frame(1, &udp(s, c, &message(31, 5, true, 5, Some(("shop.example", 6)))));
    d.sim.frame(10, &udp(c, s, &message(32, 4, false, 0, Some(("shop.example", 6)))));
    d.sim.frame(12, &udp(s, c, &message(32, 4, true, 0, Some(("shop.example", 6)))));
    d.sim.frame(20, &udp(c, s, &message(33, 5, false, 0, Some(("lost.example", 6)))));
    // An UPDATE whose prerequisite (name in use) failed: the client's condition, not an error.
    d.sim.frame(30, &udp(c, s, &message(34, 5, false, 0, Some(("cond.example", 6)))));
    d.sim.frame(31, &udp(s, c, &message(34, 5, true, 3, Some(("cond.example", 6)))));
    let out = d.sim.finish();
    assert_eq!(
        summary(&out),
        [
            "shop.example SOA REFUSED dns:REFUSED for shop.example SOA 1",
            "shop.example SOA NOERROR ok 2",
            "cond.example SOA NXDOMAIN ok 1",
            "lost.example SOA - pair-not-found:missing response: no answer within dnsTimeoutMs 5000",
        ]
    );
}

#[test]
fn an_application_retrying_a_name_that_does_not_exist_is_never_a_search_step() {
    // `nosuch` through the search list, then the application asks again at once: two final NXDOMAINs.
    let mut d = Dns::new();
    let chain = ["nosuch.shop.svc.cluster.local", "nosuch.svc.cluster.local", "nosuch.cluster.local", "nosuch"];
    let mut id = 0;
    for round in 0..2u64 {
        for (i, name) in chain.iter().enumerate() {
            id += 1;
            let t = round * 100 + i as u64 * 10;
            d.ask(t, id, name, 1);
            d.answer(t + 1, id, name, 1, 3);
        }
    }
    let steps = d.sim.engine.stats().dns_search_steps;
    let out = d.sim.finish();
    let errors: Vec<_> = out.iter().filter_map(|e| e.error.as_ref().map(|x| x.msg.clone())).collect();
    assert_eq!(errors, ["NXDOMAIN for nosuch A", "NXDOMAIN for nosuch A"]);
    assert_eq!((out.len(), steps), (8, 6));
}

#[test]
fn search_lists_with_host_domains_and_names_tried_as_they_are() {
    let mut d = Dns::new();
    // ndots reached: the name as it is first, then the search list, all NXDOMAIN.
    let dotted = ["a.b.c.d.e", "a.b.c.d.e.shop.svc.cluster.local", "a.b.c.d.e.svc.cluster.local"];
    // A host search domain after the cluster's, then the answer.
    let found = ["db.shop.svc.cluster.local", "db.svc.cluster.local", "db.cluster.local", "db.corp.internal"];
    for (i, name) in dotted.iter().enumerate() {
        d.ask(i as u64 * 10, i as u16 + 1, name, 1);
        d.answer(i as u64 * 10 + 1, i as u16 + 1, name, 1, 3);
    }
    for (i, name) in found.iter().enumerate() {
        let rcode = if i == 3 { 0 } else { 3 };
        d.ask(100 + i as u64 * 10, i as u16 + 11, name, 1);
        d.answer(101 + i as u64 * 10, i as u16 + 11, name, 1, rcode);
    }
    // Another name with the same first label is not this chain's step.
    d.ask(200, 21, "db.other.example", 1);
    d.answer(201, 21, "db.other.example", 1, 0);
    let steps = d.sim.engine.stats().dns_search_steps;
    let out = d.sim.finish();
    let errors: Vec<_> = out.iter().filter_map(|e| e.error.as_ref().map(|x| x.msg.clone())).collect();
    assert_eq!(errors, ["NXDOMAIN for a.b.c.d.e.svc.cluster.local A"]);
    assert_eq!(steps, 5);
}

#[test]
fn two_threads_walking_one_search_list_at_once_are_two_chains() {
    let mut d = Dns::new();
    let chain = ["x.example.shop.svc.cluster.local", "x.example.svc.cluster.local", "x.example"];
    for (i, name) in chain.iter().enumerate() {
        for thread in 0..2u16 {
            let id = 10 * thread + i as u16;
            let c = sock(("10.0.1.5", 40_000 + id));
            let t = i as u64 * 10 + u64::from(thread);
            let rcode = if i == 2 { 0 } else { 3 };
            d.sim.frame(t, &udp(c, sock(SERVER), &query(id, name, 1)));
            d.sim.frame(t + 2, &udp(sock(SERVER), c, &answer(id, name, 1, rcode)));
        }
    }
    let steps = d.sim.engine.stats().dns_search_steps;
    let out = d.sim.finish();
    assert!(out.iter().all(|e| e.error.is_none()), "{:?}", summary(&out));
    assert_eq!((out.len(), steps), (6, 4));
}

#[test]
fn dns_over_tcp_with_the_ad_flag_and_several_messages_per_connection() {
    use common::{ACK, FIN, PSH};
    let mut s = Sim::new();
    s.handshake(0);
    // `dig +tcp +adflag`: RD and AD set; two questions in one segment, answered in one.
    let ad = |mut m: Vec<u8>| {
        m[3] |= 0x20;
        m
    };
    let mut q = framed(&ad(query(1, "a.example", 1)));
    q.extend(framed(&ad(query(2, "b.example", 1))));
    s.c(10, PSH | ACK, 1001, 5001, &q);
    let mut a = framed(&answer(1, "a.example", 1, 0));
    a.extend(framed(&answer(2, "b.example", 1, 5)));
    s.s(12, PSH | ACK, 5001, 1001 + q.len() as u32, &a);
    s.c(13, FIN | ACK, 1001 + q.len() as u32, 5001 + a.len() as u32, b"");
    let out = s.finish();
    let dns: Vec<_> = out.iter().filter(|e| e.dns.is_some()).cloned().collect();
    assert_eq!(
        summary(&dns),
        ["a.example A NOERROR ok 2", "b.example A REFUSED dns:REFUSED for b.example A 2"],
        "{out:?}"
    );
}

/// An answer too big for one packet (a TXT record, no EDNS limit on the path) arrives as two IPv4
/// fragments; Faultline does not reassemble, and pairs it by the first.
#[test]
fn an_ip_fragmented_answer_pairs_by_its_first_fragment() {
    let mut d = Dns::new();
    d.ask(0, 44, "big.example", 16);
    let mut a = answer(44, "big.example", 16, 0);
    a[7] = 1; // one TXT record of 1,400 bytes
    a.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 30]);
    a.extend_from_slice(&1_400u16.to_be_bytes());
    for _ in 0..7 {
        a.push(199);
        a.extend(std::iter::repeat_n(b'x', 199));
    }
    let (IpAddr::V4(s), IpAddr::V4(c)) = (sock(SERVER).0, sock(CLIENT).0) else { panic!("v4") };
    let mut udp = 53u16.to_be_bytes().to_vec();
    udp.extend_from_slice(&40000u16.to_be_bytes());
    udp.extend_from_slice(&((8 + a.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&a);
    let (first, second) = udp.split_at(1_000);
    let frag = |offset: usize, more: bool, part: &[u8]| {
        let mut f = vec![4u8; 6];
        f.extend_from_slice(&[2; 6]);
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((20 + part.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0x12, 0x34]);
        let fo = (u16::from(more) << 13) | (offset / 8) as u16;
        f.extend_from_slice(&fo.to_be_bytes());
        f.extend_from_slice(&[64, 17, 0, 0]);
        f.extend_from_slice(&s.octets());
        f.extend_from_slice(&c.octets());
        f.extend_from_slice(part);
        f
    };
    d.sim.frame(3, &frag(0, true, first));
    d.sim.frame(3, &frag(1_000, false, second));
    let stats = d.sim.engine.stats();
    let out = d.sim.finish();
    assert_eq!(summary(&out), ["big.example TXT NOERROR ok 3"]);
    assert_eq!((stats.fragments, stats.dns_unmatched_responses), (1, 0), "the second fragment skipped");
}
