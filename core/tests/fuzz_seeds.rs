//! Replays the committed fuzz seed corpus (`fuzz/seeds/<target>/`) through the fuzz targets' bodies on
//! stable, so that every seed — and every crash input saved there as a regression — runs in `cargo test`.

#[path = "../../fuzz/harness.rs"]
#[allow(dead_code, clippy::unwrap_used)]
mod harness;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    let mut n = 0;
    for f in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = f.expect("dir entry").path();
        let data = std::fs::read(&path).expect("seed");
        run(&data);
        n += 1;
    }
    assert!(n >= 10, "{target}: only {n} seeds in {}", dir.display());
}

#[test]
fn engine_seeds() {
    replay("engine", harness::engine);
}

/// Every engine seed again, through one engine and three shards: the same entries and counters.
#[test]
fn engine_seeds_through_shards() {
    replay("engine", harness::shards);
}

#[test]
fn http_seeds() {
    replay("http", harness::http);
}

#[test]
fn dns_seeds() {
    replay("dns", harness::dns);
}

#[test]
fn http2_seeds() {
    replay("http2", harness::http2);
}

#[test]
fn tls_seeds() {
    replay("tls", harness::tls);
}

#[test]
fn pcap_seeds() {
    replay("pcap", harness::pcap);
}

#[test]
fn kfl_seeds() {
    replay("kfl", harness::kfl);
}

#[test]
fn redis_seeds() {
    replay("redis", |d| harness::stream(&faultline_core::dissect::redis::REGISTRATION, d));
}

#[test]
fn postgresql_seeds() {
    replay("postgresql", |d| harness::stream(&faultline_core::dissect::postgresql::REGISTRATION, d));
}

#[test]
fn mysql_seeds() {
    replay("mysql", |d| harness::stream(&faultline_core::dissect::mysql::REGISTRATION, d));
}

#[test]
fn amqp_seeds() {
    replay("amqp", |d| harness::stream(&faultline_core::dissect::amqp::REGISTRATION, d));
}

#[test]
fn kafka_seeds() {
    replay("kafka", |d| harness::stream(&faultline_core::dissect::kafka::REGISTRATION, d));
}
