//! Faultline's engine: pure logic on byte slices. Frames come in, entries (SPEC §2) come out; no I/O, no
//! clocks, no threads, so every part can be tested from crafted bytes and fuzzed.

pub mod entry;
pub mod http;
pub mod icmp;
pub mod pcap;
pub mod time;
pub mod wire;
