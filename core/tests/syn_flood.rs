//! A SYN flood: one million distinct half-open connections against a flow table capped at 100,000. The
//! table must stay at its cap, every flow pushed out must be counted, and what the table holds must cost
//! under 400 bytes per flow (heap, counted by a global allocator in this test binary of its own). Memory
//! is counted in bytes allocated, so this is deterministic, not a timing test.

use std::alloc::System;

use faultline_core::wire::LinkType;
use faultline_core::{Analyzer, Engine, EngineConfig, Timestamp};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const FLOWS: u32 = 1_000_000;
const CAP: usize = 100_000;

/// An Ethernet/IPv4/TCP SYN from 10.(i)/16 to 10.255.0.1:443; `buf` is reused, only addresses change.
fn syn(buf: &mut [u8; 54], i: u32) {
    let src = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
    buf[26..30].copy_from_slice(&src);
    buf[34..36].copy_from_slice(&(1024 + (i % 60_000) as u16).to_be_bytes());
}

fn template() -> [u8; 54] {
    let mut f = [0u8; 54];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..34].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 0, 10, 255, 0, 1]);
    f[36..38].copy_from_slice(&443u16.to_be_bytes());
    f[38..42].copy_from_slice(&7u32.to_be_bytes()); // seq
    f[46] = 5 << 4; // data offset
    f[47] = 0x02; // SYN
    f[48..50].copy_from_slice(&64240u16.to_be_bytes());
    f
}

#[test]
fn a_syn_flood_stays_within_the_flow_budget() {
    let mut engine = Engine::new(EngineConfig { max_flows: CAP, ..EngineConfig::default() });
    let mut out = Vec::new();
    let mut frame = template();
    let region = Region::new(GLOBAL);
    // One million SYNs within 1 s of capture time: no SYN timeout (3 s) fires during the flood.
    for i in 0..FLOWS {
        syn(&mut frame, i);
        engine
            .handle_frame(LinkType::Ethernet, &frame, Timestamp(1_000_000_000 + u64::from(i)), &mut out)
            .expect("SYN");
    }
    let held = region.change();
    let live = held.bytes_allocated.saturating_sub(held.bytes_deallocated) as f64;
    let flows = engine.flow_count();
    let per_flow = live / flows as f64;
    println!("{flows} flows held, {} evicted, {per_flow:.0} bytes per flow", engine.stats().flows_evicted);
    assert!((CAP * 15 / 16..=CAP).contains(&flows), "{flows} flows");
    assert_eq!(engine.stats().flows_evicted + flows as u64, u64::from(FLOWS), "every evicted flow counted");
    assert!(out.is_empty(), "a half-open flow is not an error before its SYN timeout");
    assert!(per_flow < 400.0, "{per_flow:.0} bytes per tracked flow");

    // When the SYN timeout passes, the flows still held are reported (the evicted ones only counted).
    engine.advance(Timestamp(5_000_000_000), &mut out);
    assert_eq!(out.len(), flows);
    // ... and forgotten once they stop lingering (SYN retransmissions are absorbed for ~130 s).
    engine.advance(Timestamp(200_000_000_000), &mut out);
    assert_eq!((engine.flow_count(), out.len()), (0, flows));
}
