//! Per-key exponential backoff with jitter, reset on success.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

pub struct Backoff<K> {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Record a failure of `key` and return how long to wait: base·2^(n-1), capped, with
    /// "equal jitter" (half fixed, half random) so a fleet hit by one outage does not retry
    /// in lockstep.
    pub fn next(&self, key: &K) -> Duration {
        let n = {
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = f.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exp = self.base.saturating_mul(
            1u32.checked_shl(n.saturating_sub(1).min(30))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.max);
        let half = capped / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    pub fn failures(&self, key: &K) -> u32 {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(key).copied().unwrap_or(0)
    }

    pub fn reset(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let waits: Vec<Duration> = (0..12).map(|_| b.next(&"k")).collect();
        for (i, w) in waits.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << i.min(30)).min(Duration::from_secs(300));
            assert!(
                *w <= ceiling && *w >= ceiling / 2,
                "attempt {i}: {w:?} vs {ceiling:?}"
            );
        }
        assert_eq!(b.failures(&"k"), 12);
        b.reset(&"k");
        assert!(b.next(&"k") <= Duration::from_secs(1));
    }
}
