//! `/healthz` (the process is alive), `/readyz` (it can reach the API server and knows whether it leads),
//! `/metrics`, the agents' ingest endpoint, recordings, and the dashboard.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Health {
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

pub async fn serve(
    addr: SocketAddr,
    health: Health,
    ingest: crate::ingest::Ingest,
    pcaps: crate::pcaps::Pcaps,
    dashboard: crate::dashboard::Dashboard,
    tls: Option<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let agents = Router::new()
        .route(faultline_model::ingest::INGEST_PATH, axum::routing::post(crate::ingest::handle))
        .layer(axum::extract::DefaultBodyLimit::max(32 << 20))
        .with_state(ingest);
    let recordings = Router::new()
        .route("/api/v1/entries/{id}/pcap", get(crate::pcaps::handle))
        .route("/api/entries/{id}/pcap", get(crate::pcaps::handle))
        .with_state(pcaps);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
        .merge(agents)
        .merge(recordings)
        .merge(crate::dashboard::router(dashboard));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    match tls {
        Some(config) => {
            tracing::info!(%addr, "serving the dashboard, ingest, /healthz, /readyz and /metrics over HTTPS");
            let listener = crate::tls::TlsListener::new(listener, config)?;
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
        None => {
            tracing::info!(%addr, "serving the dashboard, ingest, /healthz, /readyz and /metrics over plain HTTP");
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
    }
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(h): State<Health>) -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")], h.metrics.render())
}
