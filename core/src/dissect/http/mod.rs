//! HTTP/1.x: recognising it by content (any port), framing messages in each direction, and pairing
//! requests with responses, including pipelining, 1xx, HEAD, 204/304, chunked and close-delimited bodies.

mod detect;
mod dissector;
mod parser;

pub use detect::{looks_like_request, looks_like_response, proxy_header_len, proxy_header_size, Verdict};
pub use dissector::{Dir, HttpDissector, HttpOutcome, Upgrade};
