//! One HTTP/2 stream: the request as the client sent it, the response as far as it came, and gRPC's
//! view of both.

use super::grpc;
use crate::entry::{GrpcInfo, Request, Response};
use crate::headers::Headers;
use crate::time::Timestamp;

/// Header fields kept per message (names and values in all); beyond them fields are counted, not kept.
pub const MAX_KEPT_FIELDS: usize = 64;
pub const MAX_KEPT_BYTES: usize = 8 * 1024;
/// The longest `grpc-message` kept.
const MAX_GRPC_MESSAGE: usize = 512;
/// The longest raw `grpc-message` read (percent-encoding triples a byte at most).
const MAX_GRPC_MESSAGE_RAW: usize = 3 * MAX_GRPC_MESSAGE;

pub struct Stream {
    pub req_ts: Timestamp,
    pub request: Request,
    /// When the client ended its side (END_STREAM): the pair timer starts here.
    pub request_done: Option<Timestamp>,
    pub response: Option<(Timestamp, Response)>,
    pub grpc: Option<GrpcInfo>,
    /// Reported missing after the pair timeout, after waiting this many ms.
    pub reported_missing: Option<u64>,
    /// The call's `grpc-timeout` in ms: its pair timer, and what tells a client's cancel at its deadline
    /// from one before it.
    pub deadline_ms: Option<u64>,
}

/// A decoded header block: pseudo-header fields apart, the rest as headers.
#[derive(Default)]
pub struct Block {
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub status: Option<String>,
    pub headers: Headers,
    /// What gRPC reads, kept whatever the bounds below: grpc-java sends `grpc-status` last, after every
    /// trailer the application added.
    pub content_type: Option<String>,
    pub grpc_status: Option<String>,
    pub grpc_message: Option<String>,
    pub grpc_timeout: Option<String>,
    /// Fields not kept (over the bounds above).
    pub dropped: u64,
    kept_bytes: usize,
}

impl Block {
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        let name = String::from_utf8_lossy(name);
        let value = String::from_utf8_lossy(value);
        match name.as_ref() {
            ":method" => self.method = Some(value.into_owned()),
            ":path" => self.path = Some(value.into_owned()),
            ":authority" => self.authority = Some(value.into_owned()),
            ":status" => self.status = Some(value.into_owned()),
            n if n.starts_with(':') => {}
            n => {
                let keep = |v: &str, max: usize| Some(v.chars().take(max).collect::<String>());
                match n {
                    "content-type" => self.content_type = keep(&value, 256),
                    "grpc-status" => self.grpc_status = keep(&value, 16),
                    "grpc-message" => self.grpc_message = keep(&value, MAX_GRPC_MESSAGE_RAW),
                    "grpc-timeout" => self.grpc_timeout = keep(&value, 16),
                    _ => {}
                }
                let cost = n.len() + value.len();
                if self.headers.len() >= MAX_KEPT_FIELDS || self.kept_bytes + cost > MAX_KEPT_BYTES {
                    self.dropped += 1;
                    return;
                }
                self.kept_bytes += cost;
                self.headers.append(n, &value);
            }
        }
    }
}

impl Stream {
    pub fn new(ts: Timestamp, b: Block, end_stream: bool) -> Stream {
        let path = b.path.unwrap_or_default();
        let grpc = b.content_type.as_deref().filter(|ct| grpc::is_grpc(ct)).map(|_| {
            let (service, method) = grpc::service_and_method(&path);
            GrpcInfo { service, method, status: None, status_name: None, message: None }
        });
        let mut headers = b.headers;
        if let Some(a) = b.authority {
            // HTTP/1's Host, so that `request.headers["host"]` means the same for both.
            if headers.get("host").is_none() {
                headers.append("host", &a);
            }
        }
        Stream {
            req_ts: ts,
            request: Request {
                method: b.method.unwrap_or_default(),
                path,
                version: "HTTP/2.0".into(),
                headers,
                body_size: 0,
            },
            request_done: end_stream.then_some(ts),
            response: None,
            deadline_ms: b.grpc_timeout.as_deref().and_then(grpc::timeout_ms),
            grpc,
            reported_missing: None,
        }
    }

    /// The HTTP/1.1 request that asked for the `h2c` upgrade: HTTP/2's stream 1, sent whole.
    pub fn upgraded(ts: Timestamp, request: Request) -> Stream {
        let grpc = request.headers.get("content-type").filter(|ct| grpc::is_grpc(ct)).map(|_| {
            let (service, method) = grpc::service_and_method(&request.path);
            GrpcInfo { service, method, status: None, status_name: None, message: None }
        });
        let deadline_ms = request.headers.get("grpc-timeout").and_then(grpc::timeout_ms);
        Stream {
            req_ts: ts,
            request,
            request_done: Some(ts),
            response: None,
            grpc,
            reported_missing: None,
            deadline_ms,
        }
    }

    /// The pair of an answered stream (`None` while it has no response).
    pub fn into_pair(self) -> Option<super::Http2Outcome> {
        let (resp_ts, response) = self.response?;
        Some(super::Http2Outcome::Pair {
            req_ts: self.req_ts,
            request: self.request,
            resp_ts,
            response,
            grpc: self.grpc,
            late: self.reported_missing,
        })
    }

    /// gRPC's status and message from a block (trailers, or a trailers-only response).
    pub fn take_grpc_status(&mut self, b: &Block) {
        let Some(g) = self.grpc.as_mut() else { return };
        if let Some(code) = b.grpc_status.as_deref().and_then(|s| s.trim().parse::<u32>().ok()) {
            g.status = Some(code);
            g.status_name = Some(grpc::status_name(code));
        }
        if let Some(m) = b.grpc_message.as_deref() {
            g.message = Some(grpc::decode_message(m, MAX_GRPC_MESSAGE));
        }
    }
}

pub fn response(status: u16, headers: Headers) -> Response {
    Response { status, status_text: String::new(), version: "HTTP/2.0".into(), headers, body_size: 0 }
}
