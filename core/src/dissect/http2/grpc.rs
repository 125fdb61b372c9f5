//! gRPC over HTTP/2 (the gRPC "PROTOCOL-HTTP2" document): which streams are gRPC, the service and method
//! from the path, and the status from `grpc-status` / `grpc-message` by its name.

/// Whether a `content-type` is gRPC's (`application/grpc`, optionally `+proto`, `+json`, …).
pub fn is_grpc(content_type: &str) -> bool {
    let ct = content_type.trim();
    ct.len() >= 16
        && ct.as_bytes()[..16].eq_ignore_ascii_case(b"application/grpc")
        && matches!(ct.as_bytes().get(16), None | Some(b'+' | b';'))
}

/// `/package.Service/Method` → (`package.Service`, `Method`); anything else whole as the method.
pub fn service_and_method(path: &str) -> (String, String) {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    match trimmed.split_once('/') {
        Some((service, method)) if !service.is_empty() && !method.contains('/') => {
            (service.to_owned(), method.to_owned())
        }
        _ => (String::new(), path.to_owned()),
    }
}

/// A status code by its name in the gRPC spec; codes beyond them by number.
pub fn status_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).map_or_else(|| format!("CODE_{code}"), |n| (*n).to_owned())
}

/// `grpc-message` is percent-encoded (its spec: "%" followed by two hex digits); what does not decode
/// is kept as it is, and the result is cut at `max` bytes on a character boundary.
pub fn decode_message(raw: &str, max: usize) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len().min(max));
    let mut i = 0;
    while i < b.len() && out.len() < max {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    let mut s = String::from_utf8_lossy(&out).into_owned();
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_told_by_its_content_type_and_named_by_its_path() {
        assert!(is_grpc("application/grpc") && is_grpc("application/grpc+proto") && is_grpc("Application/GRPC"));
        assert!(!is_grpc("application/grpc-web") && !is_grpc("application/json") && !is_grpc(""));
        assert_eq!(service_and_method("/shop.Cart/Add"), ("shop.Cart".to_owned(), "Add".to_owned()));
        assert_eq!(service_and_method("/health").1, "/health");
        assert_eq!(status_name(14), "UNAVAILABLE");
        assert_eq!(status_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(status_name(99), "CODE_99");
    }

    #[test]
    fn messages_are_percent_decoded_leniently_and_cut() {
        assert_eq!(decode_message("no%20backend%3A%20db", 100), "no backend: db");
        assert_eq!(decode_message("100%", 100), "100%");
        assert_eq!(decode_message("%zz", 100), "%zz");
        assert_eq!(decode_message("%C3%A9t%C3%A9", 3), "ét");
        assert_eq!(decode_message("%C3%A9t%C3%A9", 2), "é");
    }
}
