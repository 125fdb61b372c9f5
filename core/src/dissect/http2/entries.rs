//! HTTP/2 outcomes as entries (SPEC §3.5): `protocol` is `grpc` for gRPC calls, else `http2`; a gRPC
//! status other than OK is an error of type `grpc`, a reset or GOAWAY with an error code one of type
//! `http2` — but a client's cancel is a pair (`CANCELLED`), unless it came at the call's deadline.

use super::frame::error_code_name;
use super::Http2Outcome;
use crate::entry::{Entry, EntryError, ErrorType, GrpcInfo, Http2Info, Protocol};
use crate::time::Timestamp;

fn protocol(grpc: &Option<GrpcInfo>) -> Protocol {
    if grpc.is_some() {
        Protocol::Grpc
    } else {
        Protocol::Http2
    }
}

fn error(kind: ErrorType, msg: String) -> Option<EntryError> {
    Some(EntryError { kind, msg })
}

/// The error a finished gRPC call carries: its status unless OK; no status at all is an error too (the
/// client sees UNKNOWN, or UNAVAILABLE for a proxy's HTTP error).
fn grpc_error(g: &GrpcInfo, http_status: u16) -> Option<EntryError> {
    match (g.status, &g.status_name) {
        (Some(0), _) => None,
        (Some(_), Some(name)) => {
            let msg = match &g.message {
                Some(m) if !m.is_empty() => format!("{name}: {m}"),
                _ => name.clone(),
            };
            error(ErrorType::Grpc, msg)
        }
        _ => error(ErrorType::Grpc, format!("no grpc-status: the call ended without trailers (HTTP {http_status})")),
    }
}

/// Builds the entry for `o`; `entry(protocol, start, end)` makes one with this connection's endpoints.
pub fn build(o: Http2Outcome, entry: impl Fn(Protocol, Timestamp, Timestamp) -> Entry) -> Entry {
    match o {
        Http2Outcome::Pair { req_ts, request, resp_ts, response, grpc, late } => {
            let mut e = entry(protocol(&grpc), req_ts, resp_ts);
            e.error = match (late, &grpc) {
                (Some(after_ms), _) => error(
                    ErrorType::PairNotFound,
                    format!(
                        "late response: status {} came after the request was reported missing ({after_ms} ms \
                         without a response)",
                        response.status
                    ),
                ),
                (None, Some(g)) => grpc_error(g, response.status),
                (None, None) => None,
            };
            e.request = Some(request);
            e.response = Some(response);
            e.grpc = grpc;
            e
        }
        Http2Outcome::Cancelled { req_ts, request, response, mut grpc, ts, stream, deadline, by } => {
            let mut e = entry(protocol(&grpc), req_ts, ts);
            // The call as its client saw it end: no grpc-status crossed the wire.
            let (code, name) = if deadline.is_some() { (4, "DEADLINE_EXCEEDED") } else { (1, "CANCELLED") };
            if let Some(g) = grpc.as_mut().filter(|g| g.status.is_none()) {
                g.status = Some(code);
                g.status_name = Some(name.to_owned());
            }
            e.error = deadline.and_then(|t| {
                error(
                    ErrorType::Grpc,
                    format!(
                        "DEADLINE_EXCEEDED: the {} cancelled the call at its deadline (grpc-timeout {t} ms)",
                        by.as_str()
                    ),
                )
            });
            e.http2 = Some(Http2Info { stream, frame: "RST_STREAM".into(), error_code: error_code_name(8), by });
            e.request = Some(request);
            e.response = response;
            e.grpc = grpc;
            e
        }
        Http2Outcome::Reset { request, response, grpc, ts, stream, code, by } => {
            let start = request.as_ref().map_or(ts, |(t, _)| *t);
            let mut e = entry(protocol(&grpc), start, ts);
            let name = error_code_name(code);
            e.error = error(ErrorType::Http2, format!("RST_STREAM {name} from the {} (stream {stream})", by.as_str()));
            e.http2 = Some(Http2Info { stream, frame: "RST_STREAM".into(), error_code: name, by });
            e.request = request.map(|(_, r)| r);
            e.response = response;
            e.grpc = grpc;
            e
        }
        Http2Outcome::GoAway { ts, last_stream, code, by, debug } => {
            let mut e = entry(Protocol::Http2, ts, ts);
            let name = error_code_name(code);
            let detail = if debug.is_empty() { String::new() } else { format!(": {debug}") };
            e.error = error(
                ErrorType::Http2,
                format!("GOAWAY {name} from the {} (last stream {last_stream}){detail}", by.as_str()),
            );
            e.http2 = Some(Http2Info { stream: last_stream, frame: "GOAWAY".into(), error_code: name, by });
            e
        }
        Http2Outcome::Missing { req_ts, request, grpc, decided, why } => {
            let mut e = entry(protocol(&grpc), req_ts, decided);
            e.error = error(ErrorType::PairNotFound, format!("missing response: {why}"));
            e.request = Some(request);
            e.grpc = grpc;
            e
        }
        Http2Outcome::Dissection { ts, msg, request, response, grpc } => {
            let start = request.as_ref().map_or(ts, |(t, _)| *t);
            let mut e = entry(protocol(&grpc), start, ts);
            e.error = error(ErrorType::Dissection, msg);
            e.request = request.map(|(_, r)| r);
            e.response = response;
            e.grpc = grpc;
            e
        }
    }
}
