//! The one fault vocabulary of every simulator (Proxmox, Agent, Technitium, Cloudflare,
//! Velocity): the body of `POST /_sim/faults`, which each serves on its own port and which
//! answers even during an outage, so an outage injected over HTTP can be lifted over HTTP.
//! `DELETE /_sim/faults` clears every rule and the outage.
//!
//! ```json
//! {"rules": [
//!    {"endpoint": "clone", "next": 2, "action": {"kind": "error", "code": 500,
//!        "message": "failed to read from command socket: Connection reset by peer"}},
//!    {"endpoint": "*", "rate": 0.3, "action": {"kind": "latency", "ms": 200}},
//!    {"endpoint": "POST /config", "next": 1, "action": {"kind": "hang"}}],
//!  "outage": {"kind": "status", "code": 503, "message": "Service Unavailable"}}
//! ```
//! An `endpoint` is `*` or what the simulator calls a request: the Proxmox simulator its
//! endpoint names (`clone`, `config_put`, ...), the edge simulators any part of
//! `METHOD /path` (`POST /zpack/register`, `records/add`). `task_errors` (a task that ends
//! with `TASK ERROR: <message>`) are the Proxmox simulator's only; the others refuse them.
//! Rules are appended; `"outage": null` ends an outage.

use serde::{Deserialize, Serialize};

/// Where every simulator serves its fault control.
pub const FAULTS_PATH: &str = "/_sim/faults";
/// The `endpoint` that matches every request.
pub const ANY: &str = "*";
/// Why a simulator other than Proxmox refuses a spec.
pub const TASK_ERRORS_PROXMOX_ONLY: &str = "task_errors apply to the Proxmox simulator only";

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
    /// Answer with this status in the simulator's own error format; an empty `message` takes
    /// the simulator's usual text for the status.
    Error {
        code: u16,
        #[serde(default)]
        message: String,
    },
    /// Delay the (otherwise normal) answer.
    Latency { ms: u64 },
    /// Never answer (the client's timeout fires).
    Hang,
    /// Drop the connection without a complete answer (clients see a reset / incomplete
    /// message).
    Reset,
    /// Do the work, then drop the connection: the call took effect but the caller never
    /// learns it (a crash between the call and recording its result, seen from outside).
    LoseResponse,
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    pub endpoint: String,
    #[serde(flatten)]
    pub trigger: Trigger,
    pub action: FaultAction,
}

/// A full outage: every request but the fault control fails this way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outage {
    /// Every request gets this status (e.g. Proxmox's 595 `Connection refused`, or 503).
    Status {
        code: u16,
        #[serde(default)]
        message: String,
    },
    /// Every request has its connection dropped without an answer. (A true "connection
    /// refused" would need the port unbound, and with it the fault control; clients see the
    /// same Transient class.)
    Refuse,
}

/// The next task of kind `endpoint` (`clone`, `start`, `stop`, `shutdown`, `reboot`, `delete`)
/// ends with `TASK ERROR: <message>` (Proxmox only).
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
    /// Absent: the outage is left as it is; `null`: it ends.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub outage: Option<Option<Outage>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_errors: Vec<TaskErrorSpec>,
}

/// A member that is present, even as `null` (serde reads a `null` `Option<Option<_>>` as
/// absent otherwise).
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// The outcome of the rules for one request.
#[derive(Debug, Default, PartialEq)]
pub struct Fired {
    /// The sum of every firing latency rule.
    pub latency_ms: u64,
    /// The first firing rule of another kind; later ones are not evaluated (nor spent).
    pub action: Option<FaultAction>,
}

/// Evaluate `rules` for one request; `matches(endpoint)` says whether a rule's `endpoint`
/// selects it (`*` always does). Spent `next` rules are removed.
pub fn evaluate(rules: &mut Vec<FaultRule>, matches: impl Fn(&str) -> bool) -> Fired {
    let mut fired = Fired::default();
    for rule in rules.iter_mut() {
        let latency = matches!(rule.action, FaultAction::Latency { .. });
        if !(rule.endpoint == ANY || matches(&rule.endpoint))
            || (!latency && fired.action.is_some())
        {
            continue;
        }
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
            other => fired.action = Some(other.clone()),
        }
    }
    rules.retain(|r| !matches!(r.trigger, Trigger::Next(0)));
    fired
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(endpoint: &str, trigger: Trigger, action: FaultAction) -> FaultRule {
        FaultRule {
            endpoint: endpoint.into(),
            trigger,
            action,
        }
    }

    #[test]
    fn the_first_firing_action_wins_and_latencies_add_up() {
        let err = |code| FaultAction::Error {
            code,
            message: String::new(),
        };
        let mut rules = vec![
            rule("a", Trigger::Next(1), err(500)),
            rule(ANY, Trigger::Rate(1.0), FaultAction::Latency { ms: 5 }),
            rule("a", Trigger::Next(1), err(503)),
            rule("a", Trigger::Rate(1.0), FaultAction::Latency { ms: 7 }),
        ];
        let on_a = |e: &str| e == "a";
        let first = evaluate(&mut rules, on_a);
        assert_eq!((first.latency_ms, first.action), (12, Some(err(500))));
        let second = evaluate(&mut rules, on_a);
        assert_eq!(second.action, Some(err(503)), "the 503 rule was not spent");
        assert_eq!(evaluate(&mut rules, on_a).action, None);
        assert_eq!(rules.len(), 2, "spent rules are gone");
        assert_eq!(
            evaluate(&mut rules, |e| e == "b").latency_ms,
            5,
            "`*` matches"
        );
    }

    #[test]
    fn specs_read_as_documented() {
        let spec: FaultSpec = serde_json::from_str(
            r#"{"rules": [{"endpoint": "POST /config", "next": 1, "action": {"kind": "error", "code": 503}}],
                "outage": {"kind": "refuse"}}"#,
        )
        .unwrap();
        assert_eq!(spec.rules[0].trigger, Trigger::Next(1));
        assert_eq!(spec.outage, Some(Some(Outage::Refuse)));
        let end: FaultSpec = serde_json::from_str(r#"{"outage": null}"#).unwrap();
        assert_eq!(end.outage, Some(None), "null ends an outage");
        let keep: FaultSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(keep.outage, None, "absent leaves it");
    }
}
