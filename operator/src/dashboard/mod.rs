//! The error dashboard: one page (`/`, with its script and style compiled into the binary) over a JSON
//! and server-sent-events API on the store of recent entries. The page keeps its KFL query in the URL
//! (`/?q=…`), so a view can be bookmarked and shared; what it shows is scoped by the caller's access to
//! ErrorViews (see `access`).

pub mod access;
pub mod api;
pub mod map;
pub mod mcp;
pub mod overview;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use api::Dashboard;

const INDEX: &str = include_str!("../../assets/index.html");
const SCRIPT: &str = include_str!("../../assets/app.js");
const STYLE: &str = include_str!("../../assets/app.css");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body)
}

pub fn router(dashboard: Dashboard) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/api/entries", get(api::list))
        .route("/api/entries/stream", get(api::stream))
        .route("/api/entries/{id}", get(api::one))
        .route("/api/errorviews", get(api::errorviews))
        .route("/api/overview", get(overview::handle))
        .route("/api/map", get(map::handle))
        .route("/mcp", axum::routing::post(mcp::handle).get(mcp::not_here).delete(mcp::not_here))
        .with_state(dashboard)
}

#[cfg(test)]
mod tests;
