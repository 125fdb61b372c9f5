//! The dashboard's routes in-process, over a store filled by hand. Access goes through a Kubernetes client
//! pointed at a closed port: anonymous mode needs no API server, and a token that cannot be reviewed must
//! get a clear 503 rather than entries. Real TokenReviews, RBAC and a browser are in e2e/test_dashboard.py.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{Request, StatusCode};
use faultline_model::entry::{Endpoint, Protocol, Response as HttpResponse};
use faultline_model::ingest::{AgentStats, Batch};
use faultline_model::{Entry, Timestamp};
use serde_json::Value;
use tower::ServiceExt;

use super::access::Access;
use super::{router, Dashboard};
use crate::store::Store;

fn entry(id: &str, t: u64, status: u16, ns: &str) -> Entry {
    let ep = |ip: &str, port| Endpoint {
        namespace: Some(ns.to_owned()),
        name: Some(format!("pod-{port}")),
        ..Endpoint::new(ip.parse().expect("ip"), Some(port))
    };
    let response = HttpResponse {
        status,
        status_text: String::new(),
        version: "HTTP/1.1".into(),
        headers: Default::default(),
        body_size: 0,
    };
    Entry {
        id: id.into(),
        node: Some("n1".into()),
        response: Some(response),
        elapsed_time: 1.0,
        ..Entry::new(Protocol::Http, Timestamp(t), ep("10.0.0.1", 40000), ep("10.0.0.2", 8080))
    }
}

fn app(anonymous: bool) -> axum::Router {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
    let client = kube::Client::try_from(config).expect("client");
    let store = Arc::new(Store::new(100));
    let entries = vec![entry("a", 1, 200, "shop"), entry("b", 2, 503, "shop"), entry("c", 3, 404, "other")];
    let batch = Batch {
        node: "n1".into(),
        agent_run: "r".into(),
        seq: 1,
        stats: AgentStats::default(),
        entries,
        pcaps: Default::default(),
        ..Batch::default()
    };
    store.ingest("t", batch, Timestamp(4));
    let access = Access::new(client.clone(), "faultline-system".into(), anonymous);
    router(Dashboard { client, store, access, closing: tokio::sync::watch::channel(false).1 })
}

async fn call(app: axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.oneshot(req.body(Body::empty()).expect("request")).await.expect("response");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn entries_match_newest_first_with_counts_of_all_matches() {
    let (status, body) = call(app(true), "/api/entries?q=response.status%20%3E%20400&limit=1", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 2);
    assert_eq!(body["counts"], serde_json::json!({"http/4xx": 1, "http/5xx": 1}));
    let ids: Vec<&str> = body["entries"].as_array().expect("list").iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["c"], "newest first, cut at the limit");
    assert_eq!(body["entries"][0]["kind"], "http/4xx");
    assert_eq!(body["entries"][0]["summary"], "http other/pod-40000 -> other/pod-8080: 404 ");

    let (_, all) = call(app(true), "/api/entries", None).await;
    assert_eq!(all["total"], 3, "an empty query matches everything");
}

#[tokio::test]
async fn a_bad_query_is_400_with_the_parsers_column() {
    for path in ["/api/entries?q=response.status%20%3D%20400", "/api/entries/stream?q=response.status%20%3D%20400"] {
        let (status, body) = call(app(true), path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["column"], 17);
        assert_eq!(body["error"], "column 17: unknown operator '=': expected one of == != < <= > >= && || !");
    }
}

#[tokio::test]
async fn one_entry_or_404() {
    let (status, body) = call(app(true), "/api/entries/b", None).await;
    assert_eq!((status, body["response"]["status"].as_u64()), (StatusCode::OK, Some(503)));
    assert_eq!(call(app(true), "/api/entries/zzz", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_anonymous_access_a_token_is_required_and_must_be_checked() {
    let (status, body) = call(app(false), "/api/entries", None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("a bearer token is required")));
    assert_eq!(call(app(false), "/api/entries/b", None).await.0, StatusCode::UNAUTHORIZED);
    // The API server is unreachable: no entries, a clear answer, and nothing cached as a refusal.
    let (status, body) = call(app(false), "/api/entries", Some("some-token")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].as_str().is_some_and(|e| e.starts_with("cannot check access")), "{body}");
}

#[tokio::test]
async fn the_page_and_its_assets_are_served() {
    let app = app(false);
    for (path, kind) in [("/", "text/html"), ("/app.js", "text/javascript"), ("/app.css", "text/css")] {
        let resp = app.clone().oneshot(Request::get(path).body(Body::empty()).expect("req")).await.expect("resp");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
    }
}

async fn mcp(app: axum::Router, msg: Value, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::post("/mcp").header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.oneshot(req.body(Body::from(msg.to_string())).expect("request")).await.expect("response");
    let status = resp.status();
    let body = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn mcp_speaks_json_rpc_over_the_dashboards_own_handlers_and_access() {
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                  "params": {"protocolVersion": "2025-06-18", "capabilities": {}}});
    let (status, body) = mcp(app(true), init, None).await;
    assert_eq!((status, body["result"]["protocolVersion"].as_str()), (StatusCode::OK, Some("2025-06-18")));
    let note = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(mcp(app(true), note, None).await.0, StatusCode::ACCEPTED, "a notification is not answered");
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                  "params": {"name": "list_errors", "arguments": {"query": "response.status >= 500"}}});
    let (_, body) = mcp(app(true), list.clone(), None).await;
    let listed = &body["result"]["structuredContent"];
    assert_eq!((listed["total"].as_u64(), listed["entries"][0]["id"].as_str()), (Some(1), Some("b")));
    let bad = serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                 "params": {"name": "list_errors", "arguments": {"query": "response.status = 1"}}});
    let (_, body) = mcp(app(true), bad, None).await;
    assert_eq!(body["result"]["isError"], true, "a bad query is the tool's error, told to the assistant");
    let unknown = serde_json::json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "rm"}});
    assert_eq!(mcp(app(true), unknown, None).await.1["error"]["code"], -32602);
    // Without a token where the dashboard wants one, the tool says so and shows nothing.
    let (_, body) = mcp(app(false), list, None).await;
    assert_eq!(body["result"]["isError"], true);
    assert!(body["result"]["content"][0]["text"].as_str().is_some_and(|t| t.contains("401")), "{body}");
}
