//! AMQP 0-9-1 (RabbitMQ; SPEC §3.5): the client's synchronous methods paired with the broker's `-ok`, per
//! channel, in order; the broker's `channel.close` or `connection.close` with a reply code other than 200
//! is an error of type `amqp` (`404 NOT_FOUND - no queue 'orders' in vhost '/'`) on the method it names —
//! the one waiting on that channel, or (an asynchronous `basic.publish`, a login refused) the class and
//! method the close quotes; a `basic.return` (a mandatory message no queue took) is an error on the
//! publish. Methods sent with `no-wait` are not waited for; publishes, deliveries, acks and heartbeats are
//! not calls. As for the datastores, a call is unanswered only when its connection ends first.

mod wire;

use std::collections::HashMap;

use super::calls::Calls;
use super::framing::{Broken, Framer};
use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict};
use crate::engine::stats::Stats;
use crate::entry::{AmqpInfo, EntryError, ErrorType, Protocol};
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Amqp, probe, start, summary, answered_by: None };

/// Channels followed at once on a connection (a client may open 2047 by default).
const MAX_CHANNELS: usize = 2048;

fn looks_like_header(b: &[u8]) -> Verdict {
    let n = b.len().min(wire::HEADER.len());
    if b[..n] != wire::HEADER[..n] {
        Verdict::No
    } else if n < wire::HEADER.len() {
        Verdict::NeedMore
    } else {
        Verdict::Yes
    }
}

fn probe(p: &Probe<'_>) -> Claim {
    super::claim_first_speaker(p, Direction::ToServer, looks_like_header)
}

fn summary(s: &Stats) -> String {
    format!(
        "{} AMQP calls lost to capture gaps, {} AMQP answers without their call, {} AMQP calls over the \
         per-connection bound",
        s.amqp_calls_lost, s.amqp_answers_unpaired, s.amqp_calls_over_limit
    )
}

fn start(_: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::<AmqpDissector>::default()
}

#[derive(Default)]
pub struct AmqpDissector {
    /// Bytes of the client's protocol header still to pass.
    header_seen: usize,
    client: Framer,
    server: Framer,
    channels: HashMap<u16, Calls<(u16, u16)>>,
    /// Each channel's last client method, and when: what a close that quotes no method (a login refused
    /// quotes 0.0) is about.
    last: HashMap<u16, (Timestamp, (u16, u16))>,
    stopped: bool,
    unpaired: u64,
    over_limit: u64,
    lost: u64,
}

impl AmqpDissector {
    fn client_method(&mut self, ts: Timestamp, channel: u16, method: (u16, u16), args: &[u8]) {
        if self.last.contains_key(&channel) || self.last.len() < MAX_CHANNELS {
            self.last.insert(channel, (ts, method));
        }
        if !wire::answered(method, args) {
            return;
        }
        if !self.channels.contains_key(&channel) && self.channels.len() >= MAX_CHANNELS {
            self.over_limit += 1;
            return;
        }
        self.channels.entry(channel).or_default().ask(ts, method);
    }

    fn server_method(&mut self, ts: Timestamp, channel: u16, method: (u16, u16), args: &[u8], found: &mut Found<'_>) {
        match method {
            (10, 50) | (20, 40) => {
                let connection = method.0 == 10;
                let Some(reply) = wire::reply(args, true) else { return };
                if reply.code == 200 {
                    return;
                }
                let waiting = self.channels.get_mut(&channel).and_then(Calls::answered);
                let (start, asked) = match (waiting, reply.cause, self.last.get(&channel)) {
                    (Some(w), ..) => (w.ts, w.call),
                    (None, Some((0, 0)) | None, Some(&(at, last))) => (at, last),
                    (None, Some(cause), _) => (ts, cause),
                    (None, None, None) => (ts, method),
                };
                self.report(start, ts, channel, asked, Some(reply), found);
                // The channel (or the connection) is gone: what waited on it will not be answered.
                if connection {
                    self.channels.clear();
                    self.stopped = true;
                } else {
                    self.channels.remove(&channel);
                    self.last.remove(&channel);
                }
            }
            (60, 50) => {
                if let Some(reply) = wire::reply(args, false) {
                    self.report(ts, ts, channel, (60, 40), Some(reply), found);
                }
            }
            _ => {
                let Some(calls) = self.channels.get_mut(&channel) else { return };
                let Some(asked) = calls.oldest_mut().map(|w| w.call) else { return };
                if !wire::answers(asked, method) {
                    // Not an answer (a delivery, the broker's own request), or one to a call not seen.
                    if method.1 % 10 == 1 && method.0 != 10 {
                        self.unpaired += 1;
                    }
                    return;
                }
                if let Some(w) = calls.answered() {
                    self.report(w.ts, ts, channel, w.call, None, found);
                }
            }
        }
    }

    fn report(
        &mut self,
        start: Timestamp,
        end: Timestamp,
        channel: u16,
        method: (u16, u16),
        reply: Option<wire::Reply>,
        found: &mut Found<'_>,
    ) {
        let mut e = found.entry(Protocol::Amqp, start, end);
        let mut info = AmqpInfo { method: wire::method_name(method), channel, reply_code: None, reply_text: None };
        if let Some(r) = reply {
            e.error = Some(EntryError { kind: ErrorType::Amqp, msg: format!("{} {}", r.code, r.text) });
            info.reply_code = Some(r.code);
            info.reply_text = Some(r.text);
        }
        e.amqp = Some(info);
        found.out.push(e);
    }

    fn read(&mut self, dir: Direction, ts: Timestamp, mut bytes: &[u8], found: &mut Found<'_>) -> Result<(), Broken> {
        if dir == Direction::ToServer && self.header_seen < wire::HEADER.len() {
            let n = (wire::HEADER.len() - self.header_seen).min(bytes.len());
            self.header_seen += n;
            bytes = &bytes[n..];
        }
        if dir == Direction::ToClient && bytes.starts_with(b"AMQP") {
            // The broker refused the protocol version, answering with the one it speaks.
            self.stopped = true;
            return Ok(());
        }
        loop {
            let framer = if dir == Direction::ToServer { &mut self.client } else { &mut self.server };
            let Some(m) = framer.next(&mut bytes, 7, wire::frame_body)? else { return Ok(()) };
            if m.header[0] != 1 {
                continue;
            }
            let channel = wire::u16_at(m.header, 1).unwrap_or(0);
            let (Some(class), Some(id)) = (wire::u16_at(m.body, 0), wire::u16_at(m.body, 2)) else { continue };
            let args = m.body.get(4..).unwrap_or_default().to_vec();
            match dir {
                Direction::ToServer => self.client_method(ts, channel, (class, id), &args),
                Direction::ToClient => self.server_method(ts, channel, (class, id), &args, found),
            }
            if self.stopped {
                return Ok(());
            }
        }
    }

    fn drain_counters(&mut self, stats: &mut Stats) {
        for c in self.channels.values_mut() {
            self.lost += std::mem::take(&mut c.lost);
            self.over_limit += std::mem::take(&mut c.over_limit);
        }
        stats.amqp_calls_lost += std::mem::take(&mut self.lost);
        stats.amqp_calls_over_limit += std::mem::take(&mut self.over_limit);
        stats.amqp_answers_unpaired += std::mem::take(&mut self.unpaired);
    }

    fn lose_all(&mut self) {
        for c in self.channels.values_mut() {
            c.lose_all();
        }
    }
}

impl StreamDissector for AmqpDissector {
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        if self.stopped {
            return;
        }
        if let Err(why) = self.read(dir, ts, bytes, found) {
            self.stopped = true;
            self.lose_all();
            found.parser_error(Protocol::Amqp, ts, &why.0);
        }
        self.drain_counters(found.stats);
    }

    fn gap(&mut self, _dir: Direction, _len: u64, _ts: Timestamp, found: &mut Found<'_>) {
        self.stopped = true;
        self.lose_all();
        self.drain_counters(found.stats);
    }

    fn end(&mut self, _dir: Direction, _ts: Timestamp, _found: &mut Found<'_>) {}

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        if self.stopped || ending == Ending::CaptureEnded {
            return;
        }
        let mut waiting: Vec<(u16, Timestamp, (u16, u16))> = Vec::new();
        for (&channel, calls) in self.channels.iter_mut() {
            waiting.extend(calls.take_all().map(|w| (channel, w.ts, w.call)));
        }
        waiting.sort_by_key(|w| (w.1, w.0));
        for (channel, at, method) in waiting.into_iter().filter(|w| super::calls::unanswered(ending, w.1, ts)) {
            let mut e = found.unanswered(Protocol::Amqp, at, ts, ending);
            e.amqp = Some(AmqpInfo { method: wire::method_name(method), channel, reply_code: None, reply_text: None });
            found.out.push(e);
        }
    }

    fn check(&mut self, _now: Timestamp, _found: &mut Found<'_>) {}

    fn answered_all(&self) -> bool {
        self.channels.values().all(Calls::is_empty)
    }

    fn buffered(&self) -> usize {
        self.client.buffered() + self.server.buffered() + self.channels.len() * 64
    }
}
