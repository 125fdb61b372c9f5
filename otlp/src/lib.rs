//! Entries into an OpenTelemetry pipeline: each entry one OTLP log record, sent to a collector.
//!
//! - `proto.rs` — the OTLP messages (prost, written out: no `protoc`);
//! - `record.rs` — an entry as a log record (semantic conventions, severity);
//! - `transport.rs` — gRPC and HTTP/protobuf, TLS, and what the receiver's answer means;
//! - `exporter.rs` — the bounded queue, batches, senders, retries with backoff;
//! - `metrics.rs` — `faultline_export_*`, counting every entry not delivered.
//!
//! The operator exports what it accepts (named, explained); agents export what they find when a
//! TapConfig has them send, so that no single process is in the path.

pub mod exporter;
pub mod metrics;
pub mod proto;
pub mod record;
pub mod transport;

pub use exporter::{Exporter, SENDERS};
pub use metrics::ExportMetrics;
pub use transport::{Protocol, Sender, Target, TargetError};
