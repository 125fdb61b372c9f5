//! HTTP outcomes as entries (SPEC §3.5): a pair per exchange, a half connection for a request or response
//! left alone, a dissection error for what broke the grammar or ended inside a message.

use super::HttpOutcome;
use crate::dissect::Found;
use crate::entry::{EntryError, ErrorType, Protocol};

/// Each outcome as an entry about the connection.
pub fn emit(outcomes: Vec<HttpOutcome>, found: &mut Found<'_>) {
    for o in outcomes {
        let e = match o {
            HttpOutcome::Pair { req_ts, request, resp_ts, response, late } => {
                let mut e = found.entry(Protocol::Http, req_ts, resp_ts);
                if let Some(after_ms) = late {
                    e.error = Some(EntryError {
                        kind: ErrorType::PairNotFound,
                        msg: format!(
                            "late response: status {} came after the request was reported missing \
                             ({after_ms} ms without a response)",
                            response.status
                        ),
                    });
                }
                e.request = Some(request);
                e.response = Some(response);
                e
            }
            HttpOutcome::Dissection { ts, end, msg, request, response } => {
                let start = request.as_ref().map_or(ts, |(t, _)| *t);
                let mut e = found.entry(Protocol::Http, start, end);
                e.error = Some(EntryError { kind: ErrorType::Dissection, msg });
                e.request = request.map(|(_, r)| r);
                e.response = response;
                e
            }
            HttpOutcome::MissingResponse { req_ts, request, decided, why } => {
                let mut e = found.entry(Protocol::Http, req_ts, decided);
                e.error = Some(EntryError { kind: ErrorType::PairNotFound, msg: format!("missing response: {why}") });
                e.request = Some(request);
                e
            }
            HttpOutcome::MissingRequest { resp_ts, response, decided, why } => {
                let mut e = found.entry(Protocol::Http, resp_ts, decided);
                e.error = Some(EntryError { kind: ErrorType::PairNotFound, msg: format!("missing request: {why}") });
                e.response = Some(response);
                e
            }
        };
        found.out.push(e);
    }
}
