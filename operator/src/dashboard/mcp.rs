//! `POST /mcp` — Faultline for AI assistants: a Model Context Protocol server (streamable HTTP, each
//! JSON-RPC request answered with one JSON response; no server-initiated stream, so `GET` is 405). Its
//! tools are the dashboard's API seen through MCP — the same handlers, so the caller's bearer token
//! decides exactly what the dashboard would show it (SPEC §5's ErrorView rule), no more:
//! `list_errors`, `get_entry`, `explain`, `error_summary`, `list_views`, `get_pcap`.

use axum::body::Body;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

use super::api::{self, Dashboard};

/// Protocol versions this server speaks (it answers with the client's when it is one of them).
const VERSIONS: [&str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// The largest recording `get_pcap` returns (base64 grows it by a third).
const MAX_PCAP: usize = 1 << 20;
const MAX_BODY: usize = 1 << 20;

pub async fn handle(State(a): State<Dashboard>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if body.len() > MAX_BODY {
        return (StatusCode::PAYLOAD_TOO_LARGE, "an MCP message is at most 1 MiB\n").into_response();
    }
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Json(error(Value::Null, -32700, &format!("not JSON: {e}"))).into_response(),
    };
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A response or something else from the client: nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    let Some(id) = msg.get("id").cloned() else {
        // A notification (`notifications/initialized`, a cancellation): accepted, not answered.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let answer = match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(VERSIONS[0]);
            let version = VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(VERSIONS[0]);
            ok(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "faultline", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Faultline finds network errors from packets in this Kubernetes cluster and \
                        says why where the cluster's state proves it. Start with error_summary for a namespace, \
                        then list_errors with a KFL query, then explain an entry.",
                }),
            )
        }
        "ping" => ok(id, json!({})),
        "tools/list" => ok(id, json!({"tools": tools()})),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or_default();
            let args = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
            match call(&a, &headers, name, &args).await {
                Ok(v) => ok(id, tool_result(&v, false)),
                Err(Failure::Tool(why)) => ok(id, tool_result(&json!({"error": why}), true)),
                Err(Failure::Protocol(code, why)) => error(id, code, &why),
            }
        }
        other => error(id, -32601, &format!("no method {other}")),
    };
    Json(answer).into_response()
}

pub async fn not_here() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, "POST MCP requests here; this server opens no stream\n").into_response()
}

fn ok(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn tool_result(v: &Value, is_error: bool) -> Value {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    let mut r = json!({"content": [{"type": "text", "text": text}], "isError": is_error});
    if v.is_object() {
        r["structuredContent"] = v.clone();
    }
    r
}

enum Failure {
    /// The tool ran and failed (a bad query, an entry not found): the assistant reads why.
    Tool(String),
    /// The call itself is wrong (no such tool).
    Protocol(i64, String),
}

fn tools() -> Value {
    let string = |d: &str| json!({"type": "string", "description": d});
    let int = |d: &str| json!({"type": "integer", "description": d});
    json!([
        {"name": "list_errors", "description": "Recent errors matching a KFL query, newest first, with counts by kind.",
         "inputSchema": {"type": "object", "properties": {
             "query": string("KFL, e.g. `error and dst.namespace == \"shop\"` (default: `error`)"),
             "namespace": string("only entries whose source or destination is in this namespace"),
             "limit": int("at most this many entries (default 20, at most 200)")}}},
        {"name": "get_entry", "description": "One entry by id, every field.",
         "inputSchema": {"type": "object", "properties": {"id": string("the entry's id")}, "required": ["id"]}},
        {"name": "explain", "description": "Why an error happened: its cause and the evidence from the cluster's state, where the state proves one.",
         "inputSchema": {"type": "object", "properties": {"id": string("the entry's id")}, "required": ["id"]}},
        {"name": "error_summary", "description": "Errors of the last minutes by kind, and the failing client -> server pairs with their counts and causes.",
         "inputSchema": {"type": "object", "properties": {
             "namespace": string("only this namespace"),
             "query": string("KFL to narrow further"),
             "minutes": int("the window (default 15, at most 60)")}}},
        {"name": "list_views", "description": "The ErrorViews (saved queries) the caller may read, with their match counts.",
         "inputSchema": {"type": "object", "properties": {}}},
        {"name": "get_pcap", "description": "An error entry's recording (pcap, base64) for Wireshark, at most 1 MiB.",
         "inputSchema": {"type": "object", "properties": {"id": string("the entry's id")}, "required": ["id"]}},
    ])
}

/// A KFL query from a tool's `query` and `namespace` arguments.
fn query_of(args: &Value, default: &str) -> String {
    let q = args.get("query").and_then(Value::as_str).filter(|q| !q.trim().is_empty()).unwrap_or(default);
    match args.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        Some(ns) => {
            let ns = serde_json::to_string(ns).unwrap_or_default();
            format!("({q}) and (src.namespace == {ns} or dst.namespace == {ns})")
        }
        None => q.to_owned(),
    }
}

/// The JSON a dashboard handler answered, or why it did not.
async fn body_of(r: Response) -> Result<Value, Failure> {
    let status = r.status();
    let bytes = axum::body::to_bytes(Body::new(r.into_body()), 64 << 20)
        .await
        .map_err(|e| Failure::Tool(format!("reading the answer: {e}")))?;
    let v: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&bytes).trim().to_owned()}));
    if status.is_success() {
        Ok(v)
    } else {
        let why = v.get("error").and_then(Value::as_str).map_or_else(|| v.to_string(), str::to_owned);
        Err(Failure::Tool(format!("{status}: {why}")))
    }
}

fn id_of(args: &Value) -> Result<String, Failure> {
    args.get("id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| Failure::Tool("`id` is required".into()))
}

async fn call(a: &Dashboard, headers: &HeaderMap, name: &str, args: &Value) -> Result<Value, Failure> {
    let st = || State(a.clone());
    match name {
        "list_errors" => {
            let limit = args.get("limit").and_then(Value::as_u64).unwrap_or(20).clamp(1, 200) as usize;
            let p = api::Params::new(query_of(args, "error"), Some(limit));
            body_of(api::list(st(), UrlQuery(p), headers.clone()).await).await
        }
        "get_entry" => body_of(api::one(st(), Path(id_of(args)?), headers.clone()).await).await,
        "explain" => {
            let e = body_of(api::one(st(), Path(id_of(args)?), headers.clone()).await).await?;
            let cause = e.get("cause").cloned();
            Ok(json!({
                "id": e.get("id"), "kind": e.get("kind"), "summary": e.get("summary"),
                "cause": cause.clone().unwrap_or(Value::Null),
                "explained": cause.is_some(),
                "note": if cause.is_some() { "the cause and the objects and facts of the cluster's state it rests on" }
                        else { "no cause: the cluster's state Faultline watches does not prove one (or the entry is not an error)" },
            }))
        }
        "error_summary" => {
            let q = query_of(args, "error");
            let minutes = args.get("minutes").and_then(Value::as_u64).unwrap_or(15).clamp(1, 60);
            // One review of the caller and one snapshot of the store, for both counts.
            let m = match api::matching(a, &q, headers).await {
                Ok(m) => m,
                Err(refused) => return Err(body_of(refused).await.err().unwrap_or(Failure::Tool("refused".into()))),
            };
            let now = crate::clock::now();
            let matched = || m.entries.iter().map(|e| e.as_ref()).filter(|e| m.matches(e));
            let overview = super::overview::overview(matched(), now, minutes);
            let map = super::map::map(matched(), now, minutes);
            Ok(json!({
                "query": q, "minutes": minutes, "total": overview.total, "byKind": overview.kinds,
                "byCause": map.causes, "pairs": map.edges,
            }))
        }
        "list_views" => {
            let views = body_of(api::errorviews(st(), headers.clone()).await).await?;
            Ok(json!({"views": views}))
        }
        "get_pcap" => {
            let id = id_of(args)?;
            let pcaps = crate::pcaps::Pcaps { access: a.access.with_token_required(), store: a.store.clone() };
            let r = crate::pcaps::handle(State(pcaps), Path(id.clone()), headers.clone()).await;
            let status = r.status();
            let bytes = axum::body::to_bytes(Body::new(r.into_body()), MAX_PCAP + 1)
                .await
                .map_err(|_| Failure::Tool(format!("the recording of {id} is over {MAX_PCAP} bytes")))?;
            if !status.is_success() {
                return Err(Failure::Tool(format!("{status}: {}", String::from_utf8_lossy(&bytes).trim())));
            }
            Ok(
                json!({"id": id, "bytes": bytes.len(), "pcapBase64": base64::engine::general_purpose::STANDARD.encode(&bytes)}),
            )
        }
        other => Err(Failure::Protocol(-32602, format!("no tool {other}"))),
    }
}
