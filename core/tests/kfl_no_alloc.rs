//! Evaluating a compiled query allocates nothing, whatever the query touches (strings, headers,
//! addresses, timestamps, regexes). Counted with a global allocator, in a test binary of its own and
//! without libtest (`harness = false`): the count is process-wide, and the harness's own thread allocated
//! during it now and then on a loaded machine (4 allocations, 1 run in 3 beside two busy loops).

use std::alloc::System;

use faultline_core::entry::{Endpoint, Entry, Headers, Protocol, Request};
use faultline_core::Timestamp;
use faultline_kfl::Query;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    evaluation_does_not_allocate();
    println!("kfl_no_alloc: evaluation_does_not_allocate ... ok");
}

fn evaluation_does_not_allocate() {
    let headers: Headers = [("x-request-id", "abc-123")].into_iter().collect();
    let e = Entry {
        id: "1".into(),
        timestamp: Timestamp(1_795_821_177_000_000_000),
        node: None,
        protocol: Protocol::Http,
        src: Endpoint::new("2001:db8::5".parse().expect("ip"), Some(43120)),
        dst: Endpoint::new("10.0.2.7".parse().expect("ip"), Some(8080)),
        error: None,
        tcp: None,
        icmp: None,
        request: Some(Request {
            method: "GET".into(),
            path: "/api/v1/orders".into(),
            version: "1.1".into(),
            headers,
            body_size: 0,
        }),
        response: None,
        elapsed_time: 3.5,
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
    let queries: Vec<Query> = [
        "response.status > 400 or error or icmp or tcp",
        r#"request.headers["X-Request-Id"] == "abc-123""#,
        r#"request.path == r"^/api/v[0-9]+/""#,
        r#"src.ip.startsWith("2001:db8:") and dst.ip == "10.0.2.7""#,
        r#"timestamp >= "2026-11-27T00:00:00Z" and elapsedTime < 10"#,
        r#"kind == "http/5xx" or kind.startsWith("tcp/")"#,
        "src.port == r\"^431\"",
    ]
    .iter()
    .map(|q| Query::parse(q).expect("parses"))
    .collect();
    // Warm up (regex caches may allocate once per thread).
    let mut hits = 0;
    for q in &queries {
        hits += usize::from(q.matches(&e));
    }
    let region = Region::new(GLOBAL);
    for _ in 0..1000 {
        for q in &queries {
            hits += usize::from(q.matches(&e));
        }
    }
    assert_eq!(region.change().allocations, 0, "allocations during evaluation");
    assert_eq!(hits, 5 * 1001, "all but the dashboard query match");
}
