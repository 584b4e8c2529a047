//! Fault injection for the Proxmox simulator.
//!
//! JSON accepted by `POST /_sim/faults` (each member optional; rules are appended):
//! ```json
//! {"rules": [
//!    {"endpoint": "clone", "next": 2, "action": {"kind": "error", "code": 500,
//!        "message": "failed to read from command socket: Connection reset by peer"}},
//!    {"endpoint": "*", "rate": 0.3, "action": {"kind": "latency", "ms": 200}},
//!    {"endpoint": "status_current", "next": 1, "action": {"kind": "hang"}},
//!    {"endpoint": "config_put", "next": 1, "action": {"kind": "reset"}}],
//!  "outage": {"kind": "status", "code": 595, "message": "Connection refused"},
//!  "task_errors": [{"endpoint": "clone", "message": "clone failed: cfs-lock 'storage-local' error: got lock request timeout"}]}
//! ```
//! `{"outage": {"kind": "refuse"}}` drops every connection; `{"outage": null}` (or
//! `DELETE /_sim/faults`) ends it. `DELETE /_sim/faults` clears everything.

use serde::{Deserialize, Serialize};

/// When a rule fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// With this probability (0..=1) on every matching request.
    Rate(f64),
    /// On the next N matching requests, then the rule is spent.
    Next(u32),
}

/// What a fired rule does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this PVE error: status line reason = first line of `message`; body
    /// `{"data":null,"message":"...\n"}`, or empty for 401 and the proxy codes 595..599.
    Error { code: u16, message: String },
    /// Delay the (otherwise normal) answer.
    Latency { ms: u64 },
    /// Never answer (the client's timeout fires).
    Hang,
    /// Drop the connection without a complete answer (the response body fails, so hyper
    /// aborts the connection; clients see a reset / incomplete message).
    Reset,
    /// Do the work, then drop the connection: the call took effect but the caller never
    /// learns it (a crash between the call and recording its result, seen from outside).
    LoseResponse,
}

/// One fault rule. `endpoint` is an endpoint name (see `proxmox_client::Endpoint`: `clone`,
/// `config_put`, `status_current`, `cluster_resources`, `task_status`, `start`, `stop`,
/// `delete`, `interfaces`, ...) or `*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub endpoint: String,
    #[serde(flatten)]
    pub trigger: Trigger,
    pub action: FaultAction,
}

impl FaultRule {
    pub fn matches(&self, endpoint: &str) -> bool {
        self.endpoint == "*" || self.endpoint == endpoint
    }
}

/// A full outage: every API request fails this way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outage {
    /// Every request gets this status (e.g. 595 `Connection refused` or 503), empty body
    /// for 595..599.
    Status { code: u16, message: String },
    /// New connections are accepted and dropped at once, open ones are reset. (A true
    /// "connection refused" would need the port unbound; clients see the same Transient class.)
    Refuse,
}

/// The next task of kind `endpoint` (`clone`, `start`, `stop`, `shutdown`, `reboot`, `delete`)
/// ends with `TASK ERROR: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskErrorSpec {
    pub endpoint: String,
    pub message: String,
}

/// Body of `POST /_sim/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<Option<Outage>>,
    #[serde(default)]
    pub task_errors: Vec<TaskErrorSpec>,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub rules: Vec<FaultRule>,
    pub outage: Option<Outage>,
    pub task_errors: Vec<TaskErrorSpec>,
}

/// The outcome of evaluating the rules for one request.
#[derive(Debug, Default)]
pub(crate) struct Fired {
    pub latency_ms: u64,
    pub action: Option<FaultAction>,
}

impl Faults {
    pub fn evaluate(&mut self, endpoint: &str) -> Fired {
        let mut fired = Fired::default();
        for rule in self.rules.iter_mut().filter(|r| r.matches(endpoint)) {
            let fire = match &mut rule.trigger {
                Trigger::Next(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                Trigger::Next(_) => false,
                Trigger::Rate(p) => rand::random::<f64>() < *p,
            };
            if !fire {
                continue;
            }
            match &rule.action {
                FaultAction::Latency { ms } => fired.latency_ms += ms,
                other if fired.action.is_none() => fired.action = Some(other.clone()),
                _ => {}
            }
        }
        self.rules
            .retain(|r| !matches!(r.trigger, Trigger::Next(0)));
        fired
    }

    pub fn take_task_error(&mut self, endpoint: &str) -> Option<String> {
        let i = self
            .task_errors
            .iter()
            .position(|t| t.endpoint == endpoint)?;
        Some(self.task_errors.remove(i).message)
    }
}
