//! Faultline's engine: pure logic on byte slices. Frames come in, entries (SPEC §2) come out; no I/O, no
//! clocks, no threads, so every part can be tested from crafted bytes and fuzzed.
//!
//! Where a packet goes: `wire` decodes a frame; `engine` (its front) drops copies seen at another capture
//! point and links a connection's NATed tuples (`nat`), keeps the clock and routes the packet to the shard
//! that tracks its flow (`flow`); there a TCP connection's state machine (`tcp`) finds connection errors
//! and hands its payload to the application protocols (`dissect`, a folder each), UDP goes to DNS, ICMP
//! to `icmp`; what they find are entries (`faultline_model`), merged back in capture order.

pub mod config;
pub mod dissect;
pub mod engine;
pub mod flow;
pub mod icmp;
pub mod nat;
pub mod pcap;
pub mod tcp;
pub mod wire;

// The entry model lives in its own crate (the operator uses it without the engine); the engine speaks it
// under the same names.
pub use faultline_model::{backend, entry, headers, ingest, kind, time};

pub use config::EngineConfig;
pub use engine::stats::{self, Stats};
pub use engine::{Analyzer, Engine};
pub use entry::Entry;
pub use flow::FlowKey;
pub use time::Timestamp;
