//! The entry (SPEC §2): the one record the agents send, the operator aggregates, KFL filters and the CLI
//! prints — with its capture time, what kind it is, its KFL selectors and the batch that carries it from an
//! agent to the operator. A leaf crate: the operator and the CRDs use it without compiling the engine.

pub mod backend;
pub mod cause;
pub mod dissector;
pub mod entry;
pub mod headers;
pub mod ingest;
pub mod kind;
mod record;
pub mod summary;
pub mod time;

pub use cause::{Cause, CauseReason};
pub use entry::Entry;
pub use time::Timestamp;
