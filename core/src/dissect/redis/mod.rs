//! Redis (RESP2 and RESP3, SPEC §3.5): a pair per command and its reply, in order (pipelining is the
//! same thing, many at once); an error reply is an error of type `redis` with the server's text, its
//! first word the code (`WRONGTYPE`, `NOAUTH`, `OOM`, `READONLY`). What is not a reply is not paired:
//! RESP3 pushes, and in RESP2's subscribed mode the messages and subscription confirmations. Routing and
//! a script cache's miss are answers, not errors: `MOVED`/`ASK` send the client to another node, and
//! `NOSCRIPT` makes every client library send the script itself (`EVALSHA` then `EVAL`). So are a client
//! library's questions about the server's features: redis-py and others send `CLIENT SETINFO` (Redis
//! 7.2+) and `HELLO 3` (6+) on every connection and carry on when an older server does not know them.

mod resp;

use super::calls::Calls;
use super::{Claim, Direction, Dissector, Ending, Found, Probe, Registration, StreamDissector, Verdict};
use crate::engine::stats::Stats;
use crate::entry::{EntryError, ErrorType, Protocol, RedisInfo};
use crate::time::Timestamp;

pub const REGISTRATION: Registration =
    Registration { dissector: Dissector::Redis, probe, start, summary, answered_by: None };

/// Commands that wait by design (for data, for replicas): never judged unanswered.
const WAITING: &[&str] = &[
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
    "XREAD",
    "XREADGROUP",
    "WAIT",
    "WAITAOF",
];
/// Commands whose answers come as pub/sub messages, not as replies.
const SUBSCRIBING: &[&str] = &["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"];
/// Error codes that are answers: routing in a cluster, a script to send in full.
const NOT_ERRORS: &[&str] = &["MOVED", "ASK", "NOSCRIPT"];

/// A command as every client sends it: `*<n>\r\n$<len>\r\n` and a letter — an array of bulk strings whose
/// first is the command's name.
pub fn looks_like_command(b: &[u8]) -> Verdict {
    let mut i = 0;
    for part in [Part::Byte(b'*'), Part::Count, Part::Byte(b'\r'), Part::Byte(b'\n'), Part::Byte(b'$'), Part::Count] {
        match part.read(b, &mut i) {
            Verdict::Yes => {}
            other => return other,
        }
    }
    for want in [b'\r', b'\n'] {
        match b.get(i) {
            None => return Verdict::NeedMore,
            Some(&c) if c == want => i += 1,
            Some(_) => return Verdict::No,
        }
    }
    match b.get(i) {
        None => Verdict::NeedMore,
        Some(c) if c.is_ascii_alphabetic() => Verdict::Yes,
        Some(_) => Verdict::No,
    }
}

enum Part {
    Byte(u8),
    /// 1 to 5 digits, not 0.
    Count,
}

impl Part {
    fn read(&self, b: &[u8], i: &mut usize) -> Verdict {
        match *self {
            Part::Byte(want) => match b.get(*i) {
                None => Verdict::NeedMore,
                Some(&c) if c == want => {
                    *i += 1;
                    Verdict::Yes
                }
                Some(_) => Verdict::No,
            },
            Part::Count => {
                let start = *i;
                while b.get(*i).is_some_and(u8::is_ascii_digit) {
                    *i += 1;
                }
                let digits = *i - start;
                match b.get(*i) {
                    _ if digits > 5 || (digits >= 1 && b[start] == b'0') => Verdict::No,
                    None => Verdict::NeedMore,
                    Some(_) if digits == 0 => Verdict::No,
                    Some(_) => Verdict::Yes,
                }
            }
        }
    }
}

fn probe(p: &Probe<'_>) -> Claim {
    super::claim_first_speaker(p, Direction::ToServer, looks_like_command)
}

fn summary(s: &Stats) -> String {
    format!(
        "{} Redis commands lost to capture gaps, {} Redis replies without their command (picked up late), \
         {} Redis commands over the per-connection bound",
        s.redis_calls_lost, s.redis_replies_unpaired, s.redis_calls_over_limit
    )
}

fn start(_: &Probe<'_>) -> Box<dyn StreamDissector> {
    Box::new(RedisDissector {
        requests: resp::Reader::requests(),
        replies: resp::Reader::replies(),
        calls: Calls::default(),
        subscribed: false,
        stopped: false,
        unpaired: 0,
    })
}

struct Call {
    command: String,
    /// Waits by design (a blocking command): never judged unanswered.
    waits: bool,
}

pub struct RedisDissector {
    requests: resp::Reader,
    replies: resp::Reader,
    calls: Calls<Call>,
    /// RESP2's subscribed mode: arrays from the server are messages unless they answer a PING.
    subscribed: bool,
    /// The grammar broke, capture lost bytes, or replies stopped being answers (`MONITOR`, `CLIENT
    /// REPLY`): nothing more is read.
    stopped: bool,
    unpaired: u64,
}

impl RedisDissector {
    fn request(&mut self, ts: Timestamp, v: resp::Value) {
        let command = v.strings.first().map_or_else(|| "?".to_owned(), |s| s.to_ascii_uppercase());
        let first_arg = v.strings.get(1).map(|s| s.to_ascii_uppercase());
        if SUBSCRIBING.contains(&command.as_str()) {
            self.subscribed |= command.ends_with("SUBSCRIBE") && !command.contains("UNSUB");
            return;
        }
        if command == "MONITOR" || (command == "CLIENT" && first_arg.as_deref() == Some("REPLY")) {
            // What the server sends from now on is not answers to commands.
            self.stopped = true;
            self.calls.lose_all();
            return;
        }
        if command == "RESET" {
            self.subscribed = false;
        }
        let waits = WAITING.contains(&command.as_str());
        self.calls.ask(ts, Call { command, waits });
    }

    fn reply(&mut self, ts: Timestamp, v: resp::Value, found: &mut Found<'_>) {
        if v.kind == "push" {
            return;
        }
        if self.subscribed && v.kind == "array" {
            let kind = v.strings.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
            if kind.ends_with("unsubscribe") && v.last_int == Some(0) {
                self.subscribed = false;
            }
            if kind != "pong" {
                return;
            }
        }
        let Some(w) = self.calls.answered() else {
            self.unpaired += 1;
            return;
        };
        let mut e = found.entry(Protocol::Redis, w.ts, ts);
        let error = match v.kind {
            "error" => v.error,
            _ if w.call.command == "EXEC" => v.error,
            _ => None,
        };
        let code = error.as_deref().map(code_of);
        if let (Some(msg), Some(code)) = (&error, &code) {
            if !NOT_ERRORS.contains(&code.as_str()) && !feature_probe(&w.call.command, code, msg) {
                e.error = Some(EntryError { kind: ErrorType::Redis, msg: msg.clone() });
            }
        }
        e.redis = Some(RedisInfo { command: w.call.command, reply: Some(v.kind.to_owned()), code });
        found.out.push(e);
    }

    fn broken(&mut self, ts: Timestamp, why: resp::Broken, found: &mut Found<'_>) {
        self.stopped = true;
        self.calls.lose_all();
        found.parser_error(Protocol::Redis, ts, &why.0);
    }

    fn drain_counters(&mut self, stats: &mut Stats) {
        stats.redis_calls_lost += std::mem::take(&mut self.calls.lost);
        stats.redis_calls_over_limit += std::mem::take(&mut self.calls.over_limit);
        stats.redis_replies_unpaired += std::mem::take(&mut self.unpaired);
    }
}

/// A client library asking whether the server knows a feature, answered "no": `CLIENT <subcommand>` the
/// server does not know, `HELLO` on a server without RESP3 (or without `HELLO`).
fn feature_probe(command: &str, code: &str, msg: &str) -> bool {
    match command {
        "CLIENT" => msg.contains("nknown subcommand"),
        "HELLO" => code == "NOPROTO" || msg.starts_with("ERR unknown command"),
        _ => false,
    }
}

/// An error's code: its first word when it is one (upper-case letters, digits, `_`, at most 32), else
/// `ERR` — the code Redis itself gives errors without one.
fn code_of(msg: &str) -> String {
    let word = msg.split(' ').next().unwrap_or("");
    let is_code = !word.is_empty()
        && word.len() <= 32
        && word.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if is_code {
        word.to_owned()
    } else {
        "ERR".to_owned()
    }
}

impl StreamDissector for RedisDissector {
    fn data(&mut self, dir: Direction, ts: Timestamp, bytes: &[u8], found: &mut Found<'_>) {
        if self.stopped {
            return;
        }
        let mut values = Vec::new();
        let read = match dir {
            Direction::ToServer => self.requests.feed(bytes, &mut |v| values.push(v)),
            Direction::ToClient => self.replies.feed(bytes, &mut |v| values.push(v)),
        };
        for v in values {
            match dir {
                Direction::ToServer => self.request(ts, v),
                Direction::ToClient => self.reply(ts, v, found),
            }
            if self.stopped {
                break;
            }
        }
        if let Err(why) = read {
            if !self.stopped {
                self.broken(ts, why, found);
            }
        }
        self.drain_counters(found.stats);
    }

    fn gap(&mut self, _dir: Direction, _len: u64, _ts: Timestamp, found: &mut Found<'_>) {
        // Message boundaries are lost with the bytes: what waits may have been answered in the gap.
        self.stopped = true;
        self.calls.lose_all();
        self.drain_counters(found.stats);
    }

    fn end(&mut self, _dir: Direction, _ts: Timestamp, _found: &mut Found<'_>) {}

    fn close(&mut self, ts: Timestamp, ending: Ending, found: &mut Found<'_>) {
        if self.stopped || ending == Ending::CaptureEnded {
            return;
        }
        for w in self.calls.take_all() {
            if w.call.waits || !super::calls::unanswered(ending, w.ts, ts) {
                continue;
            }
            let mut e = found.unanswered(Protocol::Redis, w.ts, ts, ending);
            e.redis = Some(RedisInfo { command: w.call.command, reply: None, code: None });
            found.out.push(e);
        }
    }

    fn check(&mut self, _now: Timestamp, _found: &mut Found<'_>) {}

    fn answered_all(&self) -> bool {
        self.calls.is_empty()
    }

    fn buffered(&self) -> usize {
        self.requests.buffered() + self.replies.buffered()
    }
}
