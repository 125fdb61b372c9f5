//! `/healthz`, `/readyz` and `/metrics` of the agent. Alive while its engine and capture threads go round
//! (a dead or stuck thread fails the liveness probe and the kubelet restarts the agent); ready once it
//! captures.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use super::counters::Counters;
use super::export::AgentExport;
use super::outbox::Outbox;

#[derive(Clone)]
struct S {
    counters: Arc<Counters>,
    outbox: Arc<Outbox>,
    export: Option<Arc<AgentExport>>,
    stop: Arc<AtomicBool>,
}

pub async fn serve(
    addr: SocketAddr,
    counters: Arc<Counters>,
    outbox: Arc<Outbox>,
    export: Option<Arc<AgentExport>>,
    stop: Arc<AtomicBool>,
) {
    let app = Router::new()
        .route(
            "/healthz",
            get(|State(s): State<S>| async move {
                if s.stop.load(Ordering::Relaxed) {
                    return (StatusCode::SERVICE_UNAVAILABLE, "stopping".to_owned());
                }
                match s.counters.alive(super::counters::now_ms()) {
                    Ok(()) => (StatusCode::OK, "ok".to_owned()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }),
        )
        .route(
            "/readyz",
            get(|State(s): State<S>| async move {
                // Capturing: the capture thread has gone round at least once.
                if s.counters.capture_beat.load(Ordering::Relaxed) > 0 && !s.stop.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not capturing yet")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<S>| async move {
                let (n, bytes) = s.outbox.len_and_bytes();
                let mut text = s.counters.render(n, bytes);
                if let Some(export) = &s.export {
                    text.push_str(&export.render());
                }
                text
            }),
        )
        .with_state(S { counters, outbox, export, stop });
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        }
        Err(e) => tracing::error!(error = %e, %addr, "cannot serve /metrics"),
    }
}
