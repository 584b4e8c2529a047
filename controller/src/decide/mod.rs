//! The decision: (desired, observed, stored inputs) → the next action. Pure, so every rule of
//! the reconcile contract (docs/reconcile-contract.md) is a row in a table test.
//!
//! `decide` asks for observations lazily ([`Control::Observe`]): the reconcile fills the
//! asked layer and calls `decide` again, so a server only costs the calls its state needs.
//! It is a chain of named layers (`provision.rs`), each of which either lets the chain go on
//! or ends it with an [`Action`], as the Cluster API Proxmox provider's `ReconcileVM` chains
//! its steps. Deletion has its own chain (`teardown.rs`).
//!
//! Nothing here reads a stored phase or a condition's reason. The stored inputs are exactly:
//! the in-flight Proxmox task, the attempt counter, the recorded progress
//! (`ServerStatus.progress`: an Agent install or a template wait in progress), the restarts
//! already carried out (`observed_restarts`), whether an IP is recorded, whether a condition
//! is True, and when a condition last changed (which bounds every wait).

use crate::config::ControllerSection;
use crate::ownership::{FLEET_TAG, marker_tag};
use crate::reason::Reason;
use chrono::{DateTime, Utc};
use model::{
    ConditionStatus, ConditionType, Kind, Power, Process, Restarts, ServerId, ServerStatus, Step,
    TaskKind,
};
use std::ops::ControlFlow;

mod observed;
mod provision;
mod teardown;

pub use observed::{
    AgentObs, ContainerObs, EdgeObs, Layer, Observed, PowerObs, ProcessObs, Seen, TaskObs,
    Unavailable,
};
pub use teardown::decide_teardown;

/// What the spec asks for, resolved against config and the reservation.
#[derive(Debug, Clone)]
pub struct Desired {
    pub id: ServerId,
    pub kind: Kind,
    pub generation: i64,
    pub vmid: Option<u32>,
    /// `(node, template VMID)`; `None`: the catalog does not offer this spec.
    pub template: Option<(String, u32)>,
    /// How the template is cloned, and the target storage of a full clone.
    pub clone_mode: model::CloneMode,
    pub clone_storage: Option<String>,
    /// Where the container lives: the template's node, or where it was built.
    pub node: Option<String>,
    pub hostname: Option<String>,
    /// The warm-pool member this server claimed (its VMID) while its pool marker is not yet
    /// rewritten (`status.progress.pool_claim`, written by the claim's transaction).
    pub pool_claim: Option<u32>,
    pub cores: u32,
    pub memory_mib: u32,
    pub swap_mib: u32,
    /// The rootfs size the spec asks for (grown to it, never shrunk).
    pub disk_gib: u32,
    pub bridge: String,
    pub power: Power,
    /// The game process (a dev container's always runs).
    pub process: Process,
    /// Restart requests (`spec.restarts`); `status.observed_restarts` says which are done.
    pub restarts: Restarts,
}

impl Desired {
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }
    pub fn needs_edge(&self) -> bool {
        self.kind == Kind::Game
    }
    pub fn template_vmid(&self) -> Option<u32> {
        self.template.as_ref().map(|t| t.1)
    }

    /// A new server: no record of a container (a clone sent records `owned_vmid` with it),
    /// nothing further than a clone ever decided (`ContainerCreated` absent, or False waiting
    /// for the template or cloning). A claimed pool member is already there. Only a
    /// shortcut's condition: a record lost in a crash makes a server look new, and what is
    /// done for one (`template_first`, the presumed absence before the clone) stays correct
    /// for a container that exists.
    pub fn is_new(&self, s: &model::ServerStatus) -> bool {
        use crate::reason as r;
        let cloning_at_most = s
            .condition(model::ConditionType::ContainerCreated)
            .is_none_or(|c| {
                c.status == model::ConditionStatus::False
                    && [r::WAITING_FOR_TEMPLATE, r::CLONING]
                        .iter()
                        .any(|w| c.reason == w.as_str())
            });
        s.progress.owned_vmid.is_none()
            && self.pool_claim.is_none()
            && s.in_flight_task.is_none()
            && cloning_at_most
    }

    /// The last decision on this generation, made on reads of its own, found the config as
    /// the spec asks and grew the disk (`ContainerCreated` False `ResizingDisk` for it): only
    /// the disk size and the lock are left to look at (`observe`, the read after a resize).
    pub fn resize_decided(&self, s: &model::ServerStatus) -> bool {
        s.in_flight_task.is_none()
            && self.created_condition(s).is_some_and(|c| {
                c.status == model::ConditionStatus::False
                    && c.reason == crate::reason::RESIZING_DISK.as_str()
            })
    }

    /// A read of its own found the container built as this generation asks
    /// (`ContainerCreated` True for it).
    pub fn built(&self, s: &model::ServerStatus) -> bool {
        self.created_condition(s)
            .is_some_and(|c| c.status == model::ConditionStatus::True)
    }

    /// `ContainerCreated`, as last decided for this generation.
    fn created_condition<'s>(&self, s: &'s model::ServerStatus) -> Option<&'s model::Condition> {
        s.condition(model::ConditionType::ContainerCreated)
            .filter(|c| c.observed_generation == self.generation)
    }
}

/// What the reconcile does next without changing the world: look, wait, record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Fill this layer of `Observed` and decide again.
    Observe(Layer),
    /// Reserve a VMID in the store (`replace`: the reserved one holds a container not ours).
    ReserveVmid { replace: bool },
    /// A task we started is still running: check again after `task_poll`.
    AwaitTask,
    /// The in-flight task finished OK: forget it and decide again.
    ClearTask,
    /// The in-flight task failed; record it (the container, if any, is gone or cleaned next).
    TaskFailed { kind: TaskKind, message: String },
    /// Nothing to do but wait (IP, Agent, lock, template).
    Wait {
        step: Step,
        reason: Reason,
        message: String,
    },
    /// A backend is failing: Degraded, back off, destroy nothing.
    Degraded { step: Step, error: Unavailable },
    /// Give up until the spec changes or a forced retry.
    Fail { step: Step, message: String },
    /// The world matches the spec.
    Ready,
    /// Teardown is complete: archive the row.
    Archive,
}

/// The calls that change the world: each is made by `reconcile::act`, once per decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Clone,
    /// A claimed warm-pool member still carries the pool's marker: rewrite it to this
    /// server's (description, hostname, tags) before anything else touches the container.
    ClaimMarker,
    /// A failed clone left a container of ours behind: destroy it before retrying.
    DestroyFailedClone,
    Configure(ConfigChange),
    /// Grow the rootfs to this many GiB (a Proxmox task).
    ResizeDisk {
        from_gib: u32,
        to_gib: u32,
    },
    Start,
    Shutdown,
    /// Reboot the container (a restart the spec asks for).
    Reboot,
    SendAgentConfig,
    /// The game process, through the Agent.
    StartGame,
    StopGame,
    RestartGame,
    PublishDns,
    RegisterProxy,
    // Teardown.
    Unregister,
    RemoveDns,
    Stop,
    Destroy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Control(Control),
    Mutate(Mutation),
}

/// A condition `decide` establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: ConditionType,
    pub status: ConditionStatus,
    pub reason: Reason,
    pub message: String,
}

impl Cond {
    pub fn new(type_: ConditionType, ok: bool, reason: Reason, message: impl Into<String>) -> Cond {
        let status = if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        Cond {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Conditions established by the layers evaluated on the way.
    pub conditions: Vec<Cond>,
}

/// The inputs `decide` takes from the stored status and the clock.
pub struct Inputs<'a> {
    pub status: &'a ServerStatus,
    pub now: DateTime<Utc>,
    pub timing: &'a ControllerSection,
}

impl Inputs<'_> {
    /// A game restart is asked for and not yet carried out.
    fn game_restart_due(&self, d: &Desired) -> bool {
        d.restarts.game > self.status.observed_restarts.game
    }

    /// A container reboot is asked for and not yet carried out.
    fn container_restart_due(&self, d: &Desired) -> bool {
        d.restarts.container > self.status.observed_restarts.container
    }

    /// Has the wait behind condition `t` (False since its last transition) lasted longer than
    /// `deadline`? The clock restarts when a backend recovers (Degraded → False), so an
    /// outage never turns into a failure.
    fn overdue(&self, t: ConditionType, deadline: std::time::Duration) -> bool {
        let recovered = self
            .status
            .condition(ConditionType::Degraded)
            .filter(|c| c.status == ConditionStatus::False)
            .map(|c| c.last_transition_time);
        let waiting_since = self
            .status
            .condition(t)
            .filter(|c| c.status != ConditionStatus::True)
            .map(|c| c.last_transition_time);
        waiting_since.is_some_and(|since| {
            let since = recovered.map_or(since, |r| r.max(since));
            (self.now - since).to_std().unwrap_or_default() > deadline
        })
    }

    fn in_flight(&self) -> Option<&model::status::InFlightTask> {
        self.status.in_flight_task.as_ref()
    }
}

/// A layer's answer: go on (with what it learned), or stop here with an action.
type Flow<T = ()> = ControlFlow<Action, T>;

/// The conditions established so far.
#[derive(Default)]
struct Conds(Vec<Cond>);

impl Conds {
    fn set(&mut self, t: ConditionType, ok: bool, reason: Reason, msg: impl Into<String>) {
        self.0.push(Cond::new(t, ok, reason, msg));
    }

    /// Stop with `Degraded`: the backend behind `e` is failing.
    fn degraded<T>(&mut self, step: Step, e: &Unavailable) -> Flow<T> {
        self.0.push(Cond {
            type_: ConditionType::Degraded,
            status: ConditionStatus::True,
            reason: e.backend.degraded_reason(),
            message: format!("{}: {}", e.backend, e.message),
        });
        stop(Control::Degraded {
            step,
            error: e.clone(),
        })
    }

    /// The fact a layer reports, or stop: ask for it if not observed yet, Degraded if the
    /// backend could not tell.
    fn known<'o, T>(&mut self, seen: &'o Option<Seen<T>>, layer: Layer, step: Step) -> Flow<&'o T> {
        match asked(seen, layer)? {
            Ok(v) => ControlFlow::Continue(v),
            Err(e) => self.degraded(step, e),
        }
    }
}

fn stop<T>(c: Control) -> Flow<T> {
    ControlFlow::Break(Action::Control(c))
}

fn mutate<T>(m: Mutation) -> Flow<T> {
    ControlFlow::Break(Action::Mutate(m))
}

fn wait<T>(step: Step, reason: Reason, message: impl Into<String>) -> Flow<T> {
    stop(Control::Wait {
        step,
        reason,
        message: message.into(),
    })
}

fn fail<T>(step: Step, message: impl Into<String>) -> Flow<T> {
    stop(Control::Fail {
        step,
        message: message.into(),
    })
}

/// The observation of `layer`, or stop to ask for it.
fn asked<T>(seen: &Option<T>, layer: Layer) -> Flow<&T> {
    match seen {
        Some(v) => ControlFlow::Continue(v),
        None => stop(Control::Observe(layer)),
    }
}

/// Run a chain of layers: the action it stopped with, or `Ready` if every layer passed.
fn run(chain: impl FnOnce(&mut Conds) -> Flow) -> Decision {
    let mut conds = Conds::default();
    let action = match chain(&mut conds) {
        ControlFlow::Break(a) => a,
        ControlFlow::Continue(()) => Action::Control(Control::Ready),
    };
    Decision {
        action,
        conditions: conds.0,
    }
}

/// Provisioning and drift repair for a live (not deleting, not paused) server.
pub fn decide(d: &Desired, o: &Observed, cx: &Inputs) -> Decision {
    run(|b| provision::chain(d, o, cx, b))
}

/// What a config write must change; empty when in sync.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigChange {
    pub cores: Option<u32>,
    pub memory_mib: Option<u32>,
    pub swap_mib: Option<u32>,
    pub bridge: Option<String>,
    pub tags: Option<Vec<String>>,
}

impl ConfigChange {
    pub fn between(c: &ContainerObs, d: &Desired) -> ConfigChange {
        let tag = marker_tag(d.id);
        let tagged = c.tags.contains(&tag) && c.tags.iter().any(|t| t == FLEET_TAG);
        ConfigChange {
            cores: (c.cores != Some(d.cores)).then_some(d.cores),
            memory_mib: (c.memory_mib != Some(d.memory_mib)).then_some(d.memory_mib),
            swap_mib: (c.swap_mib != Some(d.swap_mib)).then_some(d.swap_mib),
            bridge: (c.bridge.as_deref() != Some(d.bridge.as_str())).then(|| d.bridge.clone()),
            tags: (!tagged).then(|| {
                let mut t = c.tags.clone();
                for want in [FLEET_TAG.to_string(), tag] {
                    if !t.contains(&want) {
                        t.push(want);
                    }
                }
                t
            }),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == ConfigChange::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
