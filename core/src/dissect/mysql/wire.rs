//! MySQL's (and MariaDB's) client/server protocol, the parts a call needs: the packet header, the
//! server's greeting, the client's handshake response, command names, OK/EOF status and ERR packets.
//! Every field is read through bounds-checked accessors: short packets give absent fields, not panics.

use crate::dissect::framing::Broken;
use crate::dissect::Verdict;

/// A packet's payload of this length continues in the next packet.
pub const MAX_PAYLOAD: usize = 0xff_ffff;
/// Bytes kept of a packet: a query's start, an ERR's text, a handshake.
pub const KEEP: usize = 512;
pub const CLIENT_SSL: u32 = 0x800;
pub const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
/// An OK or EOF status flag: another result set follows.
pub const MORE_RESULTS: u16 = 0x0008;

/// The 4-byte header: payload length (3 bytes, little-endian) and sequence id.
pub fn packet_body(h: &[u8]) -> Result<(usize, usize), Broken> {
    match h {
        [a, b, c, _] => Ok((usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16, KEEP)),
        _ => Err(Broken("a short packet header".into())),
    }
}

pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([*b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?, *b.get(at + 3)?]))
}

/// A length-encoded integer at `at`: its value and the bytes it took.
fn lenenc(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let first = *b.get(at)?;
    let n = match first {
        0..=0xfa => return Some((u64::from(first), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(at + 1..at + 1 + n)?;
    Some((bytes.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)), 1 + n))
}

/// An OK packet's (or EOF's) status flags.
pub fn ok_status(p: &[u8]) -> Option<u16> {
    if p.first() == Some(&0xfe) && p.len() < 9 {
        return u16_at(p, 3);
    }
    let (_, a) = lenenc(p, 1)?;
    let (_, b) = lenenc(p, 1 + a)?;
    u16_at(p, 1 + a + b)
}

/// An ERR packet: its number, SQLSTATE (where the server sent one) and message.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub sqlstate: Option<String>,
    pub message: String,
}

pub fn server_error(p: &[u8]) -> Option<ServerError> {
    if p.first() != Some(&0xff) {
        return None;
    }
    let code = u16_at(p, 1)?;
    let rest = p.get(3..).unwrap_or_default();
    let (sqlstate, text) = match rest {
        [b'#', s @ ..] if s.len() >= 5 => (Some(String::from_utf8_lossy(&s[..5]).into_owned()), &s[5..]),
        _ => (None, rest),
    };
    Some(ServerError { code, sqlstate, message: String::from_utf8_lossy(text).into_owned() })
}

impl ServerError {
    /// `1045 (28000) Access denied …`, as the `mysql` client prints it.
    pub fn words(&self) -> String {
        match &self.sqlstate {
            Some(s) => format!("{} ({s}) {}", self.code, self.message),
            None => format!("{} {}", self.code, self.message),
        }
    }
}

/// The server's greeting: protocol 10 and a printable version, or an ERR before any handshake (too many
/// connections, a host not allowed). `b` is the whole stream start, header included.
pub fn looks_like_greeting(b: &[u8]) -> Verdict {
    if b.len() < 5 {
        return if b.len() < 4 || b[3] == 0 { Verdict::NeedMore } else { Verdict::No };
    }
    let len = usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16;
    if b[3] != 0 || !(4..=1024).contains(&len) {
        return Verdict::No;
    }
    let p = &b[4..];
    match p[0] {
        0x0a => {
            let version = &p[1..];
            match version.iter().position(|&c| c == 0) {
                Some(0) => Verdict::No,
                Some(n) if version[..n].iter().all(u8::is_ascii_graphic) && version[0].is_ascii_digit() => Verdict::Yes,
                Some(_) => Verdict::No,
                None if version.len() < 64 && version.iter().all(u8::is_ascii_graphic) => Verdict::NeedMore,
                None => Verdict::No,
            }
        }
        0xff => match u16_at(p, 1) {
            Some(code) if (1000..=1999).contains(&code) => match p.get(3..) {
                Some(text) if text.len() >= 4 => {
                    if text.iter().take(32).all(|c| c.is_ascii_graphic() || *c == b' ') {
                        Verdict::Yes
                    } else {
                        Verdict::No
                    }
                }
                _ => Verdict::NeedMore,
            },
            Some(_) => Verdict::No,
            None => Verdict::NeedMore,
        },
        _ => Verdict::No,
    }
}

/// The server's capability flags from its greeting.
pub fn greeting_capabilities(p: &[u8]) -> u32 {
    let Some(n) = p.get(1..).and_then(|v| v.iter().position(|&c| c == 0)) else { return 0 };
    // version, NUL, connection id (4), auth data (8), filler (1), low flags (2), charset, status (2), high
    let at = 1 + n + 1 + 4 + 8 + 1;
    let low = u16_at(p, at).unwrap_or(0);
    let high = u16_at(p, at + 5).unwrap_or(0);
    u32::from(low) | u32::from(high) << 16
}

/// The user a HandshakeResponse41 names.
pub fn response_user(p: &[u8]) -> Option<String> {
    let user = p.get(32..)?;
    let n = user.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&user[..n.min(64)]).into_owned())
}

pub fn command_name(c: u8) -> &'static str {
    const NAMES: [&str; 32] = [
        "COM_SLEEP",
        "COM_QUIT",
        "COM_INIT_DB",
        "COM_QUERY",
        "COM_FIELD_LIST",
        "COM_CREATE_DB",
        "COM_DROP_DB",
        "COM_REFRESH",
        "COM_SHUTDOWN",
        "COM_STATISTICS",
        "COM_PROCESS_INFO",
        "COM_CONNECT",
        "COM_PROCESS_KILL",
        "COM_DEBUG",
        "COM_PING",
        "COM_TIME",
        "COM_DELAYED_INSERT",
        "COM_CHANGE_USER",
        "COM_BINLOG_DUMP",
        "COM_TABLE_DUMP",
        "COM_CONNECT_OUT",
        "COM_REGISTER_SLAVE",
        "COM_STMT_PREPARE",
        "COM_STMT_EXECUTE",
        "COM_STMT_SEND_LONG_DATA",
        "COM_STMT_CLOSE",
        "COM_STMT_RESET",
        "COM_SET_OPTION",
        "COM_STMT_FETCH",
        "COM_DAEMON",
        "COM_BINLOG_DUMP_GTID",
        "COM_RESET_CONNECTION",
    ];
    match c {
        0xfa => "COM_STMT_BULK_EXECUTE",
        _ => NAMES.get(usize::from(c)).copied().unwrap_or("COM_UNKNOWN"),
    }
}

/// Commands the server does not answer.
pub fn unanswered(c: u8) -> bool {
    matches!(c, 0x01 | 0x18 | 0x19)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_and_errors_are_known_and_short_packets_do_not_panic() {
        let mut g = vec![0, 0, 0, 0, 0x0a];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&[1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0xff, 0xf7, 8, 2, 0, 0xff, 0x81]);
        let len = (g.len() - 4) as u8;
        g[0] = len;
        assert_eq!(looks_like_greeting(&g), Verdict::Yes);
        assert_eq!(greeting_capabilities(&g[4..]), 0x81ff_f7ff);
        assert_eq!(looks_like_greeting(&g[..10]), Verdict::NeedMore);
        let too_many = b"\x17\0\0\0\xff\x10\x04Too many connections";
        assert_eq!(looks_like_greeting(too_many), Verdict::Yes);
        let e = server_error(&too_many[4..]).expect("an ERR");
        assert_eq!(e.words(), "1040 Too many connections");
        let denied = b"\xff\x15\x04#28000Access denied for user 'x'@'y' (using password: YES)";
        assert_eq!(
            server_error(denied).expect("ERR").words(),
            "1045 (28000) Access denied for user 'x'@'y' (using password: YES)"
        );
        assert_eq!(looks_like_greeting(b"HTTP/1.1 200 OK"), Verdict::No);
        for n in 0..g.len() {
            let _ = (looks_like_greeting(&g[..n]), greeting_capabilities(&g[4..n.max(4)]), response_user(&g[..n]));
            let _ = (server_error(&denied[..n.min(denied.len())]), ok_status(&g[4..n.max(4)]));
        }
        assert_eq!(ok_status(&[0, 0, 0, 8, 0]), Some(8));
        assert_eq!(ok_status(&[0xfe, 0, 0, 2, 0]), Some(2));
    }
}
