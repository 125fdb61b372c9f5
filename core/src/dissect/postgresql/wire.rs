//! PostgreSQL's frontend/backend protocol 3.0, the parts a call needs: which messages exist, how long
//! they may be, the startup's parameters and an ErrorResponse's fields. Lengths are checked before any
//! field is read; a field past the bytes kept is absent, never a panic.

use crate::dissect::framing::Broken;

/// Startup-phase request codes (the message has no type byte).
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

/// The longest message accepted (the server's own limit on a query is 1 GiB).
const MAX_MESSAGE: usize = 1 << 30;
/// A startup message is small: parameters only (the server refuses more than 10,000 bytes).
const MAX_STARTUP: usize = 10_000;
/// Bytes kept of the messages that are read: queries, errors, the startup.
pub const KEEP: usize = 1024;

/// Frontend message types after the startup.
const FRONTEND: &[u8] = b"BCDEFHPQSXcdfp";
/// Backend message types.
const BACKEND: &[u8] = b"123ACDEGHIKNRSTVWZcdnstv";

/// A startup-phase message's length and what to keep of it (its header is the 4-byte length).
pub fn startup_body(h: &[u8]) -> Result<(usize, usize), Broken> {
    let len = be32(h) as usize;
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(Broken(format!("a startup message of {len} bytes")));
    }
    Ok((len - 4, KEEP))
}

/// A typed message's length and what to keep of it (its header is the type and the 4-byte length).
pub fn typed_body(h: &[u8], frontend: bool) -> Result<(usize, usize), Broken> {
    let (t, len) = (h[0], be32(&h[1..]) as usize);
    let known = if frontend { FRONTEND } else { BACKEND };
    if !known.contains(&t) {
        return Err(Broken(format!(
            "an unknown {} message type 0x{t:02x}",
            if frontend { "frontend" } else { "backend" }
        )));
    }
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(Broken(format!("a message of {len} bytes")));
    }
    let keep = match (frontend, t) {
        (true, b'Q' | b'P') | (false, b'E') => KEEP,
        _ => 0,
    };
    Ok((len - 4, keep))
}

pub fn be32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

/// NUL-terminated strings, as far as they go.
fn cstrings(b: &[u8]) -> impl Iterator<Item = &[u8]> {
    b.split(|&c| c == 0)
}

/// A startup message's `user` and `database` (the database defaults to the user).
pub fn startup_who(params: &[u8]) -> String {
    let mut it = cstrings(params);
    let (mut user, mut db) = (None, None);
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        match k {
            b"user" => user = Some(String::from_utf8_lossy(v).into_owned()),
            b"database" => db = Some(String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
        if k.is_empty() {
            break;
        }
    }
    let user = user.unwrap_or_default();
    let db = db.unwrap_or_else(|| user.clone());
    format!("{user}@{db}")
}

/// A query's text (the first string of a Query; the second of a Parse, after the statement's name).
pub fn query_text(body: &[u8], parse: bool) -> String {
    let mut it = cstrings(body);
    if parse {
        it.next();
    }
    let q = it.next().unwrap_or_default();
    let q = &q[..q.len().min(256)];
    String::from_utf8_lossy(q).trim().to_owned()
}

/// An ErrorResponse's severity (non-localised where the server sent it), SQLSTATE and message.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerError {
    pub severity: String,
    pub sqlstate: String,
    pub message: String,
}

pub fn server_error(body: &[u8]) -> ServerError {
    let mut e = ServerError { severity: String::new(), sqlstate: String::new(), message: String::new() };
    let mut localised = String::new();
    for field in cstrings(body) {
        let Some((&code, value)) = field.split_first() else { break };
        let value = String::from_utf8_lossy(value).into_owned();
        match code {
            b'V' => e.severity = value,
            b'S' => localised = value,
            b'C' => e.sqlstate = value.chars().take(5).collect(),
            b'M' => e.message = value,
            _ => {}
        }
    }
    if e.severity.is_empty() {
        e.severity = localised;
    }
    e
}

/// The probe: a startup-phase message from the client (a startup, `SSLRequest`, `GSSENCRequest` or
/// `CancelRequest`), or — picked up mid-stream — a whole simple Query of printable text.
pub fn looks_like_client(b: &[u8]) -> crate::dissect::Verdict {
    use crate::dissect::Verdict;
    if b.len() < 8 {
        // A startup's length is small: its first two bytes are zero; a Query starts with `Q`.
        return match b {
            [0, ..] | [] => Verdict::NeedMore,
            [b'Q', ..] => Verdict::NeedMore,
            _ => Verdict::No,
        };
    }
    let len = be32(b) as usize;
    let code = be32(&b[4..]);
    let startup = (8..=MAX_STARTUP).contains(&len)
        && match code {
            SSL_REQUEST | GSSENC_REQUEST => len == 8,
            CANCEL_REQUEST => len == 16,
            // Protocol 3.0 (3.2 from PostgreSQL 18), then parameters by name: `user` and the like.
            c => (0x0003_0000..=0x0003_0002).contains(&c) && len > 8 && b.get(8).is_none_or(u8::is_ascii_lowercase),
        };
    if startup {
        return Verdict::Yes;
    }
    if b[0] != b'Q' {
        return Verdict::No;
    }
    let len = be32(&b[1..]) as usize;
    if !(6..=crate::dissect::PROBE_LIMIT - 2).contains(&len) {
        return Verdict::No;
    }
    let Some(body) = b.get(5..1 + len) else { return Verdict::NeedMore };
    let (text, nul) = body.split_at(body.len() - 1);
    let printable = text.iter().all(|&c| c.is_ascii_graphic() || c.is_ascii_whitespace());
    if nul == [0] && printable && text.iter().any(u8::is_ascii_alphabetic) {
        Verdict::Yes
    } else {
        Verdict::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::Verdict;

    #[test]
    fn the_probe_knows_startups_and_whole_queries_and_nothing_else() {
        let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
        startup.extend_from_slice(b"user\0app\0database\0shop\0\0");
        let len = startup.len() as u32;
        startup[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(looks_like_client(&startup), Verdict::Yes);
        assert_eq!(startup_who(&startup[8..]), "app@shop");
        assert_eq!(looks_like_client(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]), Verdict::Yes, "SSLRequest");
        assert_eq!(looks_like_client(&[0, 0, 0, 8]), Verdict::NeedMore);
        assert_eq!(looks_like_client(b"Q\0\0\0\x0eSELECT 1;\0"), Verdict::Yes);
        assert_eq!(looks_like_client(b"Q\0\0\0\x0eSELECT 1;x"), Verdict::No);
        assert_eq!(looks_like_client(b"GET / HTTP/1.1\r\n"), Verdict::No);
        assert_eq!(looks_like_client(&[0x16, 3, 1, 0, 0xc8, 1, 0, 0]), Verdict::No, "TLS");
    }

    #[test]
    fn errors_read_their_fields_and_short_ones_do_not_panic() {
        let body = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"app\"\0Fauth.c\0\0";
        let e = server_error(body);
        assert_eq!((e.severity.as_str(), e.sqlstate.as_str()), ("FATAL", "28P01"));
        assert_eq!(e.message, "password authentication failed for user \"app\"");
        for n in 0..body.len() {
            let _ = server_error(&body[..n]);
        }
        assert!(typed_body(b"Z\0\0\0\x05", false).is_ok());
        assert!(typed_body(b"Z\0\0\0\x03", false).is_err());
        assert!(typed_body(b"y\0\0\0\x05", false).is_err());
    }
}
