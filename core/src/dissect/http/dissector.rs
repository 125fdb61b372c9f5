//! Pairs requests with responses on one connection. Requests queue in order (pipelining); each final
//! response answers the oldest. What cannot be paired becomes a half connection (`pair-not-found`) once the
//! connection closes or `pairTimeoutMs` after the request was sent whole; what cannot be parsed becomes a
//! dissection error, after which the connection is not dissected further (SPEC §3.5).
//!
//! Capture loss costs at most the exchange it hit (SPEC §3.1, §3.3): after a gap the parsers resynchronise
//! at the next message, requests whose answers may have been in the gap are dropped (counted) instead of
//! reported missing, and a response whose request was lost is dropped (counted) instead of reported as
//! `missing request`.

use std::collections::VecDeque;

use super::parser::{BodyRule, GapEffect, Handler, Head, Parser, Role};
use crate::dissect::Direction;
use crate::engine::stats::Stats;
use crate::entry::{Request, Response};
use crate::time::Timestamp;

/// Bounds per connection, so a hostile peer cannot grow them without end.
const MAX_PENDING: usize = 1024;
const MAX_ORPHANS: usize = 64;
const MAX_LATE: usize = 64;

#[derive(Debug, PartialEq)]
pub enum HttpOutcome {
    /// `late`: the request had been reported missing after waiting this many ms; this is its late answer.
    Pair {
        req_ts: Timestamp,
        request: Request,
        resp_ts: Timestamp,
        response: Response,
        late: Option<u64>,
    },
    /// `end`: when it was decided (the server's answer to a request that did not parse, else `ts`).
    Dissection {
        ts: Timestamp,
        end: Timestamp,
        msg: String,
        request: Option<(Timestamp, Request)>,
        response: Option<Response>,
    },
    MissingResponse {
        req_ts: Timestamp,
        request: Request,
        decided: Timestamp,
        why: &'static str,
    },
    MissingRequest {
        resp_ts: Timestamp,
        response: Response,
        decided: Timestamp,
        why: &'static str,
    },
}

struct Pending {
    id: u64,
    ts: Timestamp,
    /// When its last byte was seen: the pair timer starts here.
    complete: Option<Timestamp>,
    request: Request,
    /// The response-side gap count when it was queued: a later gap may have swallowed its answer.
    epoch: u32,
    /// Reported missing after `pairTimeoutMs`, after waiting this long: a response now is a late one.
    waited_ms: Option<u64>,
}

/// A request answered by `101 Switching Protocols` to `h2c`, and that answer.
pub struct Upgrade {
    pub req_ts: Timestamp,
    pub request: Request,
    pub resp_ts: Timestamp,
    pub response: Response,
    /// The server's bytes that followed the 101: the start of its HTTP/2.
    pub rest: Vec<u8>,
}

struct InFlight {
    request: Option<Pending>,
    response: Response,
    ts: Timestamp,
}

/// What the dissector dropped on purpose, drained into the engine's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpCounters {
    /// Exchanges lost to capture loss (a request or response in a gap): counted, not reported.
    pub lost_exchanges: u64,
    /// Responses before the first request of a connection picked up mid-stream.
    pub early_responses: u64,
    /// Gaps that hid message boundaries (the parser resynchronised).
    pub resyncs: u64,
}

pub struct HttpDissector {
    req: Parser,
    resp: Parser,
    pairing: Pairing,
    /// Dissection failed: nothing more is reported for this connection.
    stopped: bool,
}

/// What is waiting to be paired; kept apart from the parsers so a parser can hand it to its handler.
#[derive(Default)]
struct Pairing {
    pending: VecDeque<Pending>,
    in_flight: Option<InFlight>,
    orphans: Vec<(Timestamp, Response)>,
    /// Requests reported missing after `pairTimeoutMs`, oldest first: the next responses answer them.
    late: VecDeque<Pending>,
    next_id: u64,
    /// The request whose head was parsed and whose body is still coming.
    receiving: Option<u64>,
    /// Response-side gaps that hid boundaries so far.
    epoch: u32,
    /// A response-side gap happened and no response has been paired since.
    resp_resync: bool,
    /// A request-side gap may have swallowed requests: the next unpaired response is theirs.
    req_lost: bool,
    /// Picked up mid-stream and no request seen yet: responses now answer requests never captured.
    before_first_request: bool,
    /// A final response came while its request's body was still being sent (Expect: 100-continue).
    waive_request_body: bool,
    /// A `101 Switching Protocols` to `h2c` answered this request: it continues as HTTP/2 stream 1.
    h2c: Option<Upgrade>,
    /// A request that did not parse (when, why), after those queued: the server's answer decides what it
    /// was (SPEC §3.5: a 400 is the server's verdict, and must not vanish).
    broken_request: Option<(Timestamp, String)>,
    /// The response now coming answers the broken request.
    answering_broken: bool,
    /// The broken request was reported with its answer: nothing more to read.
    done: bool,
    counters: HttpCounters,
}

impl Default for HttpDissector {
    fn default() -> Self {
        HttpDissector::new(false)
    }
}

impl HttpDissector {
    /// `midstream`: the connection was picked up without its start, so the first responses may answer
    /// requests that were never captured.
    pub fn new(midstream: bool) -> Self {
        HttpDissector {
            req: Parser::new(Role::Request),
            resp: Parser::new(Role::Response),
            pairing: Pairing { before_first_request: midstream, ..Pairing::default() },
            stopped: false,
        }
    }

    /// After a `101` to `h2c`: the upgrade request (HTTP/2's stream 1), its 101, and the server's bytes
    /// that followed — the start of its HTTP/2. The connection continues as HTTP/2.
    pub fn take_h2c(&mut self) -> Option<Upgrade> {
        let mut up = self.pairing.h2c.take()?;
        up.rest = self.resp.take_tunnel_rest();
        Some(up)
    }

    /// Whether dissection has stopped (failure or a protocol upgrade).
    /// A request is waiting for its response (or its response is still coming).
    pub fn awaits_response(&self) -> bool {
        let p = &self.pairing;
        !self.stopped && (!p.pending.is_empty() || p.in_flight.is_some() || p.broken_request.is_some())
    }

    /// Bytes held between calls: heads not yet whole.
    pub fn buffered(&self) -> usize {
        self.req.buffered() + self.resp.buffered()
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped || self.resp.is_tunnel()
    }

    /// Moves what was dropped on purpose since the last call into `stats`.
    pub fn drain_counters(&mut self, stats: &mut Stats) {
        let c = std::mem::take(&mut self.pairing.counters);
        stats.http_lost_exchanges += c.lost_exchanges;
        stats.http_early_responses += c.early_responses;
        stats.http_resyncs += c.resyncs;
    }

    pub fn on_data(&mut self, dir: Direction, ts: Timestamp, data: &[u8], out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        let res = match dir {
            Direction::ToServer => self.req.feed(data, ts, &mut RequestSide { p: &mut self.pairing }),
            Direction::ToClient => {
                let r = self.resp.feed(data, ts, &mut ResponseSide { p: &mut self.pairing, out });
                if std::mem::take(&mut self.pairing.waive_request_body) {
                    self.req.waive_body();
                }
                if self.pairing.h2c.is_none() {
                    // Another protocol (a WebSocket): what follows is not read.
                    drop(self.resp.take_tunnel_rest());
                }
                r
            }
        };
        match res {
            Err(msg) if dir == Direction::ToServer && msg.starts_with("parser error") => {
                // The request side reads no further; the server's answer (or its silence) decides.
                self.req.fail();
                self.pairing.broken_request.get_or_insert((ts, msg));
            }
            Err(msg) => self.fail(dir, ts, msg, out),
            Ok(()) if self.pairing.done => self.stop(),
            Ok(()) => {}
        }
    }

    /// Bytes the capture never saw.
    pub fn on_gap(&mut self, dir: Direction, len: u64, ts: Timestamp, out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        let effect = match dir {
            Direction::ToServer => self.req.gap(len, ts, &mut RequestSide { p: &mut self.pairing }),
            Direction::ToClient => self.resp.gap(len, ts, &mut ResponseSide { p: &mut self.pairing, out }),
        };
        let GapEffect::Resync { .. } = effect else { return };
        let p = &mut self.pairing;
        p.counters.resyncs += 1;
        match dir {
            Direction::ToServer => {
                // A request (or several) may be gone; a request whose head was cut is gone for sure.
                p.req_lost = true;
                p.receiving = None;
            }
            Direction::ToClient => {
                // Responses may be gone: the requests queued so far may have had their answer in the gap.
                p.epoch = p.epoch.wrapping_add(1);
                p.resp_resync = true;
            }
        }
    }

    /// One direction ended with a FIN, in sequence order.
    pub fn on_end(&mut self, dir: Direction, ts: Timestamp, out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        match dir {
            Direction::ToServer => {
                if let Err(msg) = self.req.eof("connection closed", ts, &mut RequestSide { p: &mut self.pairing }) {
                    self.fail(dir, ts, msg, out);
                }
            }
            Direction::ToClient => {
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
            self.fail(Direction::ToClient, ts, msg, out);
            return;
        }
        if let Err(msg) = self.req.eof(why, ts, &mut RequestSide { p: &mut self.pairing }) {
            self.fail(Direction::ToServer, ts, msg, out);
            return;
        }
        self.resolve_all(ts, why, out);
    }

    /// Requests sent whole more than `pair_timeout_ms` ago without a response, and responses without a
    /// request, become half connections, decided at their deadline.
    pub fn check(&mut self, now: Timestamp, pair_timeout_ms: u64, out: &mut Vec<HttpOutcome>) {
        if self.is_stopped() {
            return;
        }
        let p = &mut self.pairing;
        while let Some(front) = p.pending.front() {
            // A request still being sent is not waiting for its answer yet; neither is any behind it.
            let Some(complete) = front.complete else { break };
            let deadline = complete.plus_millis(pair_timeout_ms);
            if deadline > now {
                break;
            }
            let Some(mut req) = p.pending.pop_front() else { break };
            if req.epoch != p.epoch {
                // Its answer may have been in a gap: loss, not a half connection.
                p.counters.lost_exchanges += 1;
                continue;
            }
            out.push(HttpOutcome::MissingResponse {
                req_ts: req.ts,
                request: req.request.clone(),
                decided: deadline,
                why: "no response within pairTimeoutMs",
            });
            req.waited_ms = Some(pair_timeout_ms);
            if p.late.len() >= MAX_LATE {
                p.late.pop_front();
            }
            p.late.push_back(req);
        }
        let broken_due = p.broken_request.as_ref().is_some_and(|(at, _)| at.plus_millis(pair_timeout_ms) <= now);
        if broken_due && p.pending.is_empty() && p.in_flight.is_none() {
            if let Some((at, msg)) = p.broken_request.take() {
                let end = at.plus_millis(pair_timeout_ms);
                out.push(HttpOutcome::Dissection { ts: at, end, msg, request: None, response: None });
            }
            self.stop();
            return;
        }
        let (due, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut p.orphans).into_iter().partition(|(ts, _)| ts.plus_millis(pair_timeout_ms) <= now);
        p.orphans = keep;
        for (resp_ts, response) in due {
            let decided = resp_ts.plus_millis(pair_timeout_ms);
            out.push(HttpOutcome::MissingRequest { resp_ts, response, decided, why: "no request seen" });
        }
    }

    fn resolve_all(&mut self, ts: Timestamp, why: &'static str, out: &mut Vec<HttpOutcome>) {
        let p = &mut self.pairing;
        for req in p.pending.drain(..) {
            if req.epoch != p.epoch {
                p.counters.lost_exchanges += 1;
                continue;
            }
            out.push(HttpOutcome::MissingResponse { req_ts: req.ts, request: req.request, decided: ts, why });
        }
        for (resp_ts, response) in p.orphans.drain(..) {
            out.push(HttpOutcome::MissingRequest { resp_ts, response, decided: ts, why: "no request seen" });
        }
        p.late.clear();
        if let Some((at, msg)) = p.broken_request.take() {
            out.push(HttpOutcome::Dissection { ts: at, end: ts, msg, request: None, response: None });
        }
    }

    /// Nothing more is read on this connection.
    fn stop(&mut self) {
        self.stopped = true;
        self.req.fail();
        self.resp.fail();
        let counters = self.pairing.counters;
        self.pairing = Pairing { counters, ..Pairing::default() };
    }

    /// A dissection error: report it with the request it concerns, then stop.
    fn fail(&mut self, dir: Direction, ts: Timestamp, msg: String, out: &mut Vec<HttpOutcome>) {
        let p = &mut self.pairing;
        if dir == Direction::ToClient && p.in_flight.is_none() && p.late.is_empty() {
            if p.pending.front().is_some_and(|r| r.request.version == "HTTP/0.9") {
                // An HTTP/0.9 response is the body alone, no status line: the request was answered.
                self.stop();
                return;
            }
            if let (true, Some((at, why))) = (p.pending.is_empty(), p.broken_request.take()) {
                // Not HTTP back either: the request's fault is what to report.
                out.push(HttpOutcome::Dissection { ts: at, end: ts, msg: why, request: None, response: None });
                self.stop();
                return;
            }
        }
        let (request, response) = match dir {
            Direction::ToClient => match self.pairing.in_flight.take() {
                Some(f) => (f.request, Some(f.response)),
                None => (self.pairing.pending.pop_front(), None),
            },
            // A request cut short is the newest one queued; a request that does not parse was never queued.
            Direction::ToServer if msg.starts_with("unexpected EOF") => (self.pairing.pending.pop_back(), None),
            Direction::ToServer => (None, None),
        };
        let request = request.map(|p| (p.ts, p.request));
        out.push(HttpOutcome::Dissection { ts, end: ts, msg, request, response });
        self.stop();
    }
}

struct RequestSide<'a> {
    p: &'a mut Pairing,
}

impl Handler for RequestSide<'_> {
    fn head(&mut self, head: Head, ts: Timestamp) -> BodyRule {
        if let Head::Request(request) = head {
            let p = &mut *self.p;
            if p.pending.len() >= MAX_PENDING {
                p.pending.pop_front();
            }
            p.next_id += 1;
            p.receiving = Some(p.next_id);
            p.before_first_request = false;
            p.pending.push_back(Pending {
                id: p.next_id,
                ts,
                complete: None,
                request,
                epoch: p.epoch,
                waited_ms: None,
            });
        }
        BodyRule::Normal
    }

    fn message_end(&mut self, body_size: u64, ts: Timestamp) {
        let Some(id) = self.p.receiving.take() else { return };
        // Usually the newest; it may have been answered (and left the queue) before it was sent whole.
        if let Some(req) = self.p.pending.iter_mut().rev().find(|r| r.id == id) {
            req.request.body_size = body_size;
            req.complete = Some(ts);
        }
    }
}

struct ResponseSide<'a> {
    p: &'a mut Pairing,
    out: &'a mut Vec<HttpOutcome>,
}

impl ResponseSide<'_> {
    /// The request the response that just began answers.
    fn answered_request(&mut self) -> Option<Pending> {
        let p = &mut *self.p;
        if std::mem::take(&mut p.resp_resync) {
            // The first response after a response-side gap: requests whose answers may have been in the
            // gap go. If requests were queued after the gap, this answers the oldest of those; otherwise
            // the gap held the oldest request's answer, and this answers the next.
            let after_gap = p.pending.iter().any(|r| r.epoch == p.epoch);
            let lost = if after_gap {
                p.pending.iter().take_while(|r| r.epoch != p.epoch).count()
            } else {
                1.min(p.late.len() + p.pending.len())
            };
            for _ in 0..lost {
                if p.late.pop_front().is_none() {
                    p.pending.pop_front();
                }
            }
            p.counters.lost_exchanges += lost as u64;
        }
        if let Some(late) = p.late.pop_front() {
            return Some(late);
        }
        let next = p.pending.pop_front();
        p.answering_broken = next.is_none() && p.broken_request.is_some();
        next
    }
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
        let request = self.answered_request();
        if let Some(req) = &request {
            let unsent_body = req.complete.is_none() && self.p.receiving == Some(req.id);
            let expects_continue =
                req.request.headers.get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            if unsent_body && expects_continue {
                // Answered before the body was sent: the client may now close instead of sending it.
                self.p.waive_request_body = true;
            }
        }
        let method = request.as_ref().map(|p| p.request.method.as_str()).unwrap_or("");
        let rule = if method == "HEAD" || status == 204 || status == 304 {
            BodyRule::None
        } else if status == 101 || (method == "CONNECT" && (200..300).contains(&status)) {
            BodyRule::Tunnel
        } else {
            BodyRule::Normal
        };
        let h2c = status == 101
            && response
                .headers
                .get("upgrade")
                .is_some_and(|u| u.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c")));
        if h2c && request.is_some() {
            // Not a pair: the request's answer comes as HTTP/2 on stream 1 (RFC 7540 §3.2).
            if let Some(req) = request {
                self.p.req_lost = false;
                self.p.h2c =
                    Some(Upgrade { req_ts: req.ts, request: req.request, resp_ts: ts, response, rest: Vec::new() });
            }
            return rule;
        }
        self.p.in_flight = Some(InFlight { request, response, ts });
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
        let p = &mut *self.p;
        if f.request.is_none() && std::mem::take(&mut p.answering_broken) {
            if let Some((at, msg)) = p.broken_request.take() {
                let response = Some(f.response);
                self.out.push(HttpOutcome::Dissection { ts: at, end: f.ts, msg, request: None, response });
                p.done = true;
            }
            return;
        }
        match f.request {
            Some(req) => {
                p.req_lost = false;
                self.out.push(HttpOutcome::Pair {
                    req_ts: req.ts,
                    request: req.request,
                    resp_ts: f.ts,
                    response: f.response,
                    late: req.waited_ms,
                });
            }
            None if p.before_first_request => p.counters.early_responses += 1,
            None if std::mem::take(&mut p.req_lost) => p.counters.lost_exchanges += 1,
            None if p.orphans.len() < MAX_ORPHANS => p.orphans.push((f.ts, f.response)),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests;
