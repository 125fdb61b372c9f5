//! Is this stream HTTP? Decided from its first bytes, never from the port.

use crate::dissect::Verdict;

/// The longest method we accept as a request's start (the IANA registry's longest is 16 characters).
const MAX_METHOD: usize = 20;

/// A request line starts with a method token (RFC 9110 §9: any token; in practice upper-case letters, as
/// GET, PURGE, REPORT, SEARCH, QUERY, MKCALENDAR, …), a space, and a request target: an origin form (`/`),
/// an absolute form (`http://…`), `*` (OPTIONS), or an authority (CONNECT).
pub fn looks_like_request(data: &[u8]) -> Verdict {
    let method_len =
        data.iter().take(MAX_METHOD + 1).take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_').count();
    if method_len == data.len() {
        return if method_len <= MAX_METHOD { Verdict::NeedMore } else { Verdict::No };
    }
    if !(3..=MAX_METHOD).contains(&method_len) || data[method_len] != b' ' {
        return Verdict::No;
    }
    let method = &data[..method_len];
    let target = &data[method_len + 1..];
    let Some(&first) = target.first() else { return Verdict::NeedMore };
    match first {
        b'/' | b'*' => Verdict::Yes,
        b'h' => {
            const HTTP: &[u8] = b"http";
            if target.len() < HTTP.len() {
                if HTTP.starts_with(target) {
                    Verdict::NeedMore
                } else {
                    Verdict::No
                }
            } else if target.starts_with(HTTP) || method == b"CONNECT" {
                Verdict::Yes
            } else {
                Verdict::No
            }
        }
        b if method == b"CONNECT" && (b.is_ascii_alphanumeric() || b == b'[') => Verdict::Yes,
        _ => Verdict::No,
    }
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

/// The PROXY protocol v2 signature (HAProxy's spec, §2.2).
const PROXY_V2: &[u8; 12] = b"\r\n\r\n\x00\r\nQUIT\n";
/// A PROXY v1 line is at most 107 bytes, CRLF included.
const PROXY_V1_MAX: usize = 107;

/// Whether the stream starts with a PROXY protocol header (v1 text or v2 binary) that a load balancer put
/// in front of the client's bytes; `NeedMore` while that cannot be told yet.
pub fn proxy_header_len(data: &[u8]) -> Verdict {
    const V1: &[u8] = b"PROXY ";
    let v1 = prefix_verdict(data, V1);
    let v2 = prefix_verdict(data, PROXY_V2);
    match (v1, v2) {
        (Verdict::Yes, _) | (_, Verdict::Yes) => {
            if proxy_header_size(data).is_some() {
                Verdict::Yes
            } else if data.len() < PROXY_V1_MAX.max(16) || data.starts_with(PROXY_V2) {
                Verdict::NeedMore
            } else {
                Verdict::No
            }
        }
        (Verdict::NeedMore, _) | (_, Verdict::NeedMore) => Verdict::NeedMore,
        _ => Verdict::No,
    }
}

/// The size of a complete PROXY header at the start of `data`.
pub fn proxy_header_size(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"PROXY ") {
        let nl = data.iter().take(PROXY_V1_MAX).position(|b| *b == b'\n')?;
        return Some(nl + 1);
    }
    if data.starts_with(PROXY_V2) {
        let len = u16::from_be_bytes([*data.get(14)?, *data.get(15)?]);
        let total = 16 + usize::from(len);
        return (data.len() >= total).then_some(total);
    }
    None
}

fn prefix_verdict(data: &[u8], prefix: &[u8]) -> Verdict {
    if data.len() >= prefix.len() {
        if data.starts_with(prefix) {
            Verdict::Yes
        } else {
            Verdict::No
        }
    } else if prefix.starts_with(data) {
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
        assert_eq!(looks_like_request(b"GET "), Verdict::NeedMore);
        assert_eq!(looks_like_request(b"GETX /"), Verdict::Yes, "any token is a method");
        assert_eq!(looks_like_request(b"PURGE /cache"), Verdict::Yes);
        assert_eq!(looks_like_request(b"QUERY /q"), Verdict::Yes);
        assert_eq!(looks_like_request(b"OPTIONS * HTTP/1.1"), Verdict::Yes);
        assert_eq!(looks_like_request(b"GET http://x/"), Verdict::Yes);
        assert_eq!(looks_like_request(b"CONNECT example.com:443 HTTP/1.1"), Verdict::Yes);
        assert_eq!(looks_like_request(b"GET x"), Verdict::No, "a target must be a path, URL or *");
        assert_eq!(looks_like_request(b"get /"), Verdict::No);
        assert_eq!(looks_like_request(b"PROXY TCP4 1.2.3.4"), Verdict::No);
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

    #[test]
    fn proxy_headers_of_both_versions() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(proxy_header_len(v1), Verdict::Yes);
        assert_eq!(proxy_header_size(v1), Some(44));
        assert_eq!(proxy_header_len(b"PROXY TCP4 19"), Verdict::NeedMore);
        assert_eq!(proxy_header_len(b"PRO"), Verdict::NeedMore);
        assert_eq!(proxy_header_len(b"GET / HTTP/1.1"), Verdict::No);
        let mut v2 = PROXY_V2.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12]);
        v2.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2, 0xc7, 0x38, 0, 80]);
        assert_eq!(proxy_header_len(&v2[..10]), Verdict::NeedMore);
        assert_eq!(proxy_header_len(&v2[..20]), Verdict::NeedMore);
        v2.extend_from_slice(b"GET /");
        assert_eq!(proxy_header_len(&v2), Verdict::Yes);
        assert_eq!(proxy_header_size(&v2), Some(28));
    }
}
