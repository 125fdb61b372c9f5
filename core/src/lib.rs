//! Faultline's engine: pure logic on byte slices. Frames come in, entries (SPEC §2) come out; no I/O, no
//! clocks, no threads, so every part can be tested from crafted bytes and fuzzed.

mod aliases;
pub mod config;
pub mod copies;
pub mod dissect;
pub mod engine;
pub mod entry_order;
mod flow;
pub mod frames;
pub mod front;
pub mod icmp;
pub mod merge;
pub mod pcap;
mod record;
mod route;
pub mod shard;
pub mod sharded;
pub mod stats;
pub mod tcp;
pub mod wire;

// The entry model lives in its own crate (the operator uses it without the engine); the engine speaks it
// under the same names.
pub use faultline_model::{entry, headers, ingest, kind, time};

pub use config::EngineConfig;
pub use engine::{Analyzer, Engine};
pub use entry::Entry;
pub use flow::FlowKey;
pub use stats::Stats;
pub use time::Timestamp;
