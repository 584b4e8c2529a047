//! The API rate model: each node's request rate, measured (always) and limited (when
//! `SimConfig::api_rate` is set) in requests per simulated second.
//!
//! Real PVE has no rate limit: pveproxy accepts up to `max_conn` connections and proxies the
//! protected calls to a node's three pvedaemon workers. When they cannot keep up, calls queue
//! until the proxy hop's 30 s timeout and answer `596 Connection timed out` with an empty body
//! (docs/proxmox-api.md §4). The model answers a request beyond the node's budget that way at
//! once, rather than after 30 s, so tests and benchmarks see the refusal without the wait.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// A per-node budget of API requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimApiRate {
    /// Sustained requests per simulated second per node.
    pub per_node_per_sec: f64,
    /// How many requests may arrive at once after a quiet spell.
    pub burst: u32,
}

/// The status line of an overloaded node's answer.
pub(crate) const OVERLOADED_CODE: u16 = 596;
pub(crate) const OVERLOADED_MESSAGE: &str = "Connection timed out";

#[derive(Debug, Default)]
struct NodeRate {
    requests: u64,
    refused: u64,
    /// Arrivals within the last window, oldest first.
    window: VecDeque<Instant>,
    peak: usize,
    tokens: f64,
    refilled: Option<Instant>,
}

/// Every node's counters and budget.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    nodes: HashMap<String, NodeRate>,
}

/// What the model decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    Overloaded,
}

impl Rates {
    /// Count a request to `node` at `now` and decide it. `window` is one simulated second in
    /// real time; `limit` the budget, if any, with its refill per real second.
    pub fn admit(
        &mut self,
        node: &str,
        now: Instant,
        window: Duration,
        limit: Option<(f64, u32)>,
    ) -> Admission {
        let n = self.nodes.entry(node.to_string()).or_default();
        n.requests += 1;
        while n
            .window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            n.window.pop_front();
        }
        n.window.push_back(now);
        n.peak = n.peak.max(n.window.len());
        let Some((per_real_sec, burst)) = limit else {
            return Admission::Admitted;
        };
        let since = n.refilled.map_or(f64::from(burst), |t| {
            now.saturating_duration_since(t).as_secs_f64() * per_real_sec
        });
        n.tokens = (n.tokens + since).min(f64::from(burst));
        n.refilled = Some(now);
        if n.tokens >= 1.0 {
            n.tokens -= 1.0;
            Admission::Admitted
        } else {
            n.refused += 1;
            Admission::Overloaded
        }
    }

    pub fn requests(&self, node: &str) -> u64 {
        self.nodes.get(node).map_or(0, |n| n.requests)
    }

    pub fn refused(&self) -> u64 {
        self.nodes.values().map(|n| n.refused).sum()
    }

    /// The most requests seen within one simulated second.
    pub fn peak(&self, node: &str) -> usize {
        self.nodes.get(node).map_or(0, |n| n.peak)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        let limit = Some((10.0, 5));
        let first: Vec<Admission> = (0..7).map(|_| r.admit("pve", t0, sec, limit)).collect();
        assert_eq!(
            first.iter().filter(|a| **a == Admission::Admitted).count(),
            5,
            "the burst"
        );
        assert_eq!(r.refused(), 2);
        // 0.3 s later three tokens have come back.
        let later = t0 + Duration::from_millis(300);
        let next: Vec<Admission> = (0..4).map(|_| r.admit("pve", later, sec, limit)).collect();
        assert_eq!(
            next.iter().filter(|a| **a == Admission::Admitted).count(),
            3
        );
        assert_eq!((r.requests("pve"), r.peak("pve")), (11, 11));
        // A node has its own budget.
        assert_eq!(r.admit("pve2", later, sec, limit), Admission::Admitted);
    }

    #[test]
    fn without_a_limit_everything_passes_and_is_measured() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        let sec = Duration::from_secs(1);
        for i in 0..30u64 {
            let at = t0 + Duration::from_millis(100 * i);
            assert_eq!(r.admit("pve", at, sec, None), Admission::Admitted);
        }
        assert_eq!(r.peak("pve"), 10, "ten per second at one every 100 ms");
        assert_eq!(r.refused(), 0);
    }
}
