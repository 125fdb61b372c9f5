//! Answers of the API server about callers (TokenReview, SubjectAccessReview), kept for a short time so
//! that a caller making many requests costs one review per `ttl`, not one per request. Keyed by a digest
//! of the token, never the token itself; bounded, so that a flood of distinct tokens cannot grow it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Answers kept at most.
const MAX_ENTRIES: usize = 10_000;

/// What a token is known by in caches.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Clone)]
pub struct ReviewCache<K, V> {
    ttl: Duration,
    answers: Arc<Mutex<HashMap<K, (V, Instant)>>>,
}

impl<K: Eq + Hash, V: Clone> ReviewCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        ReviewCache { ttl, answers: Arc::default() }
    }

    /// The answer for `key`, if one was given within the TTL.
    pub fn get(&self, key: &K) -> Option<V> {
        let answers = self.answers.lock().ok()?;
        let (value, at) = answers.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let Ok(mut answers) = self.answers.lock() else { return };
        if answers.len() >= MAX_ENTRIES {
            answers.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if answers.len() >= MAX_ENTRIES {
                answers.clear();
            }
        }
        answers.insert(key, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_expire_and_the_cache_stays_bounded() {
        let c = ReviewCache::new(Duration::from_secs(60));
        c.put(token_digest("a"), 1);
        assert_eq!(c.get(&token_digest("a")), Some(1));
        assert_eq!(c.get(&token_digest("b")), None);
        for i in 0..MAX_ENTRIES + 5 {
            c.put(token_digest(&i.to_string()), i);
        }
        assert!(c.answers.lock().map(|a| a.len()).unwrap_or(usize::MAX) <= MAX_ENTRIES);
        let gone = ReviewCache::new(Duration::ZERO);
        gone.put(1u8, 1);
        assert_eq!(gone.get(&1u8), None, "an answer older than the TTL is not used");
    }
}
