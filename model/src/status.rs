//! `ServerStatus`: what the controller last observed and did, as Kubernetes-style conditions.
//! `phase` is always derived from the conditions, never stored on its own.

use crate::class::ErrorClass;
use crate::spec::Restarts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ConditionType {
    VmidAllocated,
    ContainerCreated,
    ContainerRunning,
    NetworkReady,
    AgentReady,
    /// The game process runs as the spec asks (`False` with reason `StoppedAsAsked` when the
    /// spec stops it).
    ProcessRunning,
    DnsPublished,
    ProxyRegistered,
    Ready,
    Degraded,
}

impl ConditionType {
    /// The provisioning chain, in order; `Ready` and `Degraded` summarise it.
    pub const CHAIN: [ConditionType; 8] = [
        ConditionType::VmidAllocated,
        ConditionType::ContainerCreated,
        ConditionType::ContainerRunning,
        ConditionType::NetworkReady,
        ConditionType::AgentReady,
        ConditionType::ProcessRunning,
        ConditionType::DnsPublished,
        ConditionType::ProxyRegistered,
    ];
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: ConditionType,
    pub status: ConditionStatus,
    /// One CamelCase word (constants in the controller's `reason` module).
    pub reason: String,
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    pub observed_generation: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub class: ErrorClass,
    /// The provisioning step (`clone-container`, ...) or teardown step.
    pub step: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A Proxmox task being waited on (docs/reconcile-contract.md, rule 3: never block a worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InFlightTask {
    pub upid: String,
    /// What the task does.
    pub action: TaskKind,
    pub started_at: DateTime<Utc>,
}

/// The kinds of Proxmox task zlh starts and waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Clone,
    Start,
    Shutdown,
    Reboot,
    Stop,
    Destroy,
    /// Growing the rootfs (`PUT .../resize`, a task on PVE 8+).
    Resize,
}

impl TaskKind {
    pub const ALL: [TaskKind; 7] = [
        TaskKind::Clone,
        TaskKind::Start,
        TaskKind::Shutdown,
        TaskKind::Reboot,
        TaskKind::Stop,
        TaskKind::Destroy,
        TaskKind::Resize,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Clone => "clone",
            TaskKind::Start => "start",
            TaskKind::Shutdown => "shutdown",
            TaskKind::Reboot => "reboot",
            TaskKind::Stop => "stop",
            TaskKind::Destroy => "destroy",
            TaskKind::Resize => "resize",
        }
    }

    /// The provisioning step a task of this kind belongs to (a destroy during provisioning
    /// cleans up a failed clone).
    pub fn step(self) -> Step {
        match self {
            TaskKind::Clone | TaskKind::Destroy => Step::CloneContainer,
            TaskKind::Start | TaskKind::Shutdown | TaskKind::Stop => Step::StartContainer,
            TaskKind::Reboot => Step::RestartContainer,
            TaskKind::Resize => Step::ConfigureContainer,
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Work in progress the engine must remember because no observation shows it: the reconcile
/// reads these (and the in-flight task), never a condition's reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The spec generation whose config the Agent accepted and is installing: while set, the
    /// Agent is asked before Proxmox is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_install: Option<i64>,
    /// The template this server is queued for (another server is cloning it): while set, the
    /// clone slot is asked for before Proxmox is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_wait: Option<u32>,
    /// The VMID whose container this server knows it owns (it cloned it, or adopted it): a
    /// container of ours found at any other time is an adoption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_vmid: Option<u32>,
    /// A warm-pool member this server claimed (its VMID, now the reservation) whose pool
    /// marker is not yet rewritten to the server's: written by the claim's own transaction,
    /// cleared once the container carries the server's tag (docs/pools.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_claim: Option<u32>,
}

impl Progress {
    pub fn is_empty(&self) -> bool {
        *self == Progress::default()
    }
}

/// A terminal failure: retries are exhausted; it stays until the spec changes or on-call
/// forces a retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub step: String,
    pub message: String,
    pub at: DateTime<Utc>,
    /// The spec generation that failed; a newer generation clears the failure.
    pub generation: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Consecutive failed attempts of the current step.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight_task: Option<InFlightTask>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reconcile_at: Option<DateTime<Utc>>,
    /// When Ready first became True for the current generation (time-to-Ready metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Progress::is_empty")]
    pub progress: Progress,
    /// The restart requests (`spec.restarts`) already carried out.
    #[serde(default, skip_serializing_if = "Restarts::is_zero")]
    pub observed_restarts: Restarts,
}

impl ServerStatus {
    pub fn condition(&self, t: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == t)
    }

    pub fn is_true(&self, t: ConditionType) -> bool {
        self.condition(t)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// Set a condition, keeping `last_transition_time` when the status does not change
    /// (Kubernetes semantics). Returns whether anything changed.
    pub fn set_condition(
        &mut self,
        t: ConditionType,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
        now: DateTime<Utc>,
    ) -> bool {
        let message = message.into();
        match self.conditions.iter_mut().find(|c| c.type_ == t) {
            Some(c) => {
                let changed = c.status != status
                    || c.reason != reason
                    || c.message != message
                    || c.observed_generation != generation;
                if c.status != status {
                    c.last_transition_time = now;
                }
                c.status = status;
                c.reason = reason.into();
                c.message = message;
                c.observed_generation = generation;
                changed
            }
            None => {
                self.conditions.push(Condition {
                    type_: t,
                    status,
                    reason: reason.into(),
                    message,
                    last_transition_time: now,
                    observed_generation: generation,
                });
                self.conditions.sort_by_key(|c| c.type_ as u8);
                true
            }
        }
    }
}

/// A provisioning step, named as the Portal already knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    AllocateVmid,
    CloneContainer,
    ConfigureContainer,
    StartContainer,
    WaitForIp,
    SendAgentConfig,
    WaitForAgent,
    StartGame,
    StopGame,
    RestartGame,
    RestartContainer,
    PublishEdge,
    Teardown,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::AllocateVmid => "allocate-vmid",
            Step::CloneContainer => "clone-container",
            Step::ConfigureContainer => "configure-container",
            Step::StartContainer => "start-container",
            Step::WaitForIp => "wait-for-ip",
            Step::SendAgentConfig => "send-agent-config",
            Step::WaitForAgent => "wait-for-agent",
            Step::StartGame => "start-game",
            Step::StopGame => "stop-game",
            Step::RestartGame => "restart-game",
            Step::RestartContainer => "restart-container",
            Step::PublishEdge => "publish-edge",
            Step::Teardown => "teardown",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition reasons the phase derivation relies on (the controller uses the same constants).
pub mod reason {
    pub const CONFIGURING: &str = "Configuring";
    pub const CONFIG_SENT: &str = "ConfigSent";
    pub const INSTALLING: &str = "Installing";
    /// `ContainerRunning`: a reboot the spec asked for is under way.
    pub const REBOOTING: &str = "Rebooting";
    /// `ProcessRunning`: the spec stops the game, and it is stopped.
    pub const STOPPED_AS_ASKED: &str = "StoppedAsAsked";
    /// `ProcessRunning`: the game is being stopped as the spec asks.
    pub const GAME_STOPPING: &str = "GameStopping";
    /// `ProcessRunning`: a restart the spec asked for is under way.
    pub const RESTARTING: &str = "Restarting";
}

/// The Portal-facing summary of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Queued,
    Provisioning,
    Ready,
    Degraded,
    Failed,
    Deleting,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Queued,
        Phase::Provisioning,
        Phase::Ready,
        Phase::Degraded,
        Phase::Failed,
        Phase::Deleting,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Queued => "queued",
            Phase::Provisioning => "provisioning",
            Phase::Ready => "ready",
            Phase::Degraded => "degraded",
            Phase::Failed => "failed",
            Phase::Deleting => "deleting",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Phase::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown phase '{s}'"))
    }
}

impl ServerStatus {
    /// Derive the phase (and, while provisioning, the current step) from the conditions.
    /// `generation` is the spec's current generation: a status for an older generation is
    /// not Ready for this one.
    pub fn phase(&self, generation: i64, deleting: bool) -> (Phase, Option<Step>) {
        if deleting {
            return (Phase::Deleting, Some(Step::Teardown));
        }
        if let Some(f) = &self.failure
            && f.generation == generation
        {
            return (Phase::Failed, None);
        }
        if self.conditions.is_empty() {
            return (Phase::Queued, Some(Step::AllocateVmid));
        }
        let step = self.current_step();
        if self.is_true(ConditionType::Degraded) {
            return (Phase::Degraded, step);
        }
        let ready = self.condition(ConditionType::Ready).is_some_and(|c| {
            c.status == ConditionStatus::True && c.observed_generation == generation
        });
        if ready {
            return (Phase::Ready, None);
        }
        (Phase::Provisioning, Some(step.unwrap_or(Step::PublishEdge)))
    }

    /// The first step of the chain whose condition is not True.
    pub fn current_step(&self) -> Option<Step> {
        for t in ConditionType::CHAIN {
            let c = self.condition(t);
            if c.is_some_and(|c| c.status == ConditionStatus::True) {
                continue;
            }
            let reason = c.map(|c| c.reason.as_str()).unwrap_or("");
            return Some(match t {
                ConditionType::VmidAllocated => Step::AllocateVmid,
                ConditionType::ContainerCreated if reason == reason::CONFIGURING => {
                    Step::ConfigureContainer
                }
                ConditionType::ContainerCreated => Step::CloneContainer,
                ConditionType::ContainerRunning if reason == reason::REBOOTING => {
                    Step::RestartContainer
                }
                ConditionType::ContainerRunning => Step::StartContainer,
                ConditionType::NetworkReady => Step::WaitForIp,
                ConditionType::AgentReady
                    if reason == reason::CONFIG_SENT || reason == reason::INSTALLING =>
                {
                    Step::WaitForAgent
                }
                ConditionType::AgentReady => Step::SendAgentConfig,
                // Stopped as asked is where the spec wants it: no step.
                ConditionType::ProcessRunning if reason == reason::STOPPED_AS_ASKED => continue,
                ConditionType::ProcessRunning if reason == reason::GAME_STOPPING => Step::StopGame,
                ConditionType::ProcessRunning if reason == reason::RESTARTING => Step::RestartGame,
                ConditionType::ProcessRunning => Step::StartGame,
                ConditionType::DnsPublished | ConditionType::ProxyRegistered => Step::PublishEdge,
                ConditionType::Ready | ConditionType::Degraded => continue,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn phase_table() {
        use ConditionStatus::*;
        use ConditionType::*;
        type Case = (
            &'static str,
            &'static [(ConditionType, ConditionStatus, &'static str)],
            bool,
            Phase,
            Option<Step>,
        );
        let cases: &[Case] = &[
            (
                "no conditions yet means queued",
                &[],
                false,
                Phase::Queued,
                Some(Step::AllocateVmid),
            ),
            (
                "deletion wins over everything",
                &[(Ready, True, "Ready")],
                true,
                Phase::Deleting,
                Some(Step::Teardown),
            ),
            (
                "a clone in progress is clone-container",
                &[
                    (VmidAllocated, True, "Reserved"),
                    (ContainerCreated, False, "Cloning"),
                ],
                false,
                Phase::Provisioning,
                Some(Step::CloneContainer),
            ),
            (
                "configuring is its own step",
                &[
                    (VmidAllocated, True, "Reserved"),
                    (ContainerCreated, False, reason::CONFIGURING),
                ],
                false,
                Phase::Provisioning,
                Some(Step::ConfigureContainer),
            ),
            (
                "agent installing is wait-for-agent",
                &[
                    (VmidAllocated, True, ""),
                    (ContainerCreated, True, ""),
                    (ContainerRunning, True, ""),
                    (NetworkReady, True, ""),
                    (AgentReady, False, reason::INSTALLING),
                ],
                false,
                Phase::Provisioning,
                Some(Step::WaitForAgent),
            ),
            (
                "degraded is shown with the step it blocks",
                &[
                    (VmidAllocated, True, ""),
                    (ContainerCreated, False, "Cloning"),
                    (Degraded, True, "ProxmoxUnavailable"),
                ],
                false,
                Phase::Degraded,
                Some(Step::CloneContainer),
            ),
            (
                "ready for the current generation",
                &[(Ready, True, "Ready")],
                false,
                Phase::Ready,
                None,
            ),
        ];
        for (reason, conds, deleting, phase, step) in cases {
            let mut s = ServerStatus::default();
            for (t, st, r) in conds.iter() {
                s.set_condition(*t, *st, r, "", 1, t0());
            }
            assert_eq!(s.phase(1, *deleting), (*phase, *step), "{reason}");
        }
    }

    #[test]
    fn ready_for_an_older_generation_is_not_ready() {
        let mut s = ServerStatus::default();
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::True,
            "Ready",
            "",
            1,
            t0(),
        );
        assert_ne!(s.phase(2, false).0, Phase::Ready);
    }

    #[test]
    fn failure_is_cleared_by_a_new_generation() {
        let s = ServerStatus {
            failure: Some(Failure {
                step: "wait-for-agent".into(),
                message: "boom".into(),
                at: t0(),
                generation: 1,
            }),
            conditions: vec![],
            ..Default::default()
        };
        assert_eq!(s.phase(1, false).0, Phase::Failed);
        assert_eq!(s.phase(2, false).0, Phase::Queued);
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut s = ServerStatus::default();
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "A",
            "",
            1,
            t0(),
        );
        let later = t0() + chrono::Duration::seconds(5);
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            "B",
            "",
            1,
            later,
        );
        assert_eq!(
            s.condition(ConditionType::Ready)
                .unwrap()
                .last_transition_time,
            t0()
        );
        s.set_condition(
            ConditionType::Ready,
            ConditionStatus::True,
            "C",
            "",
            1,
            later,
        );
        assert_eq!(
            s.condition(ConditionType::Ready)
                .unwrap()
                .last_transition_time,
            later
        );
    }
}
