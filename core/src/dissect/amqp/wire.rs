//! AMQP 0-9-1's wire, the parts a call needs: the protocol header, frames (type, channel, size, payload,
//! frame-end), a method's class and id, which client methods the broker answers and with what, the
//! `no-wait` bit that says it will not, and the arguments of `channel.close`, `connection.close` and
//! `basic.return`. Every field is read through bounds-checked accessors.

use crate::dissect::framing::Broken;

pub const HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// A method frame's payload kept (its arguments are short); content and heartbeats are passed over.
const KEEP: usize = 512;
/// The largest frame accepted (RabbitMQ's `frame_max` is at most 128 KiB; the protocol allows 4 GiB).
const MAX_FRAME: usize = 1 << 27;

/// A frame's header: type (1 method, 2 content header, 3 body, 8 heartbeat), channel, payload size; the
/// body is the payload and the frame-end octet.
pub fn frame_body(h: &[u8]) -> Result<(usize, usize), Broken> {
    let (t, size) = match h {
        [t, _, _, a, b, c, d] => (*t, u32::from_be_bytes([*a, *b, *c, *d]) as usize),
        _ => return Err(Broken("a short frame header".into())),
    };
    if !matches!(t, 1 | 2 | 3 | 8) {
        return Err(Broken(format!("a frame of type {t}")));
    }
    if size > MAX_FRAME {
        return Err(Broken(format!("a frame of {size} bytes")));
    }
    Ok((size + 1, if t == 1 { KEEP } else { 0 }))
}

pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// A short string at `at`: its text and where the next field starts.
fn shortstr(b: &[u8], at: usize) -> Option<(String, usize)> {
    let n = usize::from(*b.get(at)?);
    let s = b.get(at + 1..at + 1 + n)?;
    Some((String::from_utf8_lossy(s).into_owned(), at + 1 + n))
}

/// A `connection.close`, `channel.close` or `basic.return`: reply code and text, and (for a close) the
/// method that caused it.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
    pub cause: Option<(u16, u16)>,
}

/// The arguments after a method's class and id.
pub fn reply(args: &[u8], close: bool) -> Option<Reply> {
    let code = u16_at(args, 0)?;
    let (text, next) = shortstr(args, 2)?;
    let cause = if close { Some((u16_at(args, next)?, u16_at(args, next + 2)?)) } else { None };
    Some(Reply { code, text, cause })
}

/// How a synchronous client method's arguments end in the bits that hold `no-wait`: whether a reserved
/// short comes first, how many short strings follow, and which bit of the next octet is `no-wait`.
const NO_WAIT: &[((u16, u16), bool, usize, u8)] = &[
    ((40, 10), true, 2, 4),  // exchange.declare
    ((40, 20), true, 1, 1),  // exchange.delete
    ((40, 30), true, 3, 0),  // exchange.bind
    ((40, 40), true, 3, 0),  // exchange.unbind
    ((50, 10), true, 1, 4),  // queue.declare
    ((50, 20), true, 3, 0),  // queue.bind
    ((50, 30), true, 1, 0),  // queue.purge
    ((50, 40), true, 1, 2),  // queue.delete
    ((60, 20), true, 2, 3),  // basic.consume
    ((60, 30), false, 1, 0), // basic.cancel
];

/// Whether the broker answers this client method: a synchronous one without `no-wait` set.
pub fn answered(method: (u16, u16), args: &[u8]) -> bool {
    let synchronous = matches!(
        method,
        (10, 40 | 50)
            | (20, 10 | 20 | 40)
            | (40, 10 | 20 | 30 | 40)
            | (50, 10 | 20 | 30 | 40 | 50)
            | (60, 10 | 20 | 30 | 70 | 110)
            | (85, 10)
            | (90, 10 | 20 | 30)
    );
    if !synchronous {
        return false;
    }
    let Some(&(_, reserved, strings, bit)) = NO_WAIT.iter().find(|(m, ..)| *m == method) else { return true };
    let mut at = if reserved { 2 } else { 0 };
    for _ in 0..strings {
        match args.get(at) {
            Some(&n) => at += 1 + usize::from(n),
            None => return true,
        }
    }
    args.get(at).is_none_or(|bits| bits & (1 << bit) == 0)
}

/// Whether the broker's `answer` answers the client's `asked`: its `-ok` (or `basic.get-empty`).
pub fn answers(asked: (u16, u16), answer: (u16, u16)) -> bool {
    asked.0 == answer.0
        && (answer.1 == asked.1 + 1 || matches!((asked, answer.1), ((50, 50), 51) | ((40, 40), 51) | ((60, 70), 72)))
}

pub fn method_name(m: (u16, u16)) -> String {
    let class = match m.0 {
        10 => "connection",
        20 => "channel",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        c => return format!("class{c}.method{}", m.1),
    };
    let method = match m {
        (10, 10) => "start",
        (10, 11) => "start-ok",
        (10, 20) => "secure",
        (10, 21) => "secure-ok",
        (10, 30) => "tune",
        (10, 31) => "tune-ok",
        (10, 40) | (20, 10) => "open",
        (10, 41) | (20, 11) => "open-ok",
        (10, 50) | (20, 40) => "close",
        (10, 51) | (20, 41) => "close-ok",
        (20, 20) => "flow",
        (20, 21) => "flow-ok",
        (40 | 50, 10) => "declare",
        (40 | 50, 11) => "declare-ok",
        (40, 20) | (50, 40) => "delete",
        (40, 21) | (50, 41) => "delete-ok",
        (40, 30) | (50, 20) => "bind",
        (40, 31) | (50, 21) => "bind-ok",
        (40, 40) | (50, 50) => "unbind",
        (40 | 50, 51) => "unbind-ok",
        (50, 30) => "purge",
        (50, 31) => "purge-ok",
        (60, 10) | (85, 10) | (90, 10) => {
            if m.0 == 60 {
                "qos"
            } else {
                "select"
            }
        }
        (60, 11) | (85, 11) | (90, 11) => {
            if m.0 == 60 {
                "qos-ok"
            } else {
                "select-ok"
            }
        }
        (60, 20) => "consume",
        (60, 21) => "consume-ok",
        (60, 30) => "cancel",
        (60, 31) => "cancel-ok",
        (60, 40) => "publish",
        (60, 50) => "return",
        (60, 60) => "deliver",
        (60, 70) => "get",
        (60, 71) => "get-ok",
        (60, 72) => "get-empty",
        (60, 80) => "ack",
        (60, 90) => "reject",
        (60, 110) => "recover",
        (60, 111) => "recover-ok",
        (60, 120) => "nack",
        (90, 20) => "commit",
        (90, 21) => "commit-ok",
        (90, 30) => "rollback",
        (90, 31) => "rollback-ok",
        _ => return format!("{class}.method{}", m.1),
    };
    format!("{class}.{method}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_read_their_reply_and_no_wait_is_found() {
        let text = b"NOT_FOUND - no queue 'x' in vhost '/'";
        let mut args = vec![1, 148, text.len() as u8];
        args.extend_from_slice(text);
        args.extend_from_slice(&[0, 50, 0, 10]);
        let r = reply(&args, true).expect("a close");
        assert_eq!((r.code, r.text.as_str(), r.cause), (404, "NOT_FOUND - no queue 'x' in vhost '/'", Some((50, 10))));
        for n in 0..args.len() {
            let _ = reply(&args[..n], true);
        }
        // queue.declare "q": passive | no-wait, then a declare without no-wait.
        assert!(!answered((50, 10), &[0, 0, 1, b'q', 0b1_0001, 0, 0, 0, 0]));
        assert!(answered((50, 10), &[0, 0, 1, b'q', 0b0_0001, 0, 0, 0, 0]));
        assert!(!answered((60, 40), &[]), "basic.publish is not answered");
        assert!(answers((60, 70), (60, 72)) && answers((50, 10), (50, 11)) && !answers((50, 10), (50, 21)));
        assert_eq!(method_name((50, 10)), "queue.declare");
        assert_eq!(method_name((85, 10)), "confirm.select");
        assert!(frame_body(&[1, 0, 1, 0, 0, 0, 5]).is_ok() && frame_body(&[9, 0, 1, 0, 0, 0, 5]).is_err());
    }
}
