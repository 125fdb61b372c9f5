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

/// `grpc-timeout` in milliseconds, rounded up: at most eight digits and a unit (`H`, `M`, `S`, `m`, `u`,
/// `n`), as the gRPC "PROTOCOL-HTTP2" document writes it. `None` for anything else.
pub fn timeout_ms(value: &str) -> Option<u64> {
    let v = value.trim();
    let unit = v.chars().last()?;
    let digits = &v[..v.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let nanos_per = match unit {
        'H' => 3_600_000_000_000u64,
        'M' => 60_000_000_000,
        'S' => 1_000_000_000,
        'm' => 1_000_000,
        'u' => 1_000,
        'n' => 1,
        _ => return None,
    };
    Some(n.saturating_mul(nanos_per).div_ceil(1_000_000))
}

/// Whether a call cancelled `elapsed_ms` after it began had reached its `grpc-timeout`: clients round the
/// header up and cancel when their own deadline fires, so within 2 % (at least 20 ms) counts (SPEC §3.5).
pub fn past_deadline(elapsed_ms: f64, timeout_ms: u64) -> bool {
    let slack = (timeout_ms as f64 * 0.02).max(20.0);
    elapsed_ms >= timeout_ms as f64 - slack
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
    fn timeouts_are_read_in_every_unit_and_deadlines_allow_for_rounding() {
        assert_eq!(timeout_ms("500m"), Some(500));
        assert_eq!(timeout_ms("2S"), Some(2_000));
        assert_eq!(timeout_ms("1M"), Some(60_000));
        assert_eq!(timeout_ms("1H"), Some(3_600_000));
        assert_eq!(timeout_ms("999999u"), Some(1_000), "rounded up");
        assert_eq!(timeout_ms("1n"), Some(1));
        assert_eq!(timeout_ms("99999999H"), Some(u64::MAX / 1_000_000 + 1), "saturates, never overflows");
        for bad in ["", "S", "123456789S", "10x", "-1S", "1.5S", "१S", "1१"] {
            assert_eq!(timeout_ms(bad), None, "{bad:?}");
        }
        assert!(past_deadline(990.0, 1_000) && past_deadline(1_200.0, 1_000));
        assert!(!past_deadline(900.0, 1_000), "cancelled before its deadline: the client's choice");
        assert!(past_deadline(81.0, 100) && !past_deadline(79.0, 100), "20 ms at least");
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
