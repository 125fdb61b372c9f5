//! A token bucket: `burst` at once, then `per_second`. Used where a stranger can make the operator spend
//! something on another service (a TokenReview on the API server) — the bucket says no, it does not wait.

use std::sync::Mutex;
use std::time::Instant;

pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(burst: u32, per_second: u32) -> TokenBucket {
        TokenBucket {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes one token if there is one.
    pub fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        let Ok(mut s) = self.state.lock() else { return false };
        let (tokens, last) = *s;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.per_second).min(self.burst);
        if refilled >= 1.0 {
            *s = (refilled - 1.0, now);
            true
        } else {
            *s = (refilled, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let b = TokenBucket::new(3, 2);
        let t0 = Instant::now();
        assert_eq!((0..5).filter(|_| b.take_at(t0)).count(), 3, "the burst");
        assert!(!b.take_at(t0 + Duration::from_millis(100)), "0.2 of a token");
        assert!(b.take_at(t0 + Duration::from_millis(500)), "one token after half a second at 2/s");
        assert_eq!((0..10).filter(|_| b.take_at(t0 + Duration::from_secs(100))).count(), 3, "never above the burst");
    }
}
