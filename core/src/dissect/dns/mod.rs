//! DNS (SPEC §3.5): an entry per exchange, over UDP and TCP (`tcp.rs` frames the stream). The message
//! format is read in `wire.rs`; `exchanges.rs` pairs queries and answers — copies, retries, truncation,
//! timeouts; `search.rs` decides whether an NXDOMAIN was one step of a search list or final.

pub mod exchanges;
pub mod search;
pub mod tcp;
pub mod wire;

pub use exchanges::{DnsTracker, MAX_PENDING};
pub use search::SEARCH_STEP_MS;
