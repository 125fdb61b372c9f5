//! What frames mean for HTTP/2 streams (SPEC §3.5): a request opens one, its response and trailers pair
//! it, a reset or GOAWAY ends it, and its timer — the pair timeout, or for gRPC the call's own
//! `grpc-timeout` plus a second, or nothing for a call without one (a long poll, a server stream, a
//! watch) — decides when an unanswered one is reported. A client's cancel is its choice; streams a client
//! leaves open when it goes away are its to cut.

use super::dissector::{Grammar, Http2Dissector, MAX_STREAMS};
use super::grpc;
use super::outcome::Http2Outcome;
use super::stream::{response, Block, Stream};
use crate::dissect::Ending;
use crate::entry::Side;
use crate::time::Timestamp;

/// RST_STREAM's CANCEL (RFC 9113 §7).
const CANCEL: u32 = 0x8;
/// How long past its `grpc-timeout` a call may go unanswered before it is reported (the client's own
/// cancel at the deadline usually decides it first).
const DEADLINE_GRACE_MS: u64 = 1_000;

impl Http2Dissector {
    pub(super) fn client_headers(
        &mut self,
        stream: u32,
        b: Block,
        end_stream: bool,
        ts: Timestamp,
    ) -> Result<(), Grammar> {
        if let Some(s) = self.streams.get_mut(&stream).or_else(|| self.blind.get_mut(&stream).and_then(Option::as_mut))
        {
            // Trailers from the client.
            if end_stream {
                s.request_done = Some(ts);
            }
            return Ok(());
        }
        if stream <= self.highest {
            // Trailers of a stream already done with, or a stream we did not track.
            return Ok(());
        }
        if stream % 2 == 0 || b.method.is_none() {
            if self.midstream {
                // A stream that began before the dissector did (trailers), or roles guessed wrong.
                return Ok(());
            }
            return Err(Grammar(if stream % 2 == 0 {
                format!("parser error: the client opened even stream {stream}")
            } else {
                format!("parser error: request on stream {stream} without :method")
            }));
        }
        self.opened(stream);
        let open = if self.frames_only { self.blind.len() } else { self.streams.len() };
        if open >= MAX_STREAMS {
            self.counters.over_limit += 1;
            return Ok(());
        }
        let s = Stream::new(ts, b, end_stream);
        if self.frames_only {
            // Its answer cannot be read: known for what a reset of it would cut.
            self.blind.insert(stream, Some(s));
        } else {
            self.streams.insert(stream, s);
        }
        Ok(())
    }

    /// The client opened `stream`.
    fn opened(&mut self, stream: u32) {
        self.highest = stream;
        self.first_seen.get_or_insert(stream);
    }

    pub(super) fn server_headers(
        &mut self,
        stream: u32,
        b: Block,
        end_stream: bool,
        ts: Timestamp,
    ) -> Result<(), Grammar> {
        let Some(s) = self.streams.get_mut(&stream) else {
            // A pushed stream, one not tracked, or (mid-stream) one that began before the dissector.
            return Ok(());
        };
        if s.response.is_none() {
            let Some(status) = b.status.as_deref() else {
                return Err(Grammar(format!("parser error: response on stream {stream} without :status")));
            };
            let Ok(status) = status.trim().parse::<u16>() else {
                return Err(Grammar(format!("parser error: :status {status:?} on stream {stream}")));
            };
            if (100..200).contains(&status) {
                // Informational: the final response is still to come.
                return Ok(());
            }
            s.take_grpc_status(&b);
            s.response = Some((ts, response(status, b.headers)));
        } else {
            // Trailers.
            s.take_grpc_status(&b);
        }
        if end_stream {
            self.end_stream(1, stream, ts);
        }
        Ok(())
    }

    /// A header block of direction `d` that was not decoded: what its frame header alone says — a client
    /// opening a stream, a side ending one.
    pub(super) fn headers_unread(&mut self, d: usize, stream: u32, end_stream: bool, ts: Timestamp) {
        self.counters.blocks_undecoded += 1;
        if d == 0 && stream > self.highest && stream % 2 == 1 {
            self.opened(stream);
            if self.blind.len() < MAX_STREAMS {
                self.blind.insert(stream, None);
            } else {
                self.counters.over_limit += 1;
            }
        }
        if end_stream {
            self.end_stream(d, stream, ts);
        }
    }

    pub(super) fn add_body(&mut self, d: usize, stream: u32, n: u64) {
        if let Some(s) = self.streams.get_mut(&stream) {
            match (d, s.response.as_mut()) {
                (0, _) => s.request.body_size += n,
                (_, Some((_, r))) => r.body_size += n,
                _ => {}
            }
        }
    }

    /// Direction `d` ended `stream` (END_STREAM).
    pub(super) fn end_stream(&mut self, d: usize, stream: u32, ts: Timestamp) {
        if d == 0 {
            if let Some(s) = self.streams.get_mut(&stream) {
                s.request_done.get_or_insert(ts);
            }
            return;
        }
        if self.blind.remove(&stream).is_some() {
            return;
        }
        if self.streams.get(&stream).is_some_and(|s| s.response.is_some()) {
            if let Some(pair) = self.streams.remove(&stream).and_then(Stream::into_pair) {
                self.outcomes.push(pair);
            }
        }
    }

    pub(super) fn reset(&mut self, from_client: bool, stream: u32, code: u32, ts: Timestamp) {
        let by = if from_client { Side::Client } else { Side::Server };
        if let Some(s) = self.streams.remove(&stream) {
            return self.reset_known(s, stream, code, by, ts);
        }
        match self.blind.remove(&stream) {
            Some(Some(s)) => self.reset_known(s, stream, code, by, ts),
            Some(None) => self.reset_unknown(stream, code, by, ts),
            // Mid-stream, a stream below the first one seen opening began before the dissector did.
            None if self.midstream && self.first_seen.is_none_or(|first| stream < first) => {
                self.reset_unknown(stream, code, by, ts)
            }
            None => {}
        }
    }

    fn reset_known(&mut self, s: Stream, stream: u32, code: u32, by: Side, ts: Timestamp) {
        if code == 0 {
            // NO_ERROR: the sender is done with the stream, not failing it. An answer given is the pair.
            match s.response {
                Some(_) => self.outcomes.extend(s.into_pair()),
                None if s.reported_missing.is_none() => self.outcomes.push(Http2Outcome::Missing {
                    req_ts: s.req_ts,
                    request: s.request,
                    grpc: s.grpc,
                    decided: ts,
                    why: format!("stream reset by the {} with NO_ERROR", by.as_str()),
                }),
                None => {}
            }
            return;
        }
        // A gRPC call cancelled at its deadline — by its client, or by a server enforcing it (grpc-go's
        // does) — failed with DEADLINE_EXCEEDED, whoever sent the CANCEL.
        let elapsed = ts.millis_since(s.req_ts);
        let deadline = s.grpc.as_ref().and(s.deadline_ms).filter(|&t| grpc::past_deadline(elapsed, t));
        if code == CANCEL && (by == Side::Client || deadline.is_some()) {
            if s.reported_missing.is_some() {
                // Already reported unanswered; the call giving up after that adds nothing.
                return;
            }
            self.outcomes.push(Http2Outcome::Cancelled {
                req_ts: s.req_ts,
                request: s.request,
                response: s.response.map(|(_, r)| r),
                grpc: s.grpc,
                ts,
                stream,
                deadline,
                by,
            });
            return;
        }
        self.outcomes.push(Http2Outcome::Reset {
            request: Some((s.req_ts, s.request)),
            response: s.response.map(|(_, r)| r),
            grpc: s.grpc,
            ts,
            stream,
            code,
            by,
        });
    }

    /// A reset of a stream whose request was never read.
    fn reset_unknown(&mut self, stream: u32, code: u32, by: Side, ts: Timestamp) {
        if code == 0 {
            return;
        }
        if by == Side::Client && code == CANCEL {
            self.counters.cancels_unseen += 1;
            return;
        }
        self.outcomes.push(Http2Outcome::Reset { request: None, response: None, grpc: None, ts, stream, code, by });
    }

    pub(super) fn goaway(&mut self, from_client: bool, last: u32, code: u32, debug: String, ts: Timestamp) {
        let by = if from_client { Side::Client } else { Side::Server };
        if code != 0 {
            self.outcomes.push(Http2Outcome::GoAway { ts, last_stream: last, code, by, debug });
        }
        if from_client {
            // The client is going away: what it leaves open when it closes is its own doing — unless the
            // server had already closed its side (then the client is only saying goodbye).
            self.client_left |= !self.server_fin;
            return;
        }
        // Streams above `last` were not processed: clients retry them (RFC 9113 §6.8).
        let above: Vec<u32> = self.streams.range(last.saturating_add(1)..).map(|(id, _)| *id).collect();
        for id in above {
            self.streams.remove(&id);
            self.counters.refused_by_goaway += 1;
        }
        self.goaway_last = Some(self.goaway_last.map_or(last, |l| l.min(last)));
    }

    /// Bytes that break the grammar: one `parser error`, and nothing more is read.
    pub(super) fn stop_grammar(&mut self, ts: Timestamp, msg: String) {
        self.stopped = true;
        // The stream the failure is most likely about: the newest one still open.
        let open = self.streams.pop_last().map(|(_, s)| s);
        self.counters.lost_streams += self.streams.len() as u64;
        self.streams.clear();
        self.blind.clear();
        let (request, response, grpc) = match open {
            Some(s) => (Some((s.req_ts, s.request)), s.response.map(|(_, r)| r), s.grpc),
            None => (None, None, None),
        };
        self.outcomes.push(Http2Outcome::Dissection { ts, msg, request, response, grpc });
    }

    /// A FIN from the client (`from_client`) or the server; the first one says who left.
    pub fn on_end(&mut self, from_client: bool) {
        if from_client {
            self.client_left |= !self.server_fin;
        } else {
            self.server_fin = true;
        }
    }

    /// The connection ended: streams never answered are reported — unless their client left first (its
    /// GOAWAY, close or reset), or, at the end of a capture, nothing would time them out (a gRPC call
    /// without a deadline, a response still coming); a response cut short is `unexpected EOF`.
    pub fn on_close(&mut self, ts: Timestamp, ending: Ending) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.blind.clear();
        let client_left = self.client_left || ending == Ending::Reset(Side::Client);
        let why = ending.words();
        for (id, s) in std::mem::take(&mut self.streams) {
            let untimed = s.response.is_some() || (s.grpc.is_some() && s.deadline_ms.is_none());
            if client_left {
                self.counters.cut_by_client += 1;
                continue;
            }
            if ending == Ending::CaptureEnded && untimed {
                continue;
            }
            match s.response {
                None if s.reported_missing.is_some() => {}
                None => self.outcomes.push(Http2Outcome::Missing {
                    req_ts: s.req_ts,
                    request: s.request,
                    grpc: s.grpc,
                    decided: ts,
                    why: why.to_owned(),
                }),
                Some((_, response)) => self.outcomes.push(Http2Outcome::Dissection {
                    ts,
                    msg: format!("unexpected EOF: {why} before stream {id} ended"),
                    request: Some((s.req_ts, s.request)),
                    response: Some(response),
                    grpc: s.grpc,
                }),
            }
        }
    }

    /// Streams whose timer ran out without a response are reported missing (a response that comes later is
    /// still reported, as a late pair): the pair timeout from the end of the request, or a gRPC call's
    /// `grpc-timeout` plus a second from its start; a gRPC call without one has no timer.
    pub fn check(&mut self, now: Timestamp, pair_timeout_ms: u64) {
        if self.stopped {
            return;
        }
        for s in self.streams.values_mut() {
            if s.response.is_some() || s.reported_missing.is_some() {
                continue;
            }
            let (since, wait, why) = match (&s.grpc, s.deadline_ms, s.request_done) {
                (Some(_), Some(t), _) => {
                    let wait = t.saturating_add(DEADLINE_GRACE_MS);
                    (s.req_ts, wait, format!("no response within its grpc-timeout ({t} ms) and a second"))
                }
                (Some(_), None, _) | (None, _, None) => continue,
                (None, _, Some(done)) => (done, pair_timeout_ms, format!("no response within {pair_timeout_ms} ms")),
            };
            let deadline = since.plus_millis(wait);
            if deadline > now {
                continue;
            }
            s.reported_missing = Some(wait);
            self.outcomes.push(Http2Outcome::Missing {
                req_ts: s.req_ts,
                request: s.request.clone(),
                grpc: s.grpc.clone(),
                decided: deadline,
                why,
            });
        }
    }
}
