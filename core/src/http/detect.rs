//! Is this stream HTTP? Decided from its first bytes, never from the port.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Yes,
    No,
    /// The bytes so far are a prefix of something that could be HTTP.
    NeedMore,
}

/// Request methods we recognise: RFC 9110's, PATCH, and the WebDAV ones seen in practice.
const METHODS: [&[u8]; 16] = [
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
];

/// A request line starts with a known method followed by a space.
pub fn looks_like_request(data: &[u8]) -> Verdict {
    let mut verdict = Verdict::No;
    for m in METHODS {
        if data.len() > m.len() {
            if data.starts_with(m) && data[m.len()] == b' ' {
                return Verdict::Yes;
            }
        } else if m.starts_with(data) {
            verdict = Verdict::NeedMore;
        }
    }
    verdict
}

/// A status line starts with `HTTP/1.`.
pub fn looks_like_response(data: &[u8]) -> Verdict {
    const PREFIX: &[u8] = b"HTTP/1.";
    if data.len() >= PREFIX.len() {
        if data.starts_with(PREFIX) {
            Verdict::Yes
        } else {
            Verdict::No
        }
    } else if PREFIX.starts_with(data) {
        Verdict::NeedMore
    } else {
        Verdict::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_by_content() {
        assert_eq!(looks_like_request(b"GET / HTTP/1.1\r\n"), Verdict::Yes);
        assert_eq!(looks_like_request(b"PROPFIND /x"), Verdict::Yes);
        assert_eq!(looks_like_request(b"GE"), Verdict::NeedMore);
        assert_eq!(looks_like_request(b"GET"), Verdict::NeedMore);
        assert_eq!(looks_like_request(b"GETX /"), Verdict::No);
        assert_eq!(looks_like_request(b"\x16\x03\x01\x02\x00"), Verdict::No);
        assert_eq!(looks_like_request(b""), Verdict::NeedMore);
    }

    #[test]
    fn responses_by_content() {
        assert_eq!(looks_like_response(b"HTTP/1.1 200 OK"), Verdict::Yes);
        assert_eq!(looks_like_response(b"HTTP/"), Verdict::NeedMore);
        assert_eq!(looks_like_response(b"HTTP/2 200"), Verdict::No);
        assert_eq!(looks_like_response(b"SSH-2.0-OpenSSH"), Verdict::No);
    }
}
