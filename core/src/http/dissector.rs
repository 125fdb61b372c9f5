//! Pairs requests with responses on one connection. Requests queue in order (pipelining); each final
//! response answers the oldest. What cannot be paired becomes a half connection (`pair-not-found`) once the
//! connection closes or `pairTimeoutMs` passes; what cannot be parsed becomes a dissection error, after
//! which the connection is not dissected further (SPEC §3.5).

use std::collections::VecDeque;

use super::parser::{BodyRule, Handler, Head, Parser, Role};
use crate::entry::{Request, Response};
use crate::time::Timestamp;

/// Bounds per connection, so a hostile peer cannot grow them without end.
const MAX_PENDING: usize = 1024;
const MAX_ORPHANS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ClientToServer,
    ServerToClient,
}

#[derive(Debug, PartialEq)]
pub enum HttpOutcome {
    Pair { req_ts: Timestamp, request: Request, resp_ts: Timestamp, response: Response },
    Dissection { ts: Timestamp, msg: String, request: Option<(Timestamp, Request)>, response: Option<Response> },
    MissingResponse { req_ts: Timestamp, request: Request, decided: Timestamp, why: &'static str },
    MissingRequest { resp_ts: Timestamp, response: Response, decided: Timestamp, why: &'static str },
}

struct Pending {
    ts: Timestamp,
    request: Request,
}

struct InFlight {
    request: Option<Pending>,
    response: Response,
    ts: Timestamp,
    /// The answer to a request already reported missing: complete it quietly.
    silent: bool,
}

pub struct HttpDissector {
    req: Parser,
    resp: Parser,
    pairing: Pairing,
    /// Dissection failed or lost sync: nothing more is reported for this connection.
    stopped: bool,
}

/// What is waiting to be paired; kept apart from the parsers so a parser can hand it to its handler.
#[derive(Default)]
struct Pairing {
    pending: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    orphans: Vec<(Timestamp, Response)>,
    /// Responses still owed to requests that were already reported missing after `pairTimeoutMs`.
    late: u32,
}

impl Default for HttpDissector {
    fn default() -> Self {
        HttpDissector {
            req: Parser::new(Role::Request),
            resp: Parser::new(Role::Response),
            pairing: Pairing::default(),
            stopped: false,
        }
    }
}

impl HttpDissector {
    /// Whether dissection has stopped (failure, lost sync, or a protocol upgrade).
    pub fn is_stopped(&self) -> bool {
        self.stopped || self.resp.is_tunnel()
    }

    pub fn on_data(&mut self, dir: Dir, ts: Timestamp, data: &[u8], out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        let res = match dir {
            Dir::ClientToServer => self.req.feed(data, ts, &mut RequestSide { p: &mut self.pairing }),
            Dir::ServerToClient => self.resp.feed(data, ts, &mut ResponseSide { p: &mut self.pairing, out }),
        };
        if let Err(msg) = res {
            self.fail(dir, ts, msg, out);
        }
    }

    /// Bytes the capture never saw. Returns true when this cost the dissector its footing.
    pub fn on_gap(&mut self, dir: Dir, len: u64) -> bool {
        if self.is_stopped() {
            return false;
        }
        match dir {
            Dir::ClientToServer => self.req.gap(len),
            Dir::ServerToClient => self.resp.gap(len),
        }
        if self.req.is_lost() || self.resp.is_lost() {
            self.stop();
            return true;
        }
        false
    }

    /// One direction ended with a FIN, in sequence order.
    pub fn on_end(&mut self, dir: Dir, ts: Timestamp, out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        match dir {
            Dir::ClientToServer => {
                if let Err(msg) = self.req.eof("connection closed", ts, &mut RequestSide { p: &mut self.pairing }) {
                    self.fail(dir, ts, msg, out);
                }
            }
            Dir::ServerToClient => {
                if let Err(msg) =
                    self.resp.eof("connection closed", ts, &mut ResponseSide { p: &mut self.pairing, out })
                {
                    self.fail(dir, ts, msg, out);
                    return;
                }
                // The server can send nothing more: every request still waiting is unanswered.
                self.resolve_all(ts, "server closed the connection", out);
            }
        }
    }

    /// The connection was reset (`why` = "connection reset") or the capture ended ("capture ended").
    pub fn on_close(&mut self, ts: Timestamp, why: &'static str, out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        if let Err(msg) = self.resp.eof(why, ts, &mut ResponseSide { p: &mut self.pairing, out }) {
            self.fail(Dir::ServerToClient, ts, msg, out);
            return;
        }
        if let Err(msg) = self.req.eof(why, ts, &mut RequestSide { p: &mut self.pairing }) {
            self.fail(Dir::ClientToServer, ts, msg, out);
            return;
        }
        self.resolve_all(ts, why, out);
    }

    /// Requests older than `pair_timeout_ms` without a response start, and responses without a request,
    /// become half connections.
    pub fn check(&mut self, now: Timestamp, pair_timeout_ms: u64, out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        while let Some(p) = self.pairing.pending.front() {
            if p.ts.plus_millis(pair_timeout_ms) > now {
                break;
            }
            if let Some(p) = self.pairing.pending.pop_front() {
                out.push(HttpOutcome::MissingResponse {
                    req_ts: p.ts,
                    request: p.request,
                    decided: now,
                    why: "no response within pairTimeoutMs",
                });
                self.pairing.late += 1;
            }
        }
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pairing.orphans)
            .into_iter()
            .partition(|(ts, _)| ts.plus_millis(pair_timeout_ms) <= now);
        self.pairing.orphans = keep;
        for (resp_ts, response) in due {
            out.push(HttpOutcome::MissingRequest { resp_ts, response, decided: now, why: "no request seen" });
        }
    }

    fn resolve_all(&mut self, ts: Timestamp, why: &'static str, out: &mut Vec<HttpOutcome>) {
        for p in self.pairing.pending.drain(..) {
            out.push(HttpOutcome::MissingResponse { req_ts: p.ts, request: p.request, decided: ts, why });
        }
        for (resp_ts, response) in self.pairing.orphans.drain(..) {
            out.push(HttpOutcome::MissingRequest { resp_ts, response, decided: ts, why: "no request seen" });
        }
    }

    /// A dissection error: report it with the request it concerns, then stop.
    fn fail(&mut self, dir: Dir, ts: Timestamp, msg: String, out: &mut Vec<HttpOutcome>) {
        let (request, response) = match dir {
            Dir::ServerToClient => match self.pairing.in_flight.take() {
                Some(f) => (f.request, Some(f.response)),
                None => (self.pairing.pending.pop_front(), None),
            },
            // A request cut short is the newest one queued; a request that does not parse was never queued.
            Dir::ClientToServer if msg.starts_with("unexpected EOF") => (self.pairing.pending.pop_back(), None),
            Dir::ClientToServer => (None, None),
        };
        out.push(HttpOutcome::Dissection { ts, msg, request: request.map(|p| (p.ts, p.request)), response });
        self.stop();
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.pairing = Pairing::default();
    }
}

struct RequestSide<'a> {
    p: &'a mut Pairing,
}

impl Handler for RequestSide<'_> {
    fn head(&mut self, head: Head, ts: Timestamp) -> BodyRule {
        if let Head::Request(request) = head {
            if self.p.pending.len() >= MAX_PENDING {
                self.p.pending.pop_front();
            }
            self.p.pending.push_back(Pending { ts, request });
        }
        BodyRule::Normal
    }

    fn message_end(&mut self, body_size: u64, _ts: Timestamp) {
        if let Some(last) = self.p.pending.back_mut() {
            last.request.body_size = body_size;
        }
    }
}

struct ResponseSide<'a> {
    p: &'a mut Pairing,
    out: &'a mut Vec<HttpOutcome>,
}

impl Handler for ResponseSide<'_> {
    fn head(&mut self, head: Head, ts: Timestamp) -> BodyRule {
        let Head::Response(response) = head else {
            return BodyRule::Normal;
        };
        let status = response.status;
        if (100..200).contains(&status) && status != 101 {
            // Interim (100 Continue, 103 Early Hints): the final response is still to come.
            return BodyRule::None;
        }
        let (request, silent) = if self.p.late > 0 {
            self.p.late -= 1;
            (None, true)
        } else {
            (self.p.pending.pop_front(), false)
        };
        let method = request.as_ref().map(|p| p.request.method.as_str()).unwrap_or("");
        let rule = if method == "HEAD" || status == 204 || status == 304 {
            BodyRule::None
        } else if status == 101 || (method == "CONNECT" && (200..300).contains(&status)) {
            BodyRule::Tunnel
        } else {
            BodyRule::Normal
        };
        self.p.in_flight = Some(InFlight { request, response, ts, silent });
        if rule == BodyRule::Tunnel {
            // The parser will not report an end: the message is complete now.
            self.message_end(0, ts);
        }
        rule
    }

    fn message_end(&mut self, body_size: u64, _ts: Timestamp) {
        let Some(mut f) = self.p.in_flight.take() else {
            return;
        };
        f.response.body_size = body_size;
        match f.request {
            Some(p) => self.out.push(HttpOutcome::Pair {
                req_ts: p.ts,
                request: p.request,
                resp_ts: f.ts,
                response: f.response,
            }),
            None if !f.silent && self.p.orphans.len() < MAX_ORPHANS => self.p.orphans.push((f.ts, f.response)),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
