//! The backends pods talk to (SPEC §3.5). First, real captures (`fixtures/backends/`, written by
//! `agent/tests/kernel/test_backends.py` against Debian's redis-server, PostgreSQL 15, MariaDB 10.11 and
//! RabbitMQ 3.10 and Kafka 4.4 (KRaft), the Redis OOM connection left out for size): the errors the servers sent, once each. Then crafted streams for
//! what those captures do not hold: pub/sub, MULTI/EXEC, blocking commands, pipelined extended queries,
//! calls left unanswered by a reset.

mod common;

use common::{Sim, ACK, PSH, RST};
use faultline_core::entry::{Entry, ErrorType, Protocol};
use faultline_core::kind::Kind;
use faultline_core::pcap::PcapReader;
use faultline_core::EngineConfig;

fn analyze(name: &str) -> Vec<Entry> {
    let path = format!("{}/tests/fixtures/backends/{name}.pcap", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).expect("fixture");
    let mut reader = PcapReader::new(&bytes[..]).expect("a pcap");
    let mut engine = common::test_engine(EngineConfig::default());
    let mut out = Vec::new();
    while let Some(r) = reader.next_record().expect("a record") {
        let _ = engine.handle_frame_on(r.interface, r.link_type, r.data, r.ts, &mut out);
    }
    engine.finish(&mut out);
    out
}

/// The kinds of the error entries, sorted.
fn error_kinds(out: &[Entry]) -> Vec<String> {
    let mut k: Vec<String> = out.iter().filter(|e| e.error.is_some()).map(|e| Kind::of(e).to_string()).collect();
    k.sort();
    k
}

#[test]
fn real_redis_errors_are_the_servers_and_feature_probes_are_not_errors() {
    let out = analyze("redis");
    assert_eq!(
        error_kinds(&out),
        [
            "redis/ERR",
            "redis/NOAUTH",
            "redis/READONLY",
            "redis/WRONGTYPE",
            "redis/WRONGTYPE",
            "redis/WRONGTYPE",
            "redis/WRONGTYPE"
        ]
    );
    let probes = out.iter().filter(|e| e.redis.as_ref().is_some_and(|r| r.command == "CLIENT")).count();
    assert!(probes >= 2, "redis-py's CLIENT SETINFO are pairs, without error");
    assert!(out.iter().all(|e| e.protocol == Protocol::Redis), "every connection is Redis");
}

#[test]
fn real_postgresql_errors_carry_their_sqlstate() {
    let out = analyze("postgresql");
    assert_eq!(
        error_kinds(&out),
        [
            "postgresql/23505",
            "postgresql/23505",
            "postgresql/28P01",
            "postgresql/42P01",
            "postgresql/42P01",
            "postgresql/53300",
            "postgresql/57014",
            "postgresql/57014"
        ]
    );
    let denied = out.iter().find(|e| Kind::of(e).to_string() == "postgresql/28P01").expect("28P01");
    assert_eq!(
        denied.error.as_ref().map(|e| e.msg.as_str()),
        Some("28P01 password authentication failed for user \"postgres\"")
    );
    // A COPY FROM STDIN that broke a key, and a query a CancelRequest (its own connection, no call) ended.
    let msgs: Vec<&str> = out.iter().filter_map(|e| e.error.as_ref().map(|x| x.msg.as_str())).collect();
    assert!(msgs.contains(&"57014 canceling statement due to user request"), "{msgs:?}");
    let copy = |e: &&Entry| e.postgresql.as_ref().is_some_and(|p| p.query.as_deref() == Some("COPY t FROM STDIN"));
    assert!(out.iter().filter(copy).any(|e| e.error.is_some()), "the COPY that broke the key");
}

#[test]
fn real_mysql_errors_carry_their_number() {
    let out = analyze("mysql");
    let kinds = error_kinds(&out);
    assert!(kinds.contains(&"mysql/1045".to_owned()) && kinds.contains(&"mysql/1146".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"mysql/1062".to_owned()) && kinds.contains(&"mysql/1040".to_owned()), "{kinds:?}");
    assert!(kinds.iter().all(|k| k.starts_with("mysql/")), "{kinds:?}");
    let ok = out.iter().filter(|e| e.error.is_none() && e.mysql.as_ref().is_some_and(|m| m.command == "login")).count();
    assert!(ok >= 10, "successful logins are pairs: {ok}");
}

#[test]
fn real_amqp_errors_are_the_brokers_closes_and_returns() {
    let out = analyze("amqp");
    assert_eq!(error_kinds(&out), ["amqp/312", "amqp/403", "amqp/404", "amqp/404", "amqp/406"]);
    let methods: Vec<&str> =
        out.iter().filter(|e| e.error.is_some()).filter_map(|e| e.amqp.as_ref().map(|a| a.method.as_str())).collect();
    assert!(methods.contains(&"connection.start-ok") && methods.contains(&"queue.declare"), "{methods:?}");
    assert!(out.iter().any(|e| e.error.is_none() && e.amqp.as_ref().is_some_and(|a| a.method == "basic.get")));
}

#[test]
fn real_kafka_errors_are_named_by_the_brokers_codes_and_the_rebalance_is_not_one() {
    let out = analyze("kafka");
    let kinds = error_kinds(&out);
    assert!(kinds.iter().all(|k| k.starts_with("kafka/")), "{kinds:?}");
    for k in ["kafka/TOPIC_ALREADY_EXISTS", "kafka/OFFSET_OUT_OF_RANGE", "kafka/UNKNOWN_TOPIC_OR_PARTITION"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    let routine: Vec<&str> =
        out.iter().filter(|e| e.error.is_none()).filter_map(|e| e.kafka.as_ref()?.error_name.as_deref()).collect();
    assert!(routine.contains(&"MEMBER_ID_REQUIRED"), "{routine:?}");
}

/// A conversation on one connection: (from the client?, bytes), 5 ms apart; then, if `reset_after` says
/// how long after, the client's reset.
fn converse(port: u16, turns: &[(bool, &[u8])], reset_after: Option<u64>) -> Vec<Entry> {
    let mut s = Sim::with(EngineConfig::default());
    s.server.1 = port;
    s.handshake(0);
    let (mut c, mut v) = (1001u32, 5001u32);
    let mut t = 10;
    for (from_client, bytes) in turns {
        if *from_client {
            s.c(t, ACK | PSH, c, v, bytes);
            c += bytes.len() as u32;
        } else {
            s.s(t, ACK | PSH, v, c, bytes);
            v += bytes.len() as u32;
        }
        t += 5;
    }
    if let Some(after) = reset_after {
        t += after;
        s.c(t, RST | ACK, c, v, &[]);
    }
    s.advance(t + 100);
    s.finish()
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut b = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        b.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    b
}

#[test]
fn pub_sub_messages_are_not_replies_and_exec_reports_the_error_inside_it() {
    let sub = resp(&["SUBSCRIBE", "a", "b"]);
    let ping = resp(&["PING"]);
    let multi = resp(&["MULTI"]);
    let incr = resp(&["INCR", "s"]);
    let exec = resp(&["EXEC"]);
    let unsub = resp(&["UNSUBSCRIBE"]);
    let out = converse(
        6379,
        &[
            (true, &multi),
            (false, b"+OK\r\n"),
            (true, &incr),
            (false, b"+QUEUED\r\n"),
            (true, &exec),
            (false, b"*1\r\n-ERR value is not an integer or out of range\r\n"),
            (true, &sub),
            (false, b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"),
            (false, b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"),
            (true, &ping),
            (false, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
            (true, &unsub),
            (false, b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"),
            (true, &ping),
            (false, b"+PONG\r\n"),
        ],
        None,
    );
    let calls: Vec<(String, bool)> =
        out.iter().filter_map(|e| e.redis.as_ref().map(|r| (r.command.clone(), e.error.is_some()))).collect();
    assert_eq!(
        calls,
        [
            ("MULTI".into(), false),
            ("INCR".into(), false),
            ("EXEC".into(), true),
            ("PING".into(), false),
            ("PING".into(), false)
        ]
    );
    let exec = out.iter().find(|e| e.error.is_some()).expect("EXEC");
    assert_eq!(Kind::of(exec).to_string(), "redis/ERR");
}

#[test]
fn a_command_left_unanswered_by_a_reset_is_half_but_a_blocking_one_is_not() {
    let get = resp(&["GET", "k"]);
    let out = converse(6379, &[(true, &get)], Some(1_500));
    let half: Vec<_> =
        out.iter().filter(|e| e.error.as_ref().is_some_and(|x| x.kind == ErrorType::PairNotFound)).collect();
    assert_eq!(half.len(), 1, "{out:#?}");
    assert_eq!(half[0].error.as_ref().map(|e| e.msg.as_str()), Some("missing response: connection reset"));
    // A client that leaves a moment after asking did not wait for the answer (its reset is TCP's business).
    let out = converse(6379, &[(true, &get)], Some(5));
    assert!(out.iter().all(|e| e.error.as_ref().is_none_or(|x| x.kind != ErrorType::PairNotFound)), "{out:#?}");
    let blpop = resp(&["BLPOP", "q", "0"]);
    let out = converse(6379, &[(true, &blpop)], Some(60_000));
    assert!(out.iter().all(|e| e.error.as_ref().is_none_or(|x| x.kind != ErrorType::PairNotFound)), "{out:#?}");
}

fn pg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![t];
    m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

#[test]
fn pipelined_extended_batches_pair_in_turn_and_only_errors_are_errors() {
    let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
    startup.extend_from_slice(b"user\0app\0\0");
    let n = startup.len() as u32;
    startup[..4].copy_from_slice(&n.to_be_bytes());
    let ready = pg(b'Z', b"I");
    let mut client = Vec::new();
    for q in ["SELECT 1\0", "SELECT * FROM nowhere\0"] {
        client.extend(pg(b'P', format!("\0{q}\0\0").as_bytes()));
        client.extend(pg(b'B', b"\0\0\0\0\0\0\0\0"));
        client.extend(pg(b'E', b"\0\0\0\0\0"));
        client.extend(pg(b'S', b""));
    }
    let mut server = pg(b'1', b"");
    server.extend(pg(b'N', b"SWARNING\0VWARNING\0C01000\0Mjust so\0\0"));
    server.extend(pg(b'C', b"SELECT 1\0"));
    server.extend(&ready);
    server.extend(pg(b'E', b"SERROR\0VERROR\0C42P01\0Mrelation \"nowhere\" does not exist\0\0"));
    server.extend(&ready);
    let mut auth = pg(b'R', &[0, 0, 0, 0]);
    auth.extend(&ready);
    let out = converse(5432, &[(true, &startup), (false, &auth), (true, &client), (false, &server)], None);
    let calls: Vec<(String, Option<String>, Option<String>)> = out
        .iter()
        .filter_map(|e| {
            let p = e.postgresql.as_ref()?;
            Some((p.command.clone(), p.query.clone(), e.error.as_ref().map(|x| x.msg.clone())))
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("startup".into(), Some("app@app".into()), None),
            ("execute".into(), Some("SELECT 1".into()), None),
            (
                "execute".into(),
                Some("SELECT * FROM nowhere".into()),
                Some("42P01 relation \"nowhere\" does not exist".into())
            ),
        ]
    );
}

/// A Kafka request: size, API key and version, correlation id, client id, then `body`.
fn kafka_request(key: i16, version: i16, correlation: i32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&key.to_be_bytes());
    m.extend_from_slice(&version.to_be_bytes());
    m.extend_from_slice(&correlation.to_be_bytes());
    m.extend_from_slice(&[0, 3]);
    m.extend_from_slice(b"app");
    m.extend_from_slice(body);
    let mut out = (m.len() as u32).to_be_bytes().to_vec();
    out.extend(m);
    out
}

#[test]
fn a_produce_without_acks_is_not_waited_for_but_one_with_acks_is() {
    // Produce v3 (classic): transactional id null, then acks.
    let fire_and_forget = kafka_request(0, 3, 7, &[0xff, 0xff, 0, 0, 0, 0, 0x75, 0x30, 0, 0, 0, 0]);
    let out = converse(9092, &[(true, &fire_and_forget)], Some(1_500));
    assert!(out.iter().all(|e| e.kafka.is_none()), "{out:#?}");
    let acked = kafka_request(0, 3, 8, &[0xff, 0xff, 0xff, 0xff, 0, 0, 0x75, 0x30, 0, 0, 0, 0]);
    let out = converse(9092, &[(true, &acked)], Some(1_500));
    let half: Vec<_> =
        out.iter().filter(|e| e.error.as_ref().is_some_and(|x| x.kind == ErrorType::PairNotFound)).collect();
    assert_eq!(half.len(), 1, "{out:#?}");
    assert_eq!(half[0].kafka.as_ref().map(|k| (k.api.as_str(), k.correlation_id)), Some(("Produce", 8)));
}
