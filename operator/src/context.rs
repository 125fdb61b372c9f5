//! What every reconcile shares: the client, the operator's settings, and its metrics.

use std::sync::Arc;

use kube::Client;

use crate::metrics::Metrics;
use crate::tapconfig::build::BuildParams;

pub struct Context {
    pub client: Client,
    /// Where agents and their configuration live, and the default agent image.
    pub build: BuildParams,
    pub metrics: Arc<Metrics>,
    /// The OTLP exporters, configured by the TapConfig reconcile, fed by ingest.
    pub exports: Arc<crate::export::Exports>,
}

/// The field manager for server-side apply: what this operator owns in every object it writes.
pub const MANAGER: &str = "faultline-operator";
