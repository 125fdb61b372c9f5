//! Capture time. Offline, time is the capture's own clock (SPEC §3.6), so the engine never reads the wall
//! clock: every timer is measured in these nanoseconds.

use std::fmt;

/// Nanoseconds since the Unix epoch, as stamped on the packet by the capture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_micros(us: u64) -> Self {
        Timestamp(us.saturating_mul(1_000))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// `self + ms`, saturating instead of overflowing on absurd timeouts.
    pub const fn plus_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }

    /// Milliseconds from `earlier` to `self` (0 when `earlier` is later), with microsecond precision.
    pub fn millis_since(self, earlier: Timestamp) -> f64 {
        let us = self.0.saturating_sub(earlier.0) / 1_000;
        us as f64 / 1_000.0
    }
}

/// A wall-clock reading as capture time (the engine itself never reads the clock; live callers pass it
/// `SystemTime::now()`). Times before the epoch read as 0.
impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Timestamp {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-27T23:12:57.123456Z`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        write!(f, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_micros() {
        // 2026-11-27T23:12:57.123456Z, checked with `date -u -d @1795821177`.
        let ts = Timestamp(1_795_821_177_123_456_789);
        assert_eq!(ts.to_string(), "2026-11-27T23:12:57.123456Z");
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000000Z");
        // A leap day.
        assert_eq!(Timestamp::from_micros(951_782_400_000_000).to_string(), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn system_time_converts_to_nanoseconds() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_795_821_177_123_456_789);
        assert_eq!(Timestamp::from(t), Timestamp(1_795_821_177_123_456_789));
    }

    #[test]
    fn millis_since_saturates() {
        let a = Timestamp::from_millis(10);
        let b = Timestamp::from_micros(12_500);
        assert_eq!(b.millis_since(a), 2.5);
        assert_eq!(a.millis_since(b), 0.0);
    }
}

impl Timestamp {
    /// Parses what `Display` writes: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`. Anything else is `None`.
    pub fn parse_rfc3339(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let rest = s.get(19..)?;
        let frac = rest.strip_suffix('Z')?;
        let nanos = match frac.strip_prefix('.') {
            None if frac.is_empty() => 0,
            Some(digits) if !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|c| c.is_ascii_digit()) => {
                digits.parse::<u64>().ok()? * 10u64.pow(9 - digits.len() as u32)
            }
            _ => return None,
        };
        let days = days_from_civil(y as i64, mo as u32, d as u32);
        let secs = u64::try_from(days).ok()? * 86_400 + h * 3600 + mi * 60 + sec;
        Some(Timestamp(secs.checked_mul(1_000_000_000)?.checked_add(nanos)?))
    }
}

/// Inverse of `civil_from_days`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parse_inverts_display() {
        for ns in [0u64, 951_782_400_000_000_000, 1_795_821_177_123_456_000] {
            let ts = Timestamp(ns);
            assert_eq!(Timestamp::parse_rfc3339(&ts.to_string()), Some(ts));
        }
        assert_eq!(Timestamp::parse_rfc3339("2026-11-27T23:12:57Z"), Some(Timestamp(1_795_821_177_000_000_000)));
        for bad in ["", "2026-11-27", "2026-13-01T00:00:00Z", "2026-11-27T23:12:57.Z", "2026-11-27T23:12:57+01:00"] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
