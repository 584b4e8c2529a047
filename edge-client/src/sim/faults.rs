//! Fault injection shared by the edge simulators, in the vocabulary every simulator shares
//! (`model::faults`), from Rust (`fail_next`, `set_error_rate`, `set_latency`, `apply`) or
//! over HTTP (`POST /_sim/faults`, `DELETE /_sim/faults` on the simulator's own port; the
//! Agent simulator's on any running container's Agent port).
//!
//! An *endpoint* selector is `"*"` (everything) or a substring of `"<METHOD> <path>"`, e.g.
//! `"POST /zpack/register"`, `"records/add"`, `"DELETE "`, `"/status"`. Injected failures are
//! answered with the given HTTP status in the simulator's own error format (Cloudflare's
//! envelope, with `retry-after` on 429; Technitium's envelope for status 200; plain text for
//! other statuses). An outage injected here keeps the port open (its requests fail, the fault
//! control answers); `set_outage` on a sim handle closes the port instead (connection
//! refused), and only the handle reopens it.

use model::faults::{FaultAction, FaultRule, FaultSpec, Fired, Outage, Trigger};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use model::faults::ANY;

#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    latency: Duration,
    rules: Vec<FaultRule>,
    outage: Option<Outage>,
    injected: u64,
}

fn error(status: u16) -> FaultAction {
    FaultAction::Error {
        code: status,
        message: String::new(),
    }
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fail the next `n` requests matching `endpoint` with HTTP `status`.
    pub fn fail_next(&self, endpoint: &str, n: u32, status: u16) {
        self.add(FaultRule {
            endpoint: endpoint.into(),
            trigger: Trigger::Next(n),
            action: error(status),
        });
    }

    /// Fail a fraction (`0.0..=1.0`) of requests matching `endpoint` with HTTP `status`;
    /// replaces an earlier rate for the same endpoint; rate 0 removes it.
    pub fn set_error_rate(&self, endpoint: &str, rate: f64, status: u16) {
        let mut s = self.lock();
        s.rules.retain(|r| {
            !(matches!(r.trigger, Trigger::Rate(_))
                && matches!(r.action, FaultAction::Error { .. })
                && r.endpoint == endpoint)
        });
        if rate > 0.0 {
            s.rules.push(FaultRule {
                endpoint: endpoint.into(),
                trigger: Trigger::Rate(rate.min(1.0)),
                action: error(status),
            });
        }
    }

    /// Add one rule (any action of the shared vocabulary).
    pub fn add(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Delay every request by `d` (real time; a long delay is a hang for clients with a
    /// shorter timeout).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Start (`Some`) or end (`None`) an outage of every request but the fault control.
    pub fn set_outage(&self, outage: Option<Outage>) {
        self.lock().outage = outage;
    }

    /// Apply a spec as `POST /_sim/faults` does: rules appended, the outage set if given.
    /// `task_errors` are refused (they are the Proxmox simulator's).
    pub fn apply(&self, spec: FaultSpec) -> Result<(), &'static str> {
        if !spec.task_errors.is_empty() {
            return Err(model::faults::TASK_ERRORS_PROXMOX_ONLY);
        }
        let mut s = self.lock();
        s.rules.extend(spec.rules);
        if let Some(outage) = spec.outage {
            s.outage = outage;
        }
        Ok(())
    }

    /// Remove every rule, the latency and the outage.
    pub fn clear(&self) {
        let mut s = self.lock();
        s.rules.clear();
        s.latency = Duration::ZERO;
        s.outage = None;
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(crate) fn outage(&self) -> Option<Outage> {
        self.lock().outage.clone()
    }

    /// Decide for one request.
    pub(crate) fn check(&self, method: &str, path: &str) -> Fired {
        let key = format!("{method} {path}");
        let mut s = self.lock();
        let fired = model::faults::evaluate(&mut s.rules, |e| key.contains(e));
        if fired.action.is_some() {
            s.injected += 1;
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(f: Fired) -> Option<u16> {
        match f.action {
            Some(FaultAction::Error { code, .. }) => Some(code),
            _ => None,
        }
    }

    #[test]
    fn fail_next_counts_down_and_matches_substrings() {
        let f = Faults::default();
        f.fail_next("records/add", 2, 503);
        assert_eq!(status(f.check("GET", "/api/zones/records/get")), None);
        assert_eq!(status(f.check("POST", "/api/zones/records/add")), Some(503));
        assert_eq!(status(f.check("POST", "/api/zones/records/add")), Some(503));
        assert_eq!(status(f.check("POST", "/api/zones/records/add")), None);
        f.set_error_rate(ANY, 1.0, 500);
        assert_eq!(status(f.check("GET", "/x")), Some(500));
        f.set_error_rate(ANY, 0.0, 500);
        assert_eq!(status(f.check("GET", "/x")), None);
        assert_eq!(f.injected(), 3);
    }

    #[test]
    fn specs_apply_and_clear() {
        let f = Faults::default();
        let spec: FaultSpec = serde_json::from_str(
            r#"{"rules": [{"endpoint": "POST /config", "next": 1, "action": {"kind": "hang"}}],
                "outage": {"kind": "status", "code": 503}}"#,
        )
        .unwrap();
        f.apply(spec).unwrap();
        assert_eq!(f.check("POST", "/config").action, Some(FaultAction::Hang));
        assert!(matches!(f.outage(), Some(Outage::Status { code: 503, .. })));
        let proxmox_only = FaultSpec {
            task_errors: vec![model::faults::TaskErrorSpec {
                endpoint: "clone".into(),
                message: "x".into(),
            }],
            ..FaultSpec::default()
        };
        assert_eq!(
            f.apply(proxmox_only),
            Err(model::faults::TASK_ERRORS_PROXMOX_ONLY)
        );
        f.clear();
        assert_eq!(f.outage(), None);
    }
}
