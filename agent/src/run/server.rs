//! `/healthz` and `/metrics` of the agent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

use super::counters::Counters;
use super::outbox::Outbox;

#[derive(Clone)]
struct S {
    counters: Arc<Counters>,
    outbox: Arc<Outbox>,
    stop: Arc<AtomicBool>,
}

pub async fn serve(addr: SocketAddr, counters: Arc<Counters>, outbox: Arc<Outbox>, stop: Arc<AtomicBool>) {
    let app = Router::new()
        .route(
            "/healthz",
            get(|State(s): State<S>| async move {
                if s.stop.load(Ordering::Relaxed) {
                    "stopping"
                } else {
                    "ok"
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<S>| async move {
                let (n, bytes) = s.outbox.len_and_bytes();
                s.counters.render(n, bytes)
            }),
        )
        .with_state(S { counters, outbox, stop });
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            if let Err(e) = axum::serve(l, app).await {
                tracing::error!(error = %e, "metrics server failed");
            }
        }
        Err(e) => tracing::error!(error = %e, %addr, "cannot serve /metrics"),
    }
}
