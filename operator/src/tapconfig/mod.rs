//! The TapConfig controller: each TapConfig becomes an agent DaemonSet with its ServiceAccount, RBAC and
//! configuration. Reconcile is a pipeline — dereference, validate, build, apply, update status — where
//! only `build` decides what the children look like, and it needs no client.

pub mod build;
pub mod error;
pub mod overlap;
pub mod reconcile;
pub mod stats;
pub mod status;
