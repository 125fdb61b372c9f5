//! The cost of KFL per entry: a query is compiled once and evaluated on every entry at the agent's full
//! rate, so this is the number that matters. Run with `cargo bench -p faultline-core --bench kfl_eval`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use faultline_core::entry::{Endpoint, Entry, EntryError, ErrorType, Headers, Protocol, Request, Response};
use faultline_core::Timestamp;
use faultline_kfl::Query;

fn http_entry(status: u16, error: bool) -> Entry {
    let headers: Headers = [("host", "shop"), ("x-request-id", "abc-123")].into_iter().collect();
    Entry {
        id: "1".into(),
        timestamp: Timestamp(1_795_821_177_000_000_000),
        node: Some("node-a".into()),
        protocol: Protocol::Http,
        src: Endpoint::new("10.0.1.5".parse().expect("ip"), Some(43120)),
        dst: Endpoint::new("10.0.2.7".parse().expect("ip"), Some(8080)),
        error: error.then(|| EntryError { kind: ErrorType::PairNotFound, msg: "missing response: x".into() }),
        tcp: None,
        icmp: None,
        request: Some(Request {
            method: "GET".into(),
            path: "/api/v1/orders".into(),
            version: "1.1".into(),
            headers: headers.clone(),
            body_size: 0,
        }),
        response: Some(Response { status, status_text: "OK".into(), version: "1.1".into(), headers, body_size: 12 }),
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
    }
}

fn bench(c: &mut Criterion) {
    let entries = [http_entry(200, false), http_entry(503, false), http_entry(200, true)];
    let queries = [
        ("dashboard", "response.status > 400 or error or icmp or tcp"),
        ("header", r#"request.headers["x-request-id"] == "abc-123""#),
        ("regex", r#"request.path == r"^/api/v[0-9]+/""#),
        ("ip-prefix", r#"src.ip.startsWith("10.0.1.")"#),
    ];
    for (name, q) in queries {
        let query = Query::parse(q).expect("parses");
        c.bench_function(&format!("kfl/{name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for e in &entries {
                    n += usize::from(query.matches(black_box(e)));
                }
                n
            })
        });
    }
    let json: Vec<serde_json::Value> = entries.iter().map(|e| serde_json::to_value(e).expect("json")).collect();
    let query = Query::parse(queries[0].1).expect("parses");
    c.bench_function("kfl/dashboard-on-json", |b| {
        b.iter(|| json.iter().filter(|j| query.matches(black_box(*j))).count())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
