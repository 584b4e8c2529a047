//! One reconcile of one server: load fresh state, decide, observe what the decision asks
//! for, act once, record status and events. Returns when to look again.

use crate::backends::Backends;
use crate::config::Config;
use crate::decide::{
    self, Action, Context, Decision, Desired, Layer, Observed, TASK_CLONE, Unavailable,
};
use crate::metrics as m;
use crate::observe::{self, EdgeTarget, GameProbe, ObserveCtx};
use crate::reason as r;
use crate::slots::TemplateSlots;
use crate::snapshot::Snapshot;
use chrono::{DateTime, Utc};
use model::status::{Failure, LastError};
use model::store::{AnyStore, Fence, Store, StoreError};
use model::{
    Catalog, Clock, ConditionStatus, ConditionType, ErrorClass, EventType, Server, ServerId,
    ServerStatus, Step,
};
use proxmox_client::Proxmox;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// When to look at the server again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Converged or waiting on a trigger; `Some` for polling (tasks, IP, Agent).
    Done(Option<Duration>),
    /// A backend failed: back off (per-key exponential).
    Backoff,
}

/// Everything a reconcile needs, shared by all workers.
pub struct Reconciler {
    pub store: AnyStore,
    pub backends: Backends,
    pub cfg: Config,
    pub catalog: Catalog,
    pub clock: Arc<dyn Clock>,
    pub slots: TemplateSlots,
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// Servers to wake (clone slot freed); drained by the engine.
    pub wake: std::sync::Mutex<Vec<ServerId>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) struct Pending {
    pub(crate) events: Vec<(EventType, &'static str, String)>,
}

impl Pending {
    pub(crate) fn event(&mut self, t: EventType, reason: &'static str, msg: impl Into<String>) {
        self.events.push((t, reason, msg.into()));
    }
}

/// Most decide/observe rounds in one reconcile (each observation is one round).
const MAX_ROUNDS: usize = 24;
/// The layers a fleet snapshot may confirm, in the order `decide` asks for them.
const SNAPSHOT_LAYERS: [Layer; 8] = [
    Layer::Task,
    Layer::Container,
    Layer::Power,
    Layer::Ip,
    Layer::Agent,
    Layer::Dns,
    Layer::Proxy,
    Layer::Slp,
];

impl Reconciler {
    fn desired(&self, s: &Server) -> Desired {
        let spec = &s.spec;
        let vmid = s.reserved_vmid;
        let template = self
            .catalog
            .template_for(spec)
            .map(|t| (t.node.clone(), t.vmid));
        Desired {
            id: s.id,
            kind: spec.kind,
            generation: s.generation,
            vmid,
            template: template.clone(),
            // An existing container stays managed on the node it was built on, even if the
            // catalog stops offering its spec.
            node: s.status.node.clone().or_else(|| template.map(|t| t.0)),
            hostname: vmid.map(|v| decide::hostname(spec.kind, spec.variant, v)),
            cores: spec.resources.cores,
            memory_mib: spec.resources.memory_mib,
            swap_mib: self.cfg.network.swap_mib,
            bridge: self.cfg.network.bridge(spec.kind).to_string(),
            power: spec.power,
        }
    }

    /// Reconcile `id`. `fence` is the lease held for it (None on SQLite: one controller).
    pub async fn reconcile(
        &self,
        id: ServerId,
        fence: Option<Fence>,
    ) -> Result<Outcome, ReconcileError> {
        let Some(mut server) = self.store.get_server(id).await? else {
            self.release_slot(id, None).await;
            return Ok(Outcome::Done(None));
        };
        let now = self.clock.now();
        let mut status = server.status.clone();
        let mut p = Pending { events: Vec::new() };
        let deleting = server.is_deleting();

        // A forced retry (`zctl reconcile --retry`) clears a terminal failure.
        if let (Some(f), Some(at)) = (&status.failure, server.retry_requested_at)
            && at > f.at
        {
            p.event(
                EventType::Normal,
                r::EV_RETRY_REQUESTED,
                format!("retrying {}", f.step),
            );
            status.failure = None;
            status.attempts = 0;
        }
        // A new generation starts with a clean slate of attempts.
        if status
            .failure
            .as_ref()
            .is_some_and(|f| f.generation < server.generation)
        {
            status.failure = None;
            status.attempts = 0;
        }
        if !deleting && status.failure.is_some() {
            return self
                .finish(&server, status, p, fence, Outcome::Done(None))
                .await;
        }
        if server.paused && !deleting {
            status.set_condition(
                ConditionType::Ready,
                if status.is_true(ConditionType::Ready) {
                    ConditionStatus::True
                } else {
                    ConditionStatus::False
                },
                r::PAUSED,
                "paused: not acted on until resumed",
                server.generation,
                now,
            );
            return self
                .finish(&server, status, p, fence, Outcome::Done(None))
                .await;
        }

        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut desired = self.desired(&server);
        self.record_identity(&mut status, &desired);
        // Found ours without a record of creating it (a crash between clone and record, a
        // lost answer, or a wiped status): adoption, visible as an event.
        let may_adopt = !deleting
            && status.in_flight_task.is_none()
            && status
                .condition(ConditionType::ContainerCreated)
                .is_none_or(|c| c.status != ConditionStatus::True && c.reason != r::CONFIGURING);
        let mut obs = Observed::default();
        let timing = &self.cfg.controller;
        let mut outcome = Outcome::Done(None);
        let steady = self.is_steady(&server, &snapshot);

        for _ in 0..MAX_ROUNDS {
            let cx = Context {
                status: &status,
                now,
                timing,
            };
            let Decision { action, conditions } = if deleting {
                decide::decide_teardown(&desired, &obs, &cx)
            } else {
                decide::decide(&desired, &obs, &cx)
            };
            apply_conditions(&mut status, conditions, &action, server.generation, now);
            if let Some(Ok(Some(c))) = &obs.container
                && may_adopt
                && c.ownership(&desired) == decide::Ownership::Ours
                && !p.events.iter().any(|e| e.1 == r::EV_ADOPTED)
            {
                p.event(
                    EventType::Normal,
                    r::EV_ADOPTED,
                    format!("adopted existing CT {}", desired.vmid.unwrap_or_default()),
                );
            }
            if let Some(Ok(Some(c))) = &obs.container
                && c.lock.as_deref() != Some("create")
                && self.slots.holds(id)
                && status
                    .in_flight_task
                    .as_ref()
                    .is_none_or(|t| t.action != TASK_CLONE)
            {
                // The clone is over (observed, not remembered): free the template.
                self.release_slot(id, desired.template.as_ref().map(|t| t.1))
                    .await;
            }
            let step = status.current_step().unwrap_or(Step::PublishEdge);
            let span = tracing::Span::current();
            span.record("step", step.as_str());
            if let Some(v) = desired.vmid {
                span.record("vmid", v);
            }
            tracing::trace!(?action, "decided");
            match action {
                Action::Observe(Layer::CloneSlot) => {
                    let tpl = desired.template.as_ref().map(|t| t.1).unwrap_or_default();
                    obs.clone_slot = Some(self.acquire_slot(tpl, id).await);
                }
                Action::Observe(layer) => {
                    let (hostname, fqdn) = self.names(&desired);
                    let ocx = self.observe_ctx(&snapshot, &desired, &status, &hostname, &fqdn);
                    let ocx = ObserveCtx {
                        steady,
                        teardown: deleting,
                        ..ocx
                    };
                    observe::fill(layer, &desired, &mut obs, &ocx).await;
                }
                Action::ClearTask => {
                    if let Some(t) = status.in_flight_task.take()
                        && t.action == TASK_CLONE
                    {
                        self.release_slot(id, desired.template.as_ref().map(|t| t.1))
                            .await;
                    }
                    obs = Observed::default();
                }
                Action::ReserveVmid { replace } => {
                    match self
                        .reserve(&mut server, &desired, replace, &snapshot, &mut p)
                        .await
                    {
                        Ok(vmid) => {
                            debug_assert_eq!(server.reserved_vmid, Some(vmid));
                            desired = self.desired(&server);
                            self.record_identity(&mut status, &desired);
                            obs = Observed::default();
                        }
                        Err(ReserveError::Backend(e)) => {
                            outcome =
                                self.degrade(&mut status, Step::AllocateVmid, &e, &mut p, now);
                            break;
                        }
                        Err(ReserveError::Store(StoreError::RangeExhausted { .. })) => {
                            outcome = self.fail(
                                &mut status,
                                &server,
                                Step::AllocateVmid,
                                model::store::msg::RANGE_EXHAUSTED.into(),
                                &mut p,
                                now,
                            );
                            break;
                        }
                        Err(ReserveError::Store(e)) => return Err(e.into()),
                    }
                }
                Action::Degraded { step, error } => {
                    outcome = self.degrade(&mut status, step, &error, &mut p, now);
                    break;
                }
                Action::Fail { step, message } => {
                    self.release_slot(id, desired.template.as_ref().map(|t| t.1))
                        .await;
                    outcome = self.fail(&mut status, &server, step, message, &mut p, now);
                    break;
                }
                Action::Wait { reason, .. } => {
                    let poll = if reason != r::WAITING_FOR_TEMPLATE {
                        timing.wait_poll
                    } else if self.slots.waits(id) {
                        // Queued behind a clone in this process: woken when it ends.
                        local_waiter_poll(timing)
                    } else {
                        // The template is held by a server on another replica (or by a
                        // human): no wake-up will come from here.
                        timing.lock_retry
                    };
                    outcome = Outcome::Done(Some(poll));
                    break;
                }
                Action::AwaitTask => {
                    if let (Some(t), Some((_, tpl))) = (&status.in_flight_task, &desired.template)
                        && t.action == TASK_CLONE
                    {
                        // Keep the fleet-wide hold on the template while the clone runs.
                        self.hold_template(*tpl, id).await;
                    }
                    outcome = Outcome::Done(Some(timing.task_poll));
                    break;
                }
                Action::Ready => {
                    if !deleting {
                        let was_ready = server.status.is_true(ConditionType::Ready)
                            && server.status.observed_generation == server.generation;
                        mark_ready(&mut status, server.generation, &obs);
                        if !was_ready {
                            let since = status.ready_since.unwrap_or(server.created_at);
                            let secs = (now - since).num_milliseconds() as f64 / 1000.0;
                            metrics::histogram!(m::TIME_TO_READY).record(secs.max(0.0));
                            status.ready_since = Some(now);
                            p.event(EventType::Normal, r::EV_READY, "server is ready");
                        }
                    }
                    outcome = Outcome::Done(None);
                    break;
                }
                Action::Archive => {
                    self.release_slot(id, desired.template.as_ref().map(|t| t.1))
                        .await;
                    self.store.archive_and_delete(id, fence).await?;
                    return Ok(Outcome::Done(None));
                }
                action => {
                    outcome = self
                        .act(
                            action,
                            &server,
                            &desired,
                            &mut status,
                            &mut obs,
                            &mut p,
                            now,
                            step,
                        )
                        .await;
                    if outcome == Outcome::Done(Some(Duration::ZERO)) {
                        // A synchronous change: observe again and go on in this reconcile.
                        obs = Observed {
                            task: obs.task.take(),
                            ..Observed::default()
                        };
                        continue;
                    }
                    break;
                }
            }
        }
        if let Some(Ok(Some(ip))) = &obs.ip {
            status.ip = Some(ip.clone());
        }
        self.finish(&server, status, p, fence, outcome).await
    }

    /// A Ready server whose spec has not changed since, with a fresh fleet snapshot: its
    /// observations may come from the snapshot.
    fn is_steady(&self, server: &Server, snapshot: &Snapshot) -> bool {
        !server.is_deleting()
            && server.status.observed_generation == server.generation
            && server.status.is_true(ConditionType::Ready)
            && snapshot.is_fresh(self.snapshot_max_age())
    }

    /// How long a fleet snapshot may stand in for per-server reads: two resync intervals, so
    /// one late or failed resync does not send the fleet back to per-server reads.
    fn snapshot_max_age(&self) -> std::time::Duration {
        self.cfg.controller.resync_interval * 2
    }

    /// The resync's in-memory check: would a reconcile of `server` (its Agent and game taken
    /// as healthy) find nothing to do and nothing to record? Decided by the same `decide`
    /// as a reconcile, fed only from the snapshot; anything the snapshot does not confirm
    /// means "no" (the server is then reconciled for real).
    pub fn is_settled(&self, server: &Server, snapshot: &Snapshot) -> bool {
        if server.paused
            || server.status.failure.is_some()
            || server.status.in_flight_task.is_some()
            || !self.is_steady(server, snapshot)
        {
            return false;
        }
        let now = self.clock.now();
        let desired = self.desired(server);
        let mut status = server.status.clone();
        self.record_identity(&mut status, &desired);
        let (hostname, fqdn) = self.names(&desired);
        let ocx = ObserveCtx {
            steady: true,
            assume_healthy: true,
            ..self.observe_ctx(snapshot, &desired, &server.status, &hostname, &fqdn)
        };
        let mut obs = Observed::default();
        // Everything the snapshot can tell, up front (in the order `decide` asks, as the proxy
        // check reads the IP). A layer it could not fill now, it cannot fill later either, so
        // one `decide` settles it: Ready, or anything else (another layer, an action) is "no".
        for layer in SNAPSHOT_LAYERS {
            observe::from_snapshot(layer, &desired, &mut obs, &ocx);
        }
        let cx = Context {
            status: &status,
            now,
            timing: &self.cfg.controller,
        };
        let Decision { action, conditions } = decide::decide(&desired, &obs, &cx);
        if action != Action::Ready {
            return false;
        }
        apply_conditions(&mut status, conditions, &action, server.generation, now);
        mark_ready(&mut status, server.generation, &obs);
        !status_changed(&server.status, &status)
    }

    /// Where a settled game server's health probe goes: its game's Server List Ping (at the
    /// recorded IP, greeted with its FQDN). `None` for what only its Agent can tell (a dev
    /// container, or no IP recorded): that probe is a reconcile.
    pub fn game_probe(&self, server: &Server) -> Option<GameProbe> {
        let desired = self.desired(server);
        if !desired.needs_edge() {
            return None;
        }
        let addr = observe::game_addr(server.status.ip.as_deref()?, self.cfg.agent.game_port)?;
        let (_, fqdn) = self.names(&desired);
        Some(GameProbe { addr, fqdn })
    }

    /// Hostname and FQDN (empty before a VMID is reserved).
    fn names(&self, d: &Desired) -> (String, String) {
        let hostname = d.hostname.clone().unwrap_or_default();
        let fqdn = format!("{hostname}.{}", self.cfg.edge.zone);
        (hostname, fqdn)
    }

    /// What an observation of `d` needs; per-server observation (not steady, provisioning).
    fn observe_ctx<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        d: &Desired,
        status: &'a ServerStatus,
        hostname: &'a str,
        fqdn: &'a str,
    ) -> ObserveCtx<'a> {
        ObserveCtx {
            backends: &self.backends,
            snapshot,
            steady: false,
            assume_healthy: false,
            upid: status.in_flight_task.as_ref().map(|t| t.upid.as_str()),
            known_ip: status.ip.as_deref(),
            edge: d.needs_edge().then(|| self.edge_target(hostname, fqdn)),
            teardown: false,
            slp_timeout: self.cfg.agent.timeout,
        }
    }

    /// VMID, hostname, FQDN and node follow from the reservation and the spec: written on
    /// every reconcile, so a status lost in a crash or wiped is rebuilt.
    fn record_identity(&self, status: &mut ServerStatus, d: &Desired) {
        let Some(vmid) = d.vmid else { return };
        let host = d.hostname.clone().unwrap_or_default();
        status.vmid = Some(vmid);
        status.fqdn = Some(format!("{host}.{}", self.cfg.edge.zone));
        status.hostname = Some(host);
        if status.node.is_none() {
            status.node = d.node().map(str::to_string);
        }
    }

    pub(crate) fn edge_target<'a>(&self, hostname: &'a str, fqdn: &'a str) -> EdgeTarget<'a> {
        EdgeTarget {
            fqdn,
            hostname,
            internal_ip: self.cfg.edge.internal_ip,
            public_ip: self.cfg.edge.public_ip,
            proxy_port: self.cfg.edge.proxy_port,
            game_port: self.cfg.agent.game_port,
        }
    }

    /// Take the clone slot of template `tpl`: first in this process (FIFO, so waiters are
    /// woken in order), then fleet-wide in the store, so replicas do not race for a template
    /// either. Re-acquiring renews the fleet-wide hold while the clone runs.
    async fn acquire_slot(&self, tpl: u32, id: ServerId) -> bool {
        self.slots.try_acquire(tpl, id) && self.hold_template(tpl, id).await
    }

    /// Take or renew the fleet-wide hold on template `tpl`. The holder is the server, not the
    /// replica, so whichever replica reconciles it next renews and releases it; a holder lost
    /// without a release (its status wiped mid-clone) expires after the TTL.
    async fn hold_template(&self, tpl: u32, id: ServerId) -> bool {
        let t = &self.cfg.controller;
        let ttl = (t.lease_ttl * 2).max(t.task_poll * 10);
        matches!(
            self.store
                .try_singleton(&slot_name(tpl), &id.to_string(), ttl)
                .await,
            Ok(true)
        )
    }

    /// Give up the clone slot of `id` (a no-op in the store if it is not the holder) and wake
    /// the next local waiter.
    pub(crate) async fn release_slot(&self, id: ServerId, tpl: Option<u32>) {
        if let Some(tpl) = tpl {
            let _ = self
                .store
                .release_singleton(&slot_name(tpl), &id.to_string())
                .await;
        }
        let woken = self.slots.release(id);
        if !woken.is_empty() {
            self.wake
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(woken);
        }
    }

    async fn reserve(
        &self,
        server: &mut Server,
        d: &Desired,
        replace: bool,
        snapshot: &Snapshot,
        p: &mut Pending,
    ) -> Result<u32, ReserveError> {
        // Skip what Proxmox already has (the DB only knows our own reservations). The fresh
        // fleet snapshot says so without a call: listing the cluster per reservation would
        // make each declared server cost O(fleet).
        let taken = match snapshot.taken_vmids(self.snapshot_max_age()) {
            Some(taken) => taken,
            None => match self.backends.pve.cluster_resources().await {
                Ok(list) => list.iter().map(|c| c.vmid).collect(),
                Err(e) => return Err(ReserveError::Backend(Unavailable::from(&e))),
            },
        };
        let range = self.cfg.vmids.range(d.kind);
        let old = server.reserved_vmid;
        let vmid = self
            .store
            .reserve_vmid(server.id, range, &taken, replace)
            .await
            .map_err(ReserveError::Store)?;
        if replace {
            p.event(
                EventType::Warning,
                r::EV_VMID_CONFLICT,
                format!(
                    "VMID {} holds a container that is not ours; left untouched, reserved {vmid}",
                    old.unwrap_or_default()
                ),
            );
        } else if old != Some(vmid) {
            p.event(
                EventType::Normal,
                r::EV_VMID_RESERVED,
                format!("VMID {vmid}"),
            );
        }
        // The reservation wrote the row: continue from the fresh version.
        if let Some(fresh) = self
            .store
            .get_server(server.id)
            .await
            .map_err(ReserveError::Store)?
        {
            *server = fresh;
        }
        Ok(vmid)
    }

    pub(crate) fn degrade(
        &self,
        status: &mut ServerStatus,
        step: Step,
        e: &Unavailable,
        p: &mut Pending,
        now: DateTime<Utc>,
    ) -> Outcome {
        status.last_error = Some(LastError {
            class: e.class,
            step: step.as_str().into(),
            message: format!("{}: {}", e.backend, e.message),
            at: now,
        });
        let reason = if e.backend == crate::backends::BACKEND_PROXMOX {
            r::EV_PROXMOX_UNAVAILABLE
        } else {
            r::EV_BACKEND_UNAVAILABLE
        };
        p.event(
            EventType::Warning,
            reason,
            format!("{}: {}", e.backend, e.message),
        );
        match e.class {
            // A bug or bad credentials will not fix itself by hammering: retry slowly.
            ErrorClass::Invalid | ErrorClass::Unauthorized => {
                Outcome::Done(Some(self.cfg.controller.backoff_max))
            }
            _ => Outcome::Backoff,
        }
    }

    pub(crate) fn fail(
        &self,
        status: &mut ServerStatus,
        server: &Server,
        step: Step,
        message: String,
        p: &mut Pending,
        now: DateTime<Utc>,
    ) -> Outcome {
        status.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            r::FAILED,
            format!("{step}: {message}"),
            server.generation,
            now,
        );
        status.failure = Some(Failure {
            step: step.as_str().into(),
            message: message.clone(),
            at: now,
            generation: server.generation,
        });
        p.event(
            EventType::Warning,
            r::EV_FAILED,
            format!("{step}: {message}"),
        );
        Outcome::Done(None)
    }

    /// Record status (only if it changed; fenced) and events.
    async fn finish(
        &self,
        server: &Server,
        mut status: ServerStatus,
        p: Pending,
        fence: Option<Fence>,
        outcome: Outcome,
    ) -> Result<Outcome, ReconcileError> {
        let now = self.clock.now();
        let changed = status_changed(&server.status, &status);
        // Nothing observed changed: no write (a resync of a steady fleet costs no writes, and
        // watchers see only real changes).
        if changed {
            status.last_reconcile_at = Some(now);
            status.next_retry_at = match outcome {
                Outcome::Done(Some(d)) if !d.is_zero() => {
                    chrono::Duration::from_std(d).ok().map(|d| now + d)
                }
                _ => None,
            };
            match self
                .store
                .write_status(server.id, &status, server.resource_version, fence)
                .await
            {
                Ok(_) => {}
                // The user changed the server meanwhile: look again at once.
                Err(StoreError::Stale) => return Ok(Outcome::Done(Some(Duration::ZERO))),
                Err(StoreError::NotFound) => return Ok(Outcome::Done(None)),
                Err(e) => return Err(e.into()),
            }
        }
        for (t, reason, msg) in p.events {
            self.store.append_event(server.id, t, reason, &msg).await?;
        }
        Ok(outcome)
    }
}

enum ReserveError {
    Backend(Unavailable),
    Store(StoreError),
}

/// How often a server queued behind a clone in this process looks again on its own: only a
/// safety net, since the slot's release wakes the next waiter. Polling faster would let a
/// large queue of waiters crowd out the clone holders' own polls.
pub fn local_waiter_poll(timing: &crate::config::ControllerSection) -> Duration {
    timing.lock_retry * 6
}

fn slot_name(template: u32) -> String {
    format!("clone-template-{template}")
}

/// Did anything but the bookkeeping stamps change?
/// Record what `decide` concluded; any action but waiting on an observation or a degraded
/// backend means the server is healthy again.
fn apply_conditions(
    status: &mut ServerStatus,
    conditions: Vec<decide::Cond>,
    action: &Action,
    generation: i64,
    now: DateTime<Utc>,
) {
    for (t, st, reason, msg) in conditions {
        status.set_condition(t, st, reason, msg, generation, now);
    }
    if !matches!(action, Action::Degraded { .. } | Action::Observe(_)) {
        status.set_condition(
            ConditionType::Degraded,
            ConditionStatus::False,
            r::HEALTHY,
            "",
            generation,
            now,
        );
    }
}

/// The status of a server that reached Ready for `generation`.
fn mark_ready(status: &mut ServerStatus, generation: i64, obs: &Observed) {
    status.observed_generation = generation;
    status.attempts = 0;
    status.last_error = None;
    status.next_retry_at = None;
    if let Some(Ok(Some(ip))) = &obs.ip {
        status.ip = Some(ip.clone());
    }
}

fn status_changed(old: &ServerStatus, new: &ServerStatus) -> bool {
    // The common case (a steady server: same stamps) compares without copying.
    if (old.last_reconcile_at, old.next_retry_at) == (new.last_reconcile_at, new.next_retry_at) {
        return old != new;
    }
    let strip = |s: &ServerStatus| ServerStatus {
        last_reconcile_at: None,
        next_retry_at: None,
        ..s.clone()
    };
    strip(old) != strip(new)
}
