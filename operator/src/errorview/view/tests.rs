use faultline_model::entry::{Endpoint, EntryError, ErrorType, Protocol, Response, Side, TcpInfo, TcpState};

use super::*;

fn view(ns: &str, query: &str, window: i32) -> ErrorView {
    let mut v = ErrorView::new(
        "errors",
        serde_json::from_value(serde_json::json!({"query": query, "windowSeconds": window})).expect("spec"),
    );
    v.metadata.namespace = Some(ns.into());
    v.metadata.generation = Some(1);
    v
}

fn ep(ip: &str, port: u16, pod: Option<(&str, &str)>) -> Endpoint {
    let mut e = Endpoint::new(ip.parse().expect("ip"), Some(port));
    if let Some((ns, name)) = pod {
        e.namespace = Some(ns.into());
        e.name = Some(name.into());
    }
    e
}

fn entry(secs: u64, dst_ns: &str, status: Option<u16>) -> Entry {
    let mut e = Entry {
        id: format!("e{secs}"),
        timestamp: Timestamp(secs * 1_000_000_000),
        node: Some("n1".into()),
        protocol: Protocol::Tcp,
        src: ep("10.0.0.1", 40000, Some(("shop", "client"))),
        dst: ep("10.0.0.2", 80, Some((dst_ns, "server"))),
        error: Some(EntryError { kind: ErrorType::Connection, msg: "Reset".into() }),
        tcp: Some(TcpInfo { state: TcpState::Reset, reason: None, by: Some(Side::Server) }),
        icmp: None,
        request: None,
        response: None,
        elapsed_time: 1.0,
        pcap: None,
        service: None,
        dns: None,
        tls: None,
        grpc: None,
        http2: None,
        redis: None,
        postgresql: None,
        mysql: None,
        amqp: None,
        kafka: None,
        cause: None,
    };
    if let Some(s) = status {
        e.protocol = Protocol::Http;
        e.error = None;
        e.tcp = None;
        e.response = Some(Response {
            status: s,
            status_text: String::new(),
            version: "1.1".into(),
            headers: Default::default(),
            body_size: 0,
        });
    }
    e.src.namespace = Some("shop".into());
    e
}

fn at(secs: u64) -> Timestamp {
    Timestamp(secs * 1_000_000_000)
}

#[test]
fn counts_by_kind_pairs_and_window() {
    let v = view("shop", "response.status > 400 or error or icmp or tcp", 120);
    let mut s = ViewState::resume(&v);
    let t0 = 1_795_821_120;
    assert!(s.observe(&entry(t0, "shop", None), "shop", false, 2));
    assert!(s.observe(&entry(t0 + 1, "shop", Some(503)), "shop", false, 2));
    assert!(!s.observe(&entry(t0 + 2, "shop", Some(200)), "shop", false, 2), "no match");
    assert!(s.observe(&entry(t0 + 70, "shop", None), "shop", false, 2));
    let st = s.status(at(t0 + 80), 2);
    assert_eq!(st.matched, 3);
    assert_eq!(st.counts_by_kind.get("tcp/Reset"), Some(&2));
    assert_eq!(st.counts_by_kind.get("http/5xx"), Some(&1));
    assert_eq!(st.top_pairs[0].source, "shop/client");
    assert_eq!(st.top_pairs[0].count, 3);
    assert_eq!(st.samples.len(), 2, "bounded");
    assert_eq!(st.bucket_seconds, Some(2), "a sixtieth of the window");
    // 200 s later the first two have left the 120 s window.
    let st = s.status(at(t0 + 185), 2);
    assert_eq!(st.matched, 1);
}

#[test]
fn the_window_is_counted_to_the_second() {
    // windowSeconds 10: an entry 35 s old was once counted (whole minutes); now only the last 10 s count.
    let v = view("shop", "tcp", 10);
    let mut s = ViewState::resume(&v);
    let now = 1_795_821_177;
    for age in [35, 11, 10, 9, 0] {
        s.observe(&entry(now - age, "shop", None), "shop", false, 50);
    }
    let st = s.status(at(now), 50);
    assert_eq!(st.matched, 3, "ages 10, 9 and 0");
    // Samples and the last sighting age out of the window too.
    assert_eq!(st.samples.len(), 3);
    let st = s.status(at(now + 60), 50);
    assert_eq!((st.matched, st.samples.len(), st.last_seen.is_none()), (0, 0, true));
}

#[test]
fn status_stays_small_whatever_the_number_of_external_sources() {
    // 50,000 distinct external sources (address and port) in a 7-day window.
    let v = view("faultline-system", "tcp", 604_800);
    let mut s = ViewState::resume(&v);
    let t0 = 1_795_821_177;
    for i in 0..50_000u64 {
        let mut e = entry(t0 + i * 11, "shop", None);
        e.src = ep(&format!("203.0.{}.{}", i / 250, i % 250), 1024 + (i % 60_000) as u16, None);
        s.observe(&e, "faultline-system", true, 50);
    }
    let st = s.status(at(t0 + 50_000 * 11), 50);
    assert_eq!(st.matched, 50_000, "every entry counted");
    let bytes = serde_json::to_vec(&st).expect("json").len();
    assert!(bytes < 256 * 1024, "status of {bytes} bytes");
    assert!(st.buckets.len() <= 61, "{} buckets", st.buckets.len());
    assert!(st.buckets.iter().all(|b| b.pairs.len() <= super::PAIRS_PER_BUCKET + 1));
    assert!(st.buckets.iter().any(|b| b.pairs.contains_key(super::OTHER_PAIRS)), "the rest counted, not lost");
    assert!(!st.top_pairs.iter().any(|p| p.source.contains(':')), "external endpoints by address: {:?}", st.top_pairs);
}

#[test]
fn a_view_sees_only_its_namespace_unless_cluster_wide() {
    let v = view("other", "tcp", 900);
    let mut s = ViewState::resume(&v);
    let mut e = entry(100, "shop", None);
    assert!(!s.observe(&e, "other", false, 5));
    assert!(s.observe(&e, "other", true, 5), "a view in the operator's namespace sees everything");
    e.dst.namespace = Some("other".into());
    assert!(s.observe(&e, "other", false, 5));
}

#[test]
fn a_restart_resumes_the_counts_from_status_unless_the_query_changed() {
    let mut v = view("shop", "tcp", 900);
    let mut s = ViewState::resume(&v);
    for i in 0..4 {
        s.observe(&entry(1_795_821_120 + i, "shop", None), "shop", false, 5);
    }
    let now = at(1_795_821_200);
    v.status = Some(s.status(now, 5));
    let mut again = ViewState::resume(&v);
    assert_eq!(again.status(now, 5).matched, 4, "counts resumed");
    v.metadata.generation = Some(2);
    v.spec.query = "icmp".into();
    let mut changed = ViewState::resume(&v);
    assert_eq!(changed.status(now, 5).matched, 0, "a new query starts afresh");
}

#[test]
fn an_invalid_query_matches_nothing() {
    let v = view("shop", "response.status = 400", 900);
    let mut s = ViewState::resume(&v);
    assert!(s.query.is_err());
    assert!(!s.observe(&entry(1, "shop", None), "shop", false, 5));
}

fn dns_entry(rcode: Option<u8>, error: Option<(ErrorType, &str)>) -> Entry {
    let mut e = entry(1, "shop", None);
    e.protocol = Protocol::Dns;
    e.tcp = None;
    e.error = error.map(|(kind, msg)| EntryError { kind, msg: msg.into() });
    e.dns = Some(faultline_model::entry::DnsInfo {
        id: 1,
        question: faultline_model::entry::DnsQuestion { name: "db.shop.svc.cluster.local".into(), qtype: "A".into() },
        rcode,
        rcode_name: rcode.map(|r| ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN"][usize::from(r)].to_owned()),
        answers: vec![],
    });
    e
}

#[test]
fn dns_entries_are_counted_by_their_code_and_named_for_events() {
    let cases = [
        (dns_entry(Some(2), Some((ErrorType::Dns, "SERVFAIL for db A"))), "dns/SERVFAIL", "DNSError"),
        (dns_entry(Some(3), Some((ErrorType::Dns, "NXDOMAIN for db A"))), "dns/NXDOMAIN", "DNSError"),
        (dns_entry(None, Some((ErrorType::PairNotFound, "missing response"))), "dns/timeout", "DNSTimeout"),
        (dns_entry(Some(0), Some((ErrorType::Dns, "answered after retransmission"))), "dns/retransmitted", "DNSError"),
        (dns_entry(Some(0), None), "dns/NOERROR", "DNSResponse"),
    ];
    for (e, kind, reason) in cases {
        assert_eq!(kind_of(&e), kind);
        assert_eq!(crate::events::reason(&e), reason);
    }
    let line = summary(&dns_entry(Some(2), Some((ErrorType::Dns, "SERVFAIL for db A"))));
    assert!(line.contains("db.shop.svc.cluster.local A: SERVFAIL"), "{line}");
}

#[test]
fn summaries_name_workloads_that_say_more_than_the_pod() {
    let mut e = Entry::new(
        Protocol::Tcp,
        Timestamp(0),
        ep("10.0.0.1", 40000, Some(("shop", "client-7d9f-x2"))),
        ep("10.0.0.2", 80, Some(("shop", "db-0"))),
    );
    e.src.workload = "Deployment/client".parse().ok();
    e.dst.workload = "StatefulSet/db".parse().ok();
    assert!(
        summary(&e).starts_with("tcp shop/client-7d9f-x2 -> shop/db-0 [Deployment/client -> StatefulSet/db]"),
        "{}",
        summary(&e)
    );
    e.src.workload = "Pod/client-7d9f-x2".parse().ok();
    e.dst.workload = None;
    assert!(
        summary(&e).starts_with("tcp shop/client-7d9f-x2 -> shop/db-0:"),
        "a bare pod says nothing more: {}",
        summary(&e)
    );
}

#[test]
fn counts_by_cause_and_samples_carry_the_cause() {
    use faultline_model::entry::{Cause, CauseReason};
    let v = view("shop", "error", 120);
    let mut s = ViewState::resume(&v);
    let t0 = 1_795_821_120;
    let mut denied = entry(t0, "shop", None);
    denied.cause = Some(Cause {
        reason: CauseReason::NetworkPolicyDenied,
        message:
            "NetworkPolicy shop/deny selects shop/server for ingress and admits nothing from shop/client on 80/TCP"
                .into(),
        objects: vec![],
        evidence: vec![],
    });
    assert!(s.observe(&denied, "shop", false, 5));
    assert!(s.observe(&entry(t0 + 1, "shop", None), "shop", false, 5));
    let st = s.status(at(t0 + 10), 5);
    assert_eq!(st.counts_by_cause.get("NetworkPolicyDenied"), Some(&1));
    assert_eq!(st.counts_by_cause.len(), 1, "an error without a cause is counted by kind only");
    let cause = st.samples[0].cause.as_deref().expect("the sample's cause");
    assert!(cause.starts_with("NetworkPolicyDenied: NetworkPolicy shop/deny"), "{cause}");
    assert_eq!(st.samples[1].cause, None);
}
