//! Fault injection shared by the edge simulators.
//!
//! An *endpoint* selector is `"*"` (everything) or a substring of `"<METHOD> <path>"`, e.g.
//! `"POST /zpack/register"`, `"records/add"`, `"DELETE "`, `"/status"`. Injected failures are
//! answered with the given HTTP status in the simulator's own error format (Cloudflare's
//! envelope, with `retry-after` on 429; Technitium's envelope for status 200; plain text for
//! other statuses). A full outage (connection refused) is `set_outage` on each sim handle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ANY: &str = "*";

#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    latency: Duration,
    rules: Vec<Rule>,
    injected: u64,
}

#[derive(Debug)]
struct Rule {
    endpoint: String,
    status: u16,
    /// `Some(n)`: fail the next n matching requests; `None`: use `rate`.
    remaining: Option<u32>,
    rate: f64,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fail the next `n` requests matching `endpoint` with HTTP `status`.
    pub fn fail_next(&self, endpoint: &str, n: u32, status: u16) {
        self.lock().rules.push(Rule {
            endpoint: endpoint.into(),
            status,
            remaining: Some(n),
            rate: 0.0,
        });
    }

    /// Fail a fraction (`0.0..=1.0`) of requests matching `endpoint` with HTTP `status`;
    /// replaces an earlier rate for the same endpoint; rate 0 removes it.
    pub fn set_error_rate(&self, endpoint: &str, rate: f64, status: u16) {
        let mut s = self.lock();
        s.rules
            .retain(|r| !(r.remaining.is_none() && r.endpoint == endpoint));
        if rate > 0.0 {
            s.rules.push(Rule {
                endpoint: endpoint.into(),
                status,
                remaining: None,
                rate: rate.min(1.0),
            });
        }
    }

    /// Delay every request by `d` (real time; a long delay is a hang for clients with a
    /// shorter timeout).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Remove every rule and the latency.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.latency = Duration::ZERO;
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Decide for one request: `Some(status)` to fail it.
    pub(crate) fn check(&self, method: &str, path: &str) -> Option<u16> {
        let key = format!("{method} {path}");
        let mut s = self.lock();
        let mut hit = None;
        for r in s.rules.iter_mut() {
            if r.endpoint != ANY && !key.contains(r.endpoint.as_str()) {
                continue;
            }
            match &mut r.remaining {
                Some(0) => continue,
                Some(n) => {
                    *n -= 1;
                    hit = Some(r.status);
                    break;
                }
                None => {
                    if rand::random::<f64>() < r.rate {
                        hit = Some(r.status);
                        break;
                    }
                }
            }
        }
        s.rules.retain(|r| r.remaining != Some(0));
        if hit.is_some() {
            s.injected += 1;
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_next_counts_down_and_matches_substrings() {
        let f = Faults::default();
        f.fail_next("records/add", 2, 503);
        assert_eq!(f.check("GET", "/api/zones/records/get"), None);
        assert_eq!(f.check("POST", "/api/zones/records/add"), Some(503));
        assert_eq!(f.check("POST", "/api/zones/records/add"), Some(503));
        assert_eq!(f.check("POST", "/api/zones/records/add"), None);
        f.set_error_rate(ANY, 1.0, 500);
        assert_eq!(f.check("GET", "/x"), Some(500));
        f.set_error_rate(ANY, 0.0, 500);
        assert_eq!(f.check("GET", "/x"), None);
        assert_eq!(f.injected(), 3);
    }
}
