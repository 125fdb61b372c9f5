//! What the HTTP/2 dissector finds (turned into entries by `entries.rs`) and what it drops on purpose
//! (drained into the engine's statistics).

use crate::entry::{GrpcInfo, Request, Response, Side};
use crate::time::Timestamp;

#[derive(Debug, PartialEq)]
pub enum Http2Outcome {
    /// An answered stream. `late`: it had been reported missing after waiting this many ms.
    Pair {
        req_ts: Timestamp,
        request: Request,
        resp_ts: Timestamp,
        response: Response,
        grpc: Option<GrpcInfo>,
        late: Option<u64>,
    },
    /// The client cancelled its own stream (RST_STREAM CANCEL): its choice, not an error — unless its
    /// `grpc-timeout` had passed (`deadline`), when the call failed with DEADLINE_EXCEEDED (and then the
    /// CANCEL may come from a server enforcing the deadline: `by`).
    Cancelled {
        req_ts: Timestamp,
        request: Request,
        response: Option<Response>,
        grpc: Option<GrpcInfo>,
        ts: Timestamp,
        stream: u32,
        deadline: Option<u64>,
        by: Side,
    },
    /// RST_STREAM with an error code. `request` is `None` for a stream opened before the dissector could
    /// read its header block (picked up mid-stream, or after loss).
    Reset {
        request: Option<(Timestamp, Request)>,
        response: Option<Response>,
        grpc: Option<GrpcInfo>,
        ts: Timestamp,
        stream: u32,
        code: u32,
        by: Side,
    },
    /// GOAWAY with an error code.
    GoAway { ts: Timestamp, last_stream: u32, code: u32, by: Side, debug: String },
    /// A request with no response after the pair timer or at the connection's end.
    Missing { req_ts: Timestamp, request: Request, grpc: Option<GrpcInfo>, decided: Timestamp, why: String },
    /// `parser error …` or `unexpected EOF …`.
    Dissection {
        ts: Timestamp,
        msg: String,
        request: Option<(Timestamp, Request)>,
        response: Option<Response>,
        grpc: Option<GrpcInfo>,
    },
}

/// What the dissector dropped on purpose, drained into the engine's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Http2Counters {
    /// Connections whose header blocks could no longer be read in some direction (loss outside a DATA
    /// payload, a table or block over the bounds): their streams are no longer paired.
    pub broken: u64,
    /// Streams open when that happened: counted, not reported.
    pub lost_streams: u64,
    /// Gaps inside DATA payloads, skipped without harm.
    pub gaps_skipped: u64,
    /// Streams not tracked (over the per-connection bound) or header fields not kept.
    pub over_limit: u64,
    /// Streams above a GOAWAY's last stream id: not processed by the server, so retried by clients.
    pub refused_by_goaway: u64,
    /// Streams still open when their client left (GOAWAY, its close or reset): its to cut, not reported.
    pub cut_by_client: u64,
    /// Connections read from a frame boundary found mid-stream (picked up late, or after loss).
    pub resynced: u64,
    /// Header blocks not decoded: their HPACK state was lost (mid-stream, or loss).
    pub blocks_undecoded: u64,
    /// Client cancels of streams whose request was never read (mid-stream): the client's choice.
    pub cancels_unseen: u64,
}
