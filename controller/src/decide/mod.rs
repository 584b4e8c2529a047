//! The decision: (desired, observed) → the next action. Pure, so every rule of the reconcile
//! contract is a row in a table test.
//!
//! `decide` asks for observations lazily (`Action::Observe`): the reconciler fills the asked
//! layer and calls `decide` again, so a server only costs the calls its state needs. Nothing
//! here reads a stored phase; the only stored inputs are the in-flight task (what we are
//! waiting for), the attempt counter and the condition timestamps that bound waits.

use crate::config::ControllerSection;
use crate::reason as r;
use chrono::{DateTime, Utc};
use model::status::InFlightTask;
use model::{
    ConditionStatus, ConditionType, ErrorClass, Kind, Power, ServerId, ServerStatus, Step,
};

mod teardown;
pub use teardown::decide_teardown;

/// The tag and description line that mark a container as ours.
pub fn marker_tag(id: ServerId) -> String {
    format!("{MARKER_TAG_PREFIX}{}", id.0.hyphenated())
}
const MARKER_TAG_PREFIX: &str = "zlh-";
/// Whether `tags` hold `id`'s marker tag, without building it: the resync asks this of every
/// server each time.
pub fn has_marker_tag(tags: &[String], id: ServerId) -> bool {
    let mut buf = uuid::Uuid::encode_buffer();
    let want = id.0.hyphenated().encode_lower(&mut buf);
    tags.iter()
        .any(|t| t.strip_prefix(MARKER_TAG_PREFIX) == Some(want))
}
/// Tag on every container we create, so `cluster/resources` shows the fleet.
pub const FLEET_TAG: &str = "zlh";
pub const MARKER_PREFIX: &str = "zlh-server-id: ";
pub fn marker_line(id: ServerId) -> String {
    format!("{MARKER_PREFIX}{id}")
}

/// The server id named by a container's tags or description, if any.
pub fn marker_in(tags: &[String], description: &str) -> Option<String> {
    tags.iter()
        .find_map(|t| t.strip_prefix(MARKER_TAG_PREFIX).filter(|s| s.len() == 36))
        .map(str::to_string)
        .or_else(|| {
            description
                .lines()
                .find_map(|l| l.trim().strip_prefix(MARKER_PREFIX.trim_end()))
                .map(|s| s.trim().to_string())
        })
}

pub fn hostname(kind: Kind, variant: Option<model::Variant>, vmid: u32) -> String {
    match (kind, variant) {
        (Kind::Game, Some(v)) => format!("mc-{v}-{vmid}"),
        (Kind::Game, None) => format!("mc-{vmid}"),
        (Kind::Dev, _) => format!("dev-{vmid}"),
    }
}

/// What the spec asks for, resolved against config and the reservation.
#[derive(Debug, Clone)]
pub struct Desired {
    pub id: ServerId,
    pub kind: Kind,
    pub generation: i64,
    pub vmid: Option<u32>,
    /// `None`: the catalog does not offer this spec.
    pub template: Option<(String, u32)>,
    /// Where the container lives: the template's node, or where it was built.
    pub node: Option<String>,
    pub hostname: Option<String>,
    pub cores: u32,
    pub memory_mib: u32,
    pub swap_mib: u32,
    pub bridge: String,
    pub power: Power,
}

impl Desired {
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }
    pub fn needs_edge(&self) -> bool {
        self.kind == Kind::Game
    }
}

/// A backend that did not answer usefully: *unknown*, never absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub backend: &'static str,
    pub class: ErrorClass,
    pub message: String,
}

pub type Seen<T> = Result<T, Unavailable>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerObs {
    pub hostname: Option<String>,
    pub description: String,
    pub tags: Vec<String>,
    pub lock: Option<String>,
    pub cores: Option<u32>,
    pub memory_mib: Option<u32>,
    pub swap_mib: Option<u32>,
    pub bridge: Option<String>,
    /// Parsed from net0 as is, so a config write can keep the MAC.
    pub net0: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    Ours,
    Foreign,
}

impl ContainerObs {
    /// Rule 2: ours if it carries our tag, or (before the first config write) our
    /// description marker at our reserved VMID with the hostname we gave it.
    pub fn ownership(&self, d: &Desired) -> Ownership {
        if has_marker_tag(&self.tags, d.id) {
            return Ownership::Ours;
        }
        let line = marker_line(d.id);
        let described = self.description.lines().any(|l| l.trim() == line);
        if described && self.hostname.is_some() && self.hostname == d.hostname {
            Ownership::Ours
        } else {
            Ownership::Foreign
        }
    }

    /// What a config write must change; empty when in sync.
    pub fn diff(&self, d: &Desired) -> ConfigChange {
        let tag = marker_tag(d.id);
        ConfigChange {
            cores: (self.cores != Some(d.cores)).then_some(d.cores),
            memory_mib: (self.memory_mib != Some(d.memory_mib)).then_some(d.memory_mib),
            swap_mib: (self.swap_mib != Some(d.swap_mib)).then_some(d.swap_mib),
            bridge: (self.bridge.as_deref() != Some(d.bridge.as_str())).then(|| d.bridge.clone()),
            tags: (!self.tags.contains(&tag) || !self.tags.iter().any(|t| t == FLEET_TAG)).then(
                || {
                    let mut t = self.tags.clone();
                    for want in [FLEET_TAG.to_string(), tag] {
                        if !t.contains(&want) {
                            t.push(want);
                        }
                    }
                    t
                },
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigChange {
    pub cores: Option<u32>,
    pub memory_mib: Option<u32>,
    pub swap_mib: Option<u32>,
    pub bridge: Option<String>,
    pub tags: Option<Vec<String>>,
}

impl ConfigChange {
    pub fn is_empty(&self) -> bool {
        *self == ConfigChange::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerObs {
    Running,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskObs {
    Running,
    Succeeded,
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentObs {
    Idle,
    Installing,
    Running,
    Crashed,
    Error(String),
}

/// What has been observed so far in this reconcile; `None` = not asked yet.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub task: Option<Seen<TaskObs>>,
    /// `Ok(None)`: confirmed absent.
    pub container: Option<Seen<Option<ContainerObs>>>,
    pub power: Option<Seen<PowerObs>>,
    pub ip: Option<Seen<Option<String>>>,
    pub agent: Option<Seen<AgentObs>>,
    /// Every DNS provider has exactly the desired records.
    pub dns: Option<Seen<bool>>,
    pub proxy: Option<Seen<bool>>,
    /// The game answers a Server List Ping.
    pub slp: Option<Seen<bool>>,
    /// Is the template free for us to clone (the per-template clone slot)?
    pub clone_slot: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Task,
    Container,
    Power,
    Ip,
    Agent,
    Dns,
    Proxy,
    Slp,
    CloneSlot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Observe(Layer),
    ReserveVmid {
        replace: bool,
    },
    Clone,
    /// A task we started is still running: check again after `task_poll`.
    AwaitTask,
    /// The in-flight task finished OK: forget it and decide again.
    ClearTask,
    /// The in-flight task failed; record it (the container, if any, is gone or cleaned next).
    TaskFailed {
        action: String,
        message: String,
    },
    /// A failed clone left a container of ours behind: destroy it before retrying.
    DestroyFailedClone,
    Configure(ConfigChange),
    Start,
    Shutdown,
    SendAgentConfig,
    PublishDns,
    RegisterProxy,
    /// Nothing to do but wait (IP, Agent, lock, template): check again after `wait_poll`.
    Wait {
        step: Step,
        reason: &'static str,
        message: String,
    },
    /// A backend is failing transiently: Degraded, back off, destroy nothing.
    Degraded {
        step: Step,
        error: Unavailable,
    },
    /// Give up until the spec changes or a forced retry.
    Fail {
        step: Step,
        message: String,
    },
    Ready,
    // Teardown.
    Unregister,
    RemoveDns,
    Stop,
    Destroy,
    Archive,
}

pub type Cond = (ConditionType, ConditionStatus, &'static str, String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Conditions established by the layers evaluated on the way.
    pub conditions: Vec<Cond>,
}

/// Inputs from the stored status that bound waits and count attempts.
pub struct Context<'a> {
    pub status: &'a ServerStatus,
    pub now: DateTime<Utc>,
    pub timing: &'a ControllerSection,
}

impl Context<'_> {
    /// How long a condition has been False (the wait it represents), if it is False now.
    fn waiting_since(&self, t: ConditionType) -> Option<DateTime<Utc>> {
        self.status
            .condition(t)
            .filter(|c| c.status != ConditionStatus::True)
            .map(|c| c.last_transition_time)
    }

    /// Has the wait behind condition `t` lasted longer than `deadline`? The clock restarts
    /// when a backend recovers (Degraded → False), so an outage never turns into a failure.
    fn overdue(&self, t: ConditionType, deadline: std::time::Duration) -> bool {
        let recovered = self
            .status
            .condition(ConditionType::Degraded)
            .filter(|c| c.status == ConditionStatus::False)
            .map(|c| c.last_transition_time);
        self.waiting_since(t).is_some_and(|since| {
            let since = recovered.map_or(since, |r| r.max(since));
            (self.now - since).to_std().unwrap_or_default() > deadline
        })
    }
}

fn cond(t: ConditionType, ok: bool, reason: &'static str, msg: impl Into<String>) -> Cond {
    let s = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    (t, s, reason, msg.into())
}

pub(crate) struct Builder {
    conditions: Vec<Cond>,
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            conditions: Vec::new(),
        }
    }
    pub(crate) fn set(&mut self, c: Cond) {
        self.conditions.push(c);
    }
    pub(crate) fn done(self, action: Action) -> Decision {
        Decision {
            action,
            conditions: self.conditions,
        }
    }
}

/// Provisioning and drift repair for a live (not deleting, not paused) server.
pub fn decide(d: &Desired, o: &Observed, cx: &Context) -> Decision {
    use ConditionType as C;
    let mut b = Builder::new();
    let timing = cx.timing;

    // Allocate the VMID (rule 2: in the DB, before anything exists in Proxmox).
    let Some(vmid) = d.vmid else {
        b.set(cond(
            C::VmidAllocated,
            false,
            r::NOT_RESERVED,
            "reserving a VMID",
        ));
        return b.done(Action::ReserveVmid { replace: false });
    };
    b.set(cond(
        C::VmidAllocated,
        true,
        r::RESERVED,
        format!("VMID {vmid}"),
    ));

    // A task we started comes first (rule 3).
    let failed_task = match (&cx.status.in_flight_task, &o.task) {
        (None, _) => None,
        (Some(_), None) => return b.done(Action::Observe(Layer::Task)),
        (Some(_), Some(Err(e))) => return degraded(b, task_step(cx), e),
        (Some(t), Some(Ok(TaskObs::Running))) => {
            let deadline = match t.action.as_str() {
                TASK_CLONE => timing.clone_deadline,
                _ => timing.start_deadline,
            };
            if (cx.now - t.started_at).to_std().unwrap_or_default() > deadline {
                return b.done(Action::Fail {
                    step: task_step(cx),
                    message: format!(
                        "Proxmox task {} ({}) still running after {}",
                        t.upid,
                        t.action,
                        humantime::format_duration(deadline)
                    ),
                });
            }
            return b.done(Action::AwaitTask);
        }
        (Some(_), Some(Ok(TaskObs::Succeeded))) => return b.done(Action::ClearTask),
        (Some(t), Some(Ok(TaskObs::Failed(msg)))) => Some((t.clone(), msg.clone())),
    };

    // Installing: an Agent that answers proves the container runs and has its address, so
    // the Agent is asked first and Proxmox is not read on every poll of a long install. Any
    // other answer (or none) falls through to the full observation below.
    let installing = cx.status.is_true(C::ContainerRunning)
        && cx.status.is_true(C::NetworkReady)
        && cx.status.ip.is_some()
        && cx.status.condition(C::AgentReady).is_some_and(|c| {
            c.observed_generation == d.generation
                && (c.reason == r::INSTALLING || c.reason == r::CONFIG_SENT)
        });
    if installing && failed_task.is_none() && o.container.is_none() {
        match &o.agent {
            None => return b.done(Action::Observe(Layer::Agent)),
            Some(Ok(AgentObs::Installing)) if !cx.overdue(C::AgentReady, timing.agent_deadline) => {
                b.set(cond(C::AgentReady, false, r::INSTALLING, "installing"));
                return b.done(Action::Wait {
                    step: Step::WaitForAgent,
                    reason: r::INSTALLING,
                    message: "the Agent is installing".into(),
                });
            }
            Some(_) => {}
        }
    }

    // Waiting for the template: ask for it before reading anything from Proxmox, so a queue
    // of waiters costs the cluster nothing. (Only an optimisation: the container is still
    // observed before any clone.)
    let waiting_for_template = cx
        .status
        .condition(C::ContainerCreated)
        .is_some_and(|c| c.reason == r::WAITING_FOR_TEMPLATE);
    if waiting_for_template && failed_task.is_none() && o.container.is_none() {
        match o.clone_slot {
            None => return b.done(Action::Observe(Layer::CloneSlot)),
            Some(false) => {
                let tpl = d.template.as_ref().map(|t| t.1).unwrap_or_default();
                return b.done(Action::Wait {
                    step: Step::CloneContainer,
                    reason: r::WAITING_FOR_TEMPLATE,
                    message: format!("waiting for template {tpl}"),
                });
            }
            Some(true) => {}
        }
    }

    // The container at the reserved VMID.
    let Some(container) = &o.container else {
        return b.done(Action::Observe(Layer::Container));
    };
    let container = match container {
        Err(e) => return degraded(b, Step::CloneContainer, e),
        Ok(c) => c,
    };
    if let Some((task, msg)) = &failed_task {
        // A failed clone is cleaned up (ours, unlocked) before it is retried.
        if task.action == TASK_CLONE
            && let Some(c) = container
            && c.ownership(d) == Ownership::Ours
            && c.lock.is_none()
        {
            return b.done(Action::DestroyFailedClone);
        }
        return b.done(Action::TaskFailed {
            action: task.action.clone(),
            message: msg.clone(),
        });
    }
    let c = match container {
        None => {
            let Some((node, tpl)) = &d.template else {
                return b.done(Action::Fail {
                    step: Step::CloneContainer,
                    message: "no template in the catalog builds this spec".into(),
                });
            };
            match o.clone_slot {
                None => return b.done(Action::Observe(Layer::CloneSlot)),
                Some(false) => {
                    b.set(cond(
                        C::ContainerCreated,
                        false,
                        r::WAITING_FOR_TEMPLATE,
                        format!("template {tpl} on {node} is being cloned for another server"),
                    ));
                    return b.done(Action::Wait {
                        step: Step::CloneContainer,
                        reason: r::WAITING_FOR_TEMPLATE,
                        message: format!("waiting for template {tpl}"),
                    });
                }
                Some(true) => {
                    b.set(cond(
                        C::ContainerCreated,
                        false,
                        r::CLONING,
                        format!("cloning template {tpl} on {node}"),
                    ));
                    return b.done(Action::Clone);
                }
            }
        }
        Some(c) => c,
    };
    if c.ownership(d) == Ownership::Foreign {
        b.set(cond(
            C::VmidAllocated,
            false,
            r::NOT_RESERVED,
            format!("VMID {vmid} is taken by a container that is not ours"),
        ));
        return b.done(Action::ReserveVmid { replace: true });
    }
    if let Some(lock) = &c.lock {
        let reason = if lock == "create" {
            r::CLONING
        } else {
            r::LOCKED
        };
        b.set(cond(
            C::ContainerCreated,
            false,
            reason,
            format!("container {vmid} is locked ({lock})"),
        ));
        if lock == "create" && cx.overdue(C::ContainerCreated, timing.clone_deadline) {
            return b.done(Action::Fail {
                step: Step::CloneContainer,
                message: format!("container {vmid} still locked (create) past the clone deadline"),
            });
        }
        return b.done(Action::Wait {
            step: Step::CloneContainer,
            reason,
            message: format!("container is locked ({lock})"),
        });
    }
    let change = c.diff(d);
    if !change.is_empty() {
        b.set(cond(
            C::ContainerCreated,
            false,
            r::CONFIGURING,
            "applying cores, memory, network and tags",
        ));
        return b.done(Action::Configure(change));
    }
    b.set(cond(
        C::ContainerCreated,
        true,
        r::CREATED,
        format!("CT {vmid}"),
    ));

    // Power.
    let Some(power) = &o.power else {
        return b.done(Action::Observe(Layer::Power));
    };
    let power = match power {
        Err(e) => return degraded(b, Step::StartContainer, e),
        Ok(p) => *p,
    };
    match (d.power, power) {
        (Power::Stopped, PowerObs::Running) => {
            b.set(cond(
                C::ContainerRunning,
                false,
                r::STOPPING,
                "stopping as the spec asks",
            ));
            return b.done(Action::Shutdown);
        }
        (Power::Stopped, PowerObs::Stopped) => {
            b.set(cond(
                C::ContainerRunning,
                false,
                r::STOPPED,
                "stopped as the spec asks",
            ));
            b.set(cond(C::Ready, true, r::READY, "stopped as the spec asks"));
            return b.done(Action::Ready);
        }
        (Power::Running, PowerObs::Stopped) => {
            // A start that hangs is bounded by the task deadline, and a failed start task
            // counts as an attempt. Starting again here is also how drift is repaired.
            b.set(cond(C::ContainerRunning, false, r::STARTING, "starting"));
            return b.done(Action::Start);
        }
        (Power::Running, PowerObs::Running) => {
            b.set(cond(C::ContainerRunning, true, r::RUNNING, "running"));
        }
    }

    // Network.
    let Some(ip) = &o.ip else {
        return b.done(Action::Observe(Layer::Ip));
    };
    match ip {
        Err(e) => return degraded(b, Step::WaitForIp, e),
        Ok(None) => {
            if cx.overdue(C::NetworkReady, timing.ip_deadline) {
                return b.done(Action::Fail {
                    step: Step::WaitForIp,
                    message: "no IPv4 address before the deadline".into(),
                });
            }
            b.set(cond(
                C::NetworkReady,
                false,
                r::WAITING_FOR_IP,
                "waiting for an address",
            ));
            return b.done(Action::Wait {
                step: Step::WaitForIp,
                reason: r::WAITING_FOR_IP,
                message: "waiting for an IPv4 address".into(),
            });
        }
        Ok(Some(ip)) => b.set(cond(C::NetworkReady, true, r::HAS_IP, ip.clone())),
    }

    // Agent.
    let Some(agent) = &o.agent else {
        return b.done(Action::Observe(Layer::Agent));
    };
    match agent {
        Err(e) if e.class == ErrorClass::Transient => {
            // Right after a start the Agent is not listening yet: that is a wait with a
            // deadline, not an outage.
            if cx.overdue(C::AgentReady, timing.agent_deadline) {
                return b.done(Action::Fail {
                    step: Step::WaitForAgent,
                    message: format!("Agent unreachable: {}", e.message),
                });
            }
            if cx.status.is_true(C::AgentReady) {
                return degraded(b, Step::WaitForAgent, e);
            }
            b.set(cond(
                C::AgentReady,
                false,
                r::AGENT_STARTING,
                e.message.clone(),
            ));
            return b.done(Action::Wait {
                step: Step::WaitForAgent,
                reason: r::AGENT_STARTING,
                message: "waiting for the Agent to answer".into(),
            });
        }
        Err(e) => {
            return b.done(Action::Fail {
                step: Step::SendAgentConfig,
                message: format!("Agent refused: {}", e.message),
            });
        }
        Ok(AgentObs::Idle) => {
            b.set(cond(
                C::AgentReady,
                false,
                r::CONFIG_SENT,
                "sending the Agent its config",
            ));
            return b.done(Action::SendAgentConfig);
        }
        Ok(AgentObs::Installing) => {
            if cx.overdue(C::AgentReady, timing.agent_deadline) {
                return b.done(Action::Fail {
                    step: Step::WaitForAgent,
                    message: "Agent install did not finish before the deadline".into(),
                });
            }
            b.set(cond(C::AgentReady, false, r::INSTALLING, "installing"));
            return b.done(Action::Wait {
                step: Step::WaitForAgent,
                reason: r::INSTALLING,
                message: "the Agent is installing".into(),
            });
        }
        Ok(AgentObs::Error(_)) | Ok(AgentObs::Crashed) => {
            let msg = match agent {
                Ok(AgentObs::Error(m)) => m.clone(),
                _ => "the server process crashed".into(),
            };
            b.set(cond(C::AgentReady, false, r::AGENT_ERROR, msg.clone()));
            if cx.status.attempts + 1 >= timing.agent_attempts {
                return b.done(Action::Fail {
                    step: Step::WaitForAgent,
                    message: msg,
                });
            }
            // Retried in place: the same config again.
            return b.done(Action::SendAgentConfig);
        }
        Ok(_) => b.set(cond(C::AgentReady, true, r::AGENT_RUNNING, "running")),
    }

    if !d.needs_edge() {
        for t in [C::DnsPublished, C::ProxyRegistered] {
            b.set(cond(
                t,
                true,
                r::NOT_REQUIRED,
                "dev containers are not published",
            ));
        }
        b.set(cond(C::Ready, true, r::READY, "ready"));
        return b.done(Action::Ready);
    }

    // Edge: DNS, proxy, then a real connectability check.
    let Some(dns) = &o.dns else {
        return b.done(Action::Observe(Layer::Dns));
    };
    match dns {
        Err(e) => return degraded(b, Step::PublishEdge, e),
        Ok(false) => {
            b.set(cond(
                C::DnsPublished,
                false,
                r::NOT_PUBLISHED,
                "publishing A and SRV records",
            ));
            return b.done(Action::PublishDns);
        }
        Ok(true) => b.set(cond(
            C::DnsPublished,
            true,
            r::PUBLISHED,
            "A and SRV records in place",
        )),
    }
    let Some(proxy) = &o.proxy else {
        return b.done(Action::Observe(Layer::Proxy));
    };
    match proxy {
        Err(e) => return degraded(b, Step::PublishEdge, e),
        Ok(false) => {
            b.set(cond(
                C::ProxyRegistered,
                false,
                r::NOT_REGISTERED,
                "registering with the proxy",
            ));
            return b.done(Action::RegisterProxy);
        }
        Ok(true) => b.set(cond(C::ProxyRegistered, true, r::REGISTERED, "registered")),
    }
    let Some(slp) = &o.slp else {
        return b.done(Action::Observe(Layer::Slp));
    };
    match slp {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let msg = match slp {
                Err(e) => e.message.clone(),
                _ => "no Server List Ping answer".into(),
            };
            b.set(cond(C::Ready, false, r::NOT_CONNECTABLE, msg.clone()));
            return b.done(Action::Wait {
                step: Step::PublishEdge,
                reason: r::NOT_CONNECTABLE,
                message: msg,
            });
        }
    }
    b.set(cond(C::Ready, true, r::READY, "ready"));
    b.done(Action::Ready)
}

pub const TASK_CLONE: &str = "clone";
pub const TASK_START: &str = "start";
pub const TASK_SHUTDOWN: &str = "shutdown";
pub const TASK_STOP: &str = "stop";
pub const TASK_DESTROY: &str = "destroy";

fn task_step(cx: &Context) -> Step {
    match cx
        .status
        .in_flight_task
        .as_ref()
        .map(|t: &InFlightTask| t.action.as_str())
    {
        Some(TASK_CLONE) | Some(TASK_DESTROY) => Step::CloneContainer,
        _ => Step::StartContainer,
    }
}

pub(crate) fn degraded(mut b: Builder, step: Step, e: &Unavailable) -> Decision {
    b.set((
        ConditionType::Degraded,
        ConditionStatus::True,
        degraded_reason(e.backend),
        format!("{}: {}", e.backend, e.message),
    ));
    b.done(Action::Degraded {
        step,
        error: e.clone(),
    })
}

pub fn degraded_reason(backend: &str) -> &'static str {
    match backend {
        "proxmox" => r::PROXMOX_UNAVAILABLE,
        "agent" => r::AGENT_UNAVAILABLE,
        "velocity" => r::PROXY_UNAVAILABLE,
        _ => r::DNS_UNAVAILABLE,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use model::ServerStatus;
    use model::status::InFlightTask;

    pub(crate) fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    pub(crate) fn id() -> ServerId {
        "0190f0f0-0000-7000-8000-000000000001".parse().unwrap()
    }

    pub(crate) fn desired() -> Desired {
        Desired {
            id: id(),
            kind: Kind::Game,
            generation: 1,
            vmid: Some(5001),
            template: Some(("pve".into(), 900)),
            node: Some("pve".into()),
            hostname: Some("mc-paper-5001".into()),
            cores: 2,
            memory_mib: 2048,
            swap_mib: 512,
            bridge: "vmbr3".into(),
            power: Power::Running,
        }
    }

    pub(crate) fn ours() -> ContainerObs {
        ContainerObs {
            hostname: Some("mc-paper-5001".into()),
            description: format!("{}\n", marker_line(id())),
            tags: vec![FLEET_TAG.into(), marker_tag(id())],
            lock: None,
            cores: Some(2),
            memory_mib: Some(2048),
            swap_mib: Some(512),
            bridge: Some("vmbr3".into()),
            net0: None,
        }
    }

    pub(crate) fn down() -> Unavailable {
        Unavailable {
            backend: "proxmox",
            class: ErrorClass::Transient,
            message: "failed to read from command socket: Connection reset by peer".into(),
        }
    }

    /// Everything observed and healthy: a Ready game server.
    pub(crate) fn all_good() -> Observed {
        Observed {
            task: None,
            container: Some(Ok(Some(ours()))),
            power: Some(Ok(PowerObs::Running)),
            ip: Some(Ok(Some("127.1.19.137".into()))),
            agent: Some(Ok(AgentObs::Running)),
            dns: Some(Ok(true)),
            proxy: Some(Ok(true)),
            slp: Some(Ok(true)),
            clone_slot: None,
        }
    }

    pub(crate) fn task(action: &str, started: DateTime<Utc>) -> InFlightTask {
        InFlightTask {
            upid: "UPID:pve:00001234:00ABCDEF:65000000:vzclone:900:zlh@pve!ctl:".into(),
            action: action.into(),
            started_at: started,
        }
    }

    pub(crate) struct Case {
        pub reason: &'static str,
        pub desired: fn(&mut Desired),
        pub observed: fn(&mut Observed),
        pub status: fn(&mut ServerStatus),
        pub want: Action,
    }

    pub(crate) fn none(_: &mut Desired) {}
    pub(crate) fn no_obs(_: &mut Observed) {}
    pub(crate) fn no_status(_: &mut ServerStatus) {}

    /// Each case starts from a healthy game server (`desired`, `all_good`, empty status),
    /// applies its changes, and checks the decided action.
    pub(crate) fn run_table(
        cases: Vec<Case>,
        decide: fn(&Desired, &Observed, &Context) -> Decision,
    ) {
        let timing = ControllerSection::default();
        for c in cases {
            let mut d = desired();
            (c.desired)(&mut d);
            let mut o = all_good();
            (c.observed)(&mut o);
            let mut s = ServerStatus::default();
            (c.status)(&mut s);
            let cx = Context {
                status: &s,
                now: t0(),
                timing: &timing,
            };
            assert_eq!(decide(&d, &o, &cx).action, c.want, "{}", c.reason);
        }
    }

    fn waiting_for_template(s: &mut ServerStatus) {
        s.set_condition(
            ConditionType::ContainerCreated,
            ConditionStatus::False,
            r::WAITING_FOR_TEMPLATE,
            "",
            1,
            t0(),
        );
    }

    /// Provisioned up to the Agent, which is installing.
    fn installing(s: &mut ServerStatus) {
        for t in [ConditionType::ContainerRunning, ConditionType::NetworkReady] {
            s.set_condition(t, ConditionStatus::True, "", "", 1, t0());
        }
        s.set_condition(
            ConditionType::AgentReady,
            ConditionStatus::False,
            r::INSTALLING,
            "",
            1,
            t0(),
        );
        s.ip = Some("127.1.19.137".into());
    }

    #[test]
    fn provisioning_table() {
        let cases = vec![
            Case { reason: "no reservation: reserve a VMID before anything exists in Proxmox", desired: |d| d.vmid = None, observed: no_obs, status: no_status, want: Action::ReserveVmid { replace: false } },
            Case { reason: "the container is observed before anything is done to it", desired: none, observed: |o| o.container = None, status: no_status, want: Action::Observe(Layer::Container) },
            Case { reason: "a transient error is unknown, not absent: degrade, never clone", desired: none, observed: |o| o.container = Some(Err(down())), status: no_status, want: Action::Degraded { step: Step::CloneContainer, error: down() } },
            Case { reason: "confirmed absent: ask for the template slot first", desired: none, observed: |o| o.container = Some(Ok(None)), status: no_status, want: Action::Observe(Layer::CloneSlot) },
            Case { reason: "confirmed absent and the template is free: clone", desired: none, observed: |o| { o.container = Some(Ok(None)); o.clone_slot = Some(true) }, status: no_status, want: Action::Clone },
            Case { reason: "the template is being cloned for another server: wait, do not collect lock errors", desired: none, observed: |o| { o.container = Some(Ok(None)); o.clone_slot = Some(false) }, status: no_status, want: Action::Wait { step: Step::CloneContainer, reason: r::WAITING_FOR_TEMPLATE, message: "waiting for template 900".into() } },
            Case {
                reason: "a server waiting for its template asks for it before reading Proxmox",
                desired: none,
                observed: |o| o.container = None,
                status: waiting_for_template,
                want: Action::Observe(Layer::CloneSlot),
            },
            Case {
                reason: "still no template: wait without any Proxmox call",
                desired: none,
                observed: |o| {
                    o.container = None;
                    o.clone_slot = Some(false)
                },
                status: waiting_for_template,
                want: Action::Wait { step: Step::CloneContainer, reason: r::WAITING_FOR_TEMPLATE, message: "waiting for template 900".into() },
            },
            Case {
                reason: "the template is ours now: the container is observed before any clone",
                desired: none,
                observed: |o| {
                    o.container = None;
                    o.clone_slot = Some(true)
                },
                status: waiting_for_template,
                want: Action::Observe(Layer::Container),
            },
            Case {
                reason: "during a long install the Agent is asked first, without reading Proxmox",
                desired: none,
                observed: |o| *o = Observed::default(),
                status: installing,
                want: Action::Observe(Layer::Agent),
            },
            Case {
                reason: "still installing: wait, Proxmox untouched",
                desired: none,
                observed: |o| {
                    *o = Observed::default();
                    o.agent = Some(Ok(AgentObs::Installing))
                },
                status: installing,
                want: Action::Wait { step: Step::WaitForAgent, reason: r::INSTALLING, message: "the Agent is installing".into() },
            },
            Case {
                reason: "an Agent that does not answer during install: the container is looked at again",
                desired: none,
                observed: |o| {
                    *o = Observed::default();
                    o.agent = Some(Err(down()))
                },
                status: installing,
                want: Action::Observe(Layer::Container),
            },
            Case { reason: "no template offers the spec: fail visibly", desired: |d| d.template = None, observed: |o| o.container = Some(Ok(None)), status: no_status, want: Action::Fail { step: Step::CloneContainer, message: "no template in the catalog builds this spec".into() } },
            Case { reason: "someone else's container at our VMID: reserve another, never touch it", desired: none, observed: |o| o.container = Some(Ok(Some(ContainerObs { hostname: Some("legacy".into()), description: String::new(), tags: vec![], ..ours() }))), status: no_status, want: Action::ReserveVmid { replace: true } },
            Case { reason: "our description marker but another hostname is not proof of ownership", desired: none, observed: |o| o.container = Some(Ok(Some(ContainerObs { hostname: Some("other".into()), tags: vec![], ..ours() }))), status: no_status, want: Action::ReserveVmid { replace: true } },
            Case { reason: "adoption after a crash between clone and record: marker + hostname at our VMID, still cloning → wait", desired: none, observed: |o| o.container = Some(Ok(Some(ContainerObs { tags: vec![], lock: Some("create".into()), ..ours() }))), status: no_status, want: Action::Wait { step: Step::CloneContainer, reason: r::CLONING, message: "container is locked (create)".into() } },
            Case { reason: "adoption: our untagged clone is configured (tags added), not re-cloned", desired: none, observed: |o| o.container = Some(Ok(Some(ContainerObs { tags: vec![], cores: Some(1), ..ours() }))), status: no_status, want: Action::Configure(ConfigChange { cores: Some(2), tags: Some(vec![FLEET_TAG.into(), marker_tag(id())]), ..Default::default() }) },
            Case { reason: "resource drift or a spec change is applied", desired: |d| d.memory_mib = 4096, observed: no_obs, status: no_status, want: Action::Configure(ConfigChange { memory_mib: Some(4096), ..Default::default() }) },
            Case { reason: "a running task is waited for, not re-issued", desired: none, observed: |o| o.task = Some(Ok(TaskObs::Running)), status: |s| s.in_flight_task = Some(task(TASK_CLONE, t0())), want: Action::AwaitTask },
            Case { reason: "a task is checked before anything else", desired: none, observed: no_obs, status: |s| s.in_flight_task = Some(task(TASK_CLONE, t0())), want: Action::Observe(Layer::Task) },
            Case { reason: "a finished task is forgotten and the next step decided", desired: none, observed: |o| o.task = Some(Ok(TaskObs::Succeeded)), status: |s| s.in_flight_task = Some(task(TASK_START, t0())), want: Action::ClearTask },
            Case { reason: "a task past its deadline fails visibly", desired: none, observed: |o| o.task = Some(Ok(TaskObs::Running)), status: |s| s.in_flight_task = Some(task(TASK_CLONE, t0() - chrono::Duration::hours(2))), want: Action::Fail { step: Step::CloneContainer, message: "Proxmox task UPID:pve:00001234:00ABCDEF:65000000:vzclone:900:zlh@pve!ctl: (clone) still running after 30m".into() } },
            Case { reason: "a failed clone that left our container behind is cleaned up first", desired: none, observed: |o| o.task = Some(Ok(TaskObs::Failed("clone failed: disk full".into()))), status: |s| s.in_flight_task = Some(task(TASK_CLONE, t0())), want: Action::DestroyFailedClone },
            Case { reason: "a failed clone with nothing left is recorded and retried later", desired: none, observed: |o| { o.task = Some(Ok(TaskObs::Failed("clone failed: disk full".into()))); o.container = Some(Ok(None)) }, status: |s| s.in_flight_task = Some(task(TASK_CLONE, t0())), want: Action::TaskFailed { action: TASK_CLONE.into(), message: "clone failed: disk full".into() } },
            Case { reason: "a failed clone never destroys a container that is not ours", desired: none, observed: |o| { o.task = Some(Ok(TaskObs::Failed("x".into()))); o.container = Some(Ok(Some(ContainerObs { tags: vec![], description: String::new(), ..ours() }))) }, status: |s| s.in_flight_task = Some(task(TASK_CLONE, t0())), want: Action::TaskFailed { action: TASK_CLONE.into(), message: "x".into() } },
            Case { reason: "a task status that cannot be read is unknown: degrade", desired: none, observed: |o| o.task = Some(Err(down())), status: |s| s.in_flight_task = Some(task(TASK_START, t0())), want: Action::Degraded { step: Step::StartContainer, error: down() } },
            Case { reason: "stopped but the spec says running: start (drift repair too)", desired: none, observed: |o| o.power = Some(Ok(PowerObs::Stopped)), status: no_status, want: Action::Start },
            Case { reason: "power state unknown: degrade, do not start blindly", desired: none, observed: |o| o.power = Some(Err(down())), status: no_status, want: Action::Degraded { step: Step::StartContainer, error: down() } },
            Case { reason: "the spec says stopped: shut down", desired: |d| d.power = Power::Stopped, observed: no_obs, status: no_status, want: Action::Shutdown },
            Case { reason: "stopped as asked is Ready", desired: |d| d.power = Power::Stopped, observed: |o| o.power = Some(Ok(PowerObs::Stopped)), status: no_status, want: Action::Ready },
            Case { reason: "no address yet: wait", desired: none, observed: |o| o.ip = Some(Ok(None)), status: no_status, want: Action::Wait { step: Step::WaitForIp, reason: r::WAITING_FOR_IP, message: "waiting for an IPv4 address".into() } },
            Case { reason: "the IP wait has a deadline", desired: none, observed: |o| o.ip = Some(Ok(None)), status: |s| { s.set_condition(ConditionType::NetworkReady, ConditionStatus::False, r::WAITING_FOR_IP, "", 1, t0() - chrono::Duration::hours(1)); }, want: Action::Fail { step: Step::WaitForIp, message: "no IPv4 address before the deadline".into() } },
            Case { reason: "an idle Agent gets its config", desired: none, observed: |o| o.agent = Some(Ok(AgentObs::Idle)), status: no_status, want: Action::SendAgentConfig },
            Case { reason: "an Agent back to idle after a container restart gets its config again", desired: none, observed: |o| o.agent = Some(Ok(AgentObs::Idle)), status: |s| { s.set_condition(ConditionType::Ready, ConditionStatus::True, r::READY, "", 1, t0()); }, want: Action::SendAgentConfig },
            Case { reason: "an installing Agent is waited for", desired: none, observed: |o| o.agent = Some(Ok(AgentObs::Installing)), status: no_status, want: Action::Wait { step: Step::WaitForAgent, reason: r::INSTALLING, message: "the Agent is installing".into() } },
            Case { reason: "an Agent error is retried in place while attempts remain", desired: none, observed: |o| o.agent = Some(Ok(AgentObs::Error("download failed".into()))), status: no_status, want: Action::SendAgentConfig },
            Case { reason: "an Agent error after the last attempt fails with the step and message", desired: none, observed: |o| o.agent = Some(Ok(AgentObs::Error("download failed".into()))), status: |s| s.attempts = 2, want: Action::Fail { step: Step::WaitForAgent, message: "download failed".into() } },
            Case { reason: "an Agent not answering right after start is a wait", desired: none, observed: |o| o.agent = Some(Err(Unavailable { backend: "agent", class: ErrorClass::Transient, message: "connection refused".into() })), status: no_status, want: Action::Wait { step: Step::WaitForAgent, reason: r::AGENT_STARTING, message: "waiting for the Agent to answer".into() } },
            Case { reason: "missing DNS records are published", desired: none, observed: |o| o.dns = Some(Ok(false)), status: no_status, want: Action::PublishDns },
            Case { reason: "DNS unreachable degrades, the server keeps running", desired: none, observed: |o| o.dns = Some(Err(Unavailable { backend: "cloudflare", class: ErrorClass::Transient, message: "429".into() })), status: no_status, want: Action::Degraded { step: Step::PublishEdge, error: Unavailable { backend: "cloudflare", class: ErrorClass::Transient, message: "429".into() } } },
            Case { reason: "a proxy that forgot the registration (restart) gets it again", desired: none, observed: |o| o.proxy = Some(Ok(false)), status: no_status, want: Action::RegisterProxy },
            Case { reason: "not connectable yet is a wait, not Ready", desired: none, observed: |o| o.slp = Some(Ok(false)), status: no_status, want: Action::Wait { step: Step::PublishEdge, reason: r::NOT_CONNECTABLE, message: "no Server List Ping answer".into() } },
            Case { reason: "everything in place is Ready", desired: none, observed: no_obs, status: no_status, want: Action::Ready },
            Case { reason: "dev containers are Ready without edge steps", desired: |d| { d.kind = Kind::Dev; d.bridge = "vmbr3".into() }, observed: |o| { o.dns = None; o.proxy = None; o.slp = None }, status: no_status, want: Action::Ready },
        ];
        run_table(cases, decide);
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(marker_in(&[marker_tag(id())], ""), Some(id().to_string()));
        assert!(has_marker_tag(&["zlh".into(), marker_tag(id())], id()));
        let other = ServerId(uuid::Uuid::now_v7());
        assert!(
            !has_marker_tag(&[marker_tag(other)], id()),
            "another server's marker is not ours"
        );
        assert_eq!(
            marker_in(&[], &format!("{}\n", marker_line(id()))),
            Some(id().to_string())
        );
        assert_eq!(marker_in(&["zlh".into()], "hello"), None);
    }
}
