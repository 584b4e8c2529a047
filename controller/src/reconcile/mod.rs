//! One reconcile of one server: load fresh state, decide, observe what the decision asks
//! for, act once, record status and events, and say when to look again.
//!
//! - `mod.rs`: the shared [`Context`], [`reconcile`] and its loop;
//! - `act.rs`: the calls that change the world (an exhaustive match over `Mutation`);
//! - `record.rs`: conditions, progress, status and events, and the fenced write;
//! - `template.rs`: the per-template clone slot; `vmid.rs`: VMID reservation.

use crate::backends::{Backends, Live, Stack};
use crate::config::{Config, ControllerSection};
use crate::decide::{self, Action, Control, Decision, Desired, Inputs, Layer, Observed};
use crate::observe::{self, EdgeTarget, GameProbe, ObserveCtx, Source};
use crate::ownership::{Ownership, hostname};
use crate::reason as r;
use crate::slots::TemplateSlots;
use crate::snapshot::Snapshot;
use chrono::{DateTime, Utc};
use model::store::{AnyStore, Fence, Store, StoreError};
use model::{
    Catalog, Clock, ConditionStatus, ConditionType, EventType, Server, ServerId, ServerStatus,
    TaskKind,
};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

mod act;
mod record;
mod template;
mod vmid;

#[cfg(test)]
mod tests;

pub use act::Acted;
pub(crate) use act::clone_request_for;
pub use record::status_changed;

/// Everything a reconcile needs, shared by all workers.
pub struct Context<S: Stack = Live> {
    pub store: AnyStore,
    pub backends: Backends<S>,
    pub cfg: Config,
    pub catalog: Catalog,
    pub clock: Arc<dyn Clock>,
    pub slots: TemplateSlots,
    /// The latest fleet snapshot (taken by the resync).
    pub snapshot: RwLock<Arc<Snapshot>>,
    /// Servers to wake (a clone slot was freed); drained by the engine after each reconcile.
    pub wake: Mutex<Vec<ServerId>>,
    /// The latest task listing per node, shared by every wait on a task.
    pub task_listings: crate::task_listing::TaskListings,
    /// The warm-pool loop's shared state (`pool.rs`).
    pub pools: crate::pool::PoolState,
    /// What each kind of task took last time (when a task like it is looked at).
    pub durations: crate::task_listing::TaskDurations,
    /// The latest `cluster/resources` listing, shared by every server in flux.
    pub fleet: crate::snapshot::FleetListings,
}

/// When to look at a server again, named as kube-rs names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Converged, failed or paused: only a change (or the resync) brings it back.
    AwaitChange,
    /// Poll: a task, a wait, a slow retry.
    After(Duration),
    /// The server changed while we worked: look again at once.
    Now,
    /// A backend failed: per-server exponential backoff.
    Backoff,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{RECONCILE_PANICKED}: {0}")]
    Panicked(String),
}

/// The start of a caught panic's message (its log line, event and `Degraded` condition).
pub const RECONCILE_PANICKED: &str = "reconcile panicked";

/// [`reconcile`] with a panic caught at its boundary, as controller-runtime's `RecoverPanic`
/// does: one bad server (a malformed answer, an arithmetic edge) must not stop the fleet's
/// reconciles. The panic is counted, logged with the server, recorded on it (Warning event
/// `ReconcilePanicked`, `Degraded`), and answered as an error, so the server is retried with
/// backoff.
pub async fn reconcile_isolated<S: Stack>(
    ctx: &Context<S>,
    id: ServerId,
    fence: Option<Fence>,
) -> Result<Requeue, ReconcileError> {
    use futures::FutureExt;
    // Nothing the reconcile shares outlives it half-changed: the status is written only at
    // its end, and the shared parts (slots, snapshot) are behind locks that recover.
    let caught = std::panic::AssertUnwindSafe(reconcile(ctx, id, fence))
        .catch_unwind()
        .await;
    let payload = match caught {
        Ok(result) => return result,
        Err(payload) => payload,
    };
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    metrics::counter!(crate::metrics::RECONCILE_PANICS).increment(1);
    tracing::error!(server = %id, panic = %message, "{RECONCILE_PANICKED}");
    record::panicked(ctx, id, fence, &message).await;
    Err(ReconcileError::Panicked(message))
}

/// Most decide/observe rounds in one reconcile (each observation is one round).
const MAX_ROUNDS: usize = 24;

impl<S: Stack> Context<S> {
    pub fn new(store: AnyStore, backends: Backends<S>, cfg: Config, clock: Arc<dyn Clock>) -> Self {
        let t = &cfg.controller;
        Context {
            store,
            backends,
            catalog: cfg.catalog(),
            clock,
            slots: TemplateSlots::new(t.slot_holder_ttl(), t.slot_waiter_ttl()),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            wake: Mutex::new(Vec::new()),
            task_listings: Default::default(),
            pools: crate::pool::PoolState::default(),
            durations: crate::task_listing::TaskDurations::new(t.task_learning_slack()),
            fleet: crate::snapshot::FleetListings::new(t.fleet_listing_max_age()),
            cfg,
        }
    }

    pub fn timing(&self) -> &ControllerSection {
        &self.cfg.controller
    }

    /// The latest fleet snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The servers a freed clone slot woke since the last call. A warm-pool member woken
    /// wakes the pool loop instead (it is no server).
    pub fn take_woken(&self) -> Vec<ServerId> {
        let mut woken = std::mem::take(&mut *self.wake.lock().unwrap_or_else(|e| e.into_inner()));
        woken.retain(|id| {
            let member = self.pools.is_member(*id);
            if member {
                self.pools.wake();
            }
            !member
        });
        woken
    }

    /// A pool lost a member to a claim (or should look again): wake the pool loop.
    pub fn pool_changed(&self) {
        self.pools.wake();
    }

    /// What `s`'s spec asks for, resolved against config, catalog and reservation.
    pub fn desired(&self, s: &Server) -> Desired {
        let spec = &s.spec;
        let vmid = s.reserved_vmid;
        let offered = self.catalog.template_for(spec);
        let template = offered.map(|t| (t.node.clone(), t.vmid));
        Desired {
            id: s.id,
            kind: spec.kind,
            generation: s.generation,
            vmid,
            template: template.clone(),
            clone_mode: offered.map(|t| t.clone_mode).unwrap_or_default(),
            clone_storage: offered.and_then(|t| t.storage.clone()),
            // An existing container stays managed on the node it was built on, even if the
            // catalog stops offering its spec.
            node: s.status.node.clone().or_else(|| template.map(|t| t.0)),
            hostname: vmid.map(|v| hostname(spec.kind, spec.variant, v)),
            pool_claim: s.status.progress.pool_claim,
            cores: spec.resources.cores,
            memory_mib: spec.resources.memory_mib,
            disk_gib: spec.resources.disk_gib,
            swap_mib: self.cfg.network.swap_mib,
            bridge: self.cfg.network.bridge(spec.kind).to_string(),
            power: spec.power,
            process: spec.process(),
            restarts: spec.restarts,
        }
    }

    /// VMID, hostname, FQDN and node follow from the reservation and the spec: written on
    /// every reconcile, so a status lost in a crash or wiped is rebuilt.
    pub fn identity(&self, status: &mut ServerStatus, d: &Desired) {
        let Some(vmid) = d.vmid else { return };
        let (host, fqdn) = self.names(d);
        status.vmid = Some(vmid);
        status.fqdn = Some(fqdn);
        status.hostname = Some(host);
        if status.node.is_none() {
            status.node = d.node().map(str::to_string);
        }
    }

    /// Hostname and FQDN (empty before a VMID is reserved).
    fn names(&self, d: &Desired) -> (String, String) {
        let hostname = d.hostname.clone().unwrap_or_default();
        let fqdn = format!("{hostname}.{}", self.cfg.edge.zone);
        (hostname, fqdn)
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

    fn observe_ctx<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        d: &Desired,
        status: &'a ServerStatus,
        names: &'a (String, String),
        source: Source,
        (direct, confirming): (bool, bool),
    ) -> ObserveCtx<'a, S> {
        ObserveCtx {
            backends: &self.backends,
            task_listings: &self.task_listings,
            durations: &self.durations,
            fleet: (!direct).then_some(&self.fleet),
            presume: !confirming,
            status,
            timing: self.timing(),
            now: self.clock.now(),
            snapshot,
            source,
            upid: status.in_flight_task.as_ref().map(|t| t.upid.as_str()),
            known_ip: status.ip.as_deref(),
            edge: d.needs_edge().then(|| self.edge_target(&names.0, &names.1)),
            slp_timeout: self.cfg.agent.timeout,
        }
    }

    /// A Ready server whose spec has not changed since, with a fresh fleet snapshot: its
    /// observations may come from the snapshot.
    fn is_steady(&self, server: &Server, snapshot: &Snapshot) -> bool {
        !server.is_deleting()
            && server.status.observed_generation == server.generation
            && server.status.is_true(ConditionType::Ready)
            && snapshot.is_fresh(self.timing().snapshot_max_age())
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
        self.identity(&mut status, &desired);
        let names = self.names(&desired);
        let source = Source::SnapshotAssumingHealthy;
        let ocx = self.observe_ctx(
            snapshot,
            &desired,
            &server.status,
            &names,
            source,
            (true, true),
        );
        let mut obs = Observed::default();
        // Everything the snapshot can tell, up front (in the order `decide` asks, as the proxy
        // check reads the IP). A layer it could not fill now, it cannot fill later either, so
        // one `decide` settles it: Ready, or anything else (another layer, an action) is "no".
        for layer in Layer::FROM_SNAPSHOT {
            observe::from_snapshot(layer, &desired, &mut obs, &ocx);
        }
        let cx = Inputs {
            status: &status,
            now,
            timing: self.timing(),
        };
        let Decision { action, conditions } = decide::decide(&desired, &obs, &cx);
        if action != Action::Control(Control::Ready) {
            return false;
        }
        record::apply(&mut status, &conditions, &action, &obs, &desired, now);
        record::mark_ready(&mut status, server.generation, &obs);
        !status_changed(&server.status, &status)
    }

    /// Keep the Agent's answer as live detail (model/src/stats.rs): only reconciles that ask
    /// an Agent write it, so a steady fleet writes none; a failed write is only logged.
    pub async fn record_agent(&self, id: ServerId, agent: model::AgentDetail) {
        let sample = model::ServerStats {
            server_id: id,
            agent: Some(agent),
            agent_seen_at: Some(self.clock.now()),
            ..Default::default()
        };
        if let Err(e) = self.store.write_stats(&[sample]).await {
            tracing::warn!(server = %id, error = %e, "live detail: cannot record the Agent's answer");
        }
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
}

/// One reconcile in progress: what it read, what it learned, what it will record.
pub(crate) struct Run<'c, S: Stack> {
    ctx: &'c Context<S>,
    server: Server,
    status: ServerStatus,
    events: Vec<model::NewEvent>,
    now: DateTime<Utc>,
    desired: Desired,
    obs: Observed,
    snapshot: Arc<Snapshot>,
    source: Source,
    /// No record of creating the container when this reconcile began: finding ours is an
    /// adoption (a crash between clone and record, a lost answer, or a wiped status).
    may_adopt: bool,
    /// Deletion was requested when this reconcile began (a deletion landing meanwhile is the
    /// next reconcile's).
    deleting: bool,
    /// The lease this reconcile holds (`None` on SQLite: one controller).
    fence: Option<Fence>,
    /// Teardown finished and the row is gone: nothing left to record.
    archived: bool,
    /// Every layer is read on its own from here on (a deletion, a confirmation before acting,
    /// after a task ended or a Proxmox change of ours): no listing speaks for this server any
    /// more in this reconcile.
    direct: bool,
    /// Nothing is presumed from here on (a deletion, a confirmation before acting).
    confirming: bool,
}

/// Reconcile `id`. `fence` is the lease held for it (`None` on SQLite: one controller).
pub async fn reconcile<S: Stack>(
    ctx: &Context<S>,
    id: ServerId,
    fence: Option<Fence>,
) -> Result<Requeue, ReconcileError> {
    let Some(server) = ctx.store.get_server(id).await? else {
        ctx.release_slot(id, None).await;
        return Ok(Requeue::AwaitChange);
    };
    let mut run = Run::new(ctx, server, fence);
    if run.held_back() {
        run.leave_clone_queue().await;
        return run.finish(Requeue::AwaitChange).await;
    }
    if run.deleting() {
        // Teardown never clones.
        run.leave_clone_queue().await;
    }
    ctx.identity(&mut run.status, &run.desired);
    let mut next = Requeue::AwaitChange;
    for _ in 0..MAX_ROUNDS {
        let Decision { action, conditions } = run.decide();
        if run.obs.has_tentative() && act::needs_confirmation(&action) {
            // Decided on a listing or the recorded status: only a wait may come of that. Read
            // those layers on their own and decide again (docs/reconcile-contract.md, rule 4).
            run.obs.confirm();
            run.direct = true;
            run.confirming = true;
            continue;
        }
        run.record_round(&conditions, &action).await;
        let flow = match action {
            Action::Mutate(m) => {
                let touched = act::touched(&m);
                if act::touches_proxmox(&m) {
                    // The container changed (or may have): no listing taken before speaks for it.
                    run.direct = true;
                }
                let flow = act::act(&mut run, m).await.flow();
                if flow.is_continue() {
                    // A synchronous change: what it touched is observed again.
                    run.obs.after_change(touched);
                }
                flow
            }
            Action::Control(c) => run.control(c).await?,
        };
        match flow {
            ControlFlow::Continue(()) => continue,
            ControlFlow::Break(n) => {
                next = n;
                break;
            }
        }
    }
    if run.archived {
        return Ok(next);
    }
    if let Some(ip) = run.obs.ip() {
        run.status.ip = Some(ip.to_string());
    }
    run.finish(next).await
}

impl<'c, S: Stack> Run<'c, S> {
    fn new(ctx: &'c Context<S>, server: Server, fence: Option<Fence>) -> Self {
        let now = ctx.clock.now();
        let snapshot = ctx.snapshot();
        let source = if ctx.is_steady(&server, &snapshot) {
            Source::Snapshot
        } else {
            Source::Backends
        };
        let desired = ctx.desired(&server);
        let status = server.status.clone();
        let deleting = server.is_deleting();
        let may_adopt = !deleting
            && status.in_flight_task.is_none()
            && !status.is_true(ConditionType::ContainerCreated);
        Run {
            ctx,
            status,
            events: Vec::new(),
            now,
            desired,
            obs: Observed::default(),
            snapshot,
            source,
            may_adopt,
            deleting,
            server,
            fence,
            archived: false,
            direct: deleting,
            confirming: deleting,
        }
    }

    fn event(&mut self, t: EventType, reason: r::EventReason, msg: impl Into<String>) {
        self.events.push(model::NewEvent {
            type_: t,
            reason: reason.as_str(),
            message: msg.into(),
        });
    }

    fn deleting(&self) -> bool {
        self.deleting
    }

    /// A server that will not ask for the template again soon (failed, paused, being deleted)
    /// leaves the clone queue, so the servers behind it go on. A clone it already started
    /// keeps the template until the clone ends (Proxmox holds the template's lock meanwhile).
    async fn leave_clone_queue(&self) {
        let id = self.server.id;
        let cloning = self
            .status
            .in_flight_task
            .as_ref()
            .is_some_and(|t| t.action == TaskKind::Clone);
        if !cloning && (self.ctx.slots.waits(id) || self.ctx.slots.holds(id)) {
            self.release_template().await;
        }
    }

    /// Give up this server's clone slot (if it holds one) and wake the next waiter.
    async fn release_template(&self) {
        let (id, tpl) = (self.server.id, self.desired.template_vmid());
        self.ctx.release_slot(id, tpl).await;
    }

    /// A terminal failure or a pause holds the server back (a deletion never is). A forced
    /// retry (`zctl reconcile --retry`) or a new generation clears a failure first.
    fn held_back(&mut self) -> bool {
        let generation = self.server.generation;
        if let (Some(f), Some(at)) = (&self.status.failure, self.server.retry_requested_at)
            && at > f.at
        {
            let msg = format!("retrying {}", f.step);
            self.event(EventType::Normal, r::EV_RETRY_REQUESTED, msg);
            self.status.failure = None;
            self.status.attempts = 0;
        }
        if self
            .status
            .failure
            .as_ref()
            .is_some_and(|f| f.generation < generation)
        {
            self.status.failure = None;
            self.status.attempts = 0;
        }
        if self.deleting() {
            return false;
        }
        if self.status.failure.is_some() {
            return true;
        }
        if self.server.paused {
            let ready = if self.status.is_true(ConditionType::Ready) {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            };
            self.status.set_condition(
                ConditionType::Ready,
                ready,
                r::PAUSED.as_str(),
                r::msg::PAUSED,
                generation,
                self.now,
            );
            return true;
        }
        false
    }

    fn decide(&self) -> Decision {
        let cx = Inputs {
            status: &self.status,
            now: self.now,
            timing: self.ctx.timing(),
        };
        if self.deleting() {
            decide::decide_teardown(&self.desired, &self.obs, &cx)
        } else {
            decide::decide(&self.desired, &self.obs, &cx)
        }
    }

    /// Record what this round decided and saw: conditions and progress, an adoption, the end
    /// of a clone (which frees the template).
    async fn record_round(&mut self, conditions: &[decide::Cond], action: &Action) {
        record::apply(
            &mut self.status,
            conditions,
            action,
            &self.obs,
            &self.desired,
            self.now,
        );
        let id = self.server.id;
        let vmid = self.desired.vmid;
        let seen = self.obs.container().map(|c| {
            let ours = c.ownership(&self.desired) == Ownership::Ours;
            let locked_by_clone = c.lock.as_deref() == Some("create");
            let tagged = crate::ownership::has_marker_tag(&c.tags, id);
            (ours, locked_by_clone, tagged)
        });
        if let Some((ours, locked_by_clone, tagged)) = seen {
            if tagged && self.status.progress.pool_claim.is_some() {
                // The claimed member carries our marker now: the claim is complete.
                self.status.progress.pool_claim = None;
            }
            if ours && self.status.progress.owned_vmid != vmid {
                self.status.progress.owned_vmid = vmid;
                // Without a record of creating it, finding ours is an adoption; with one
                // (ContainerCreated, an in-flight clone), it is only written down.
                if self.may_adopt {
                    let msg = format!("adopted existing CT {}", vmid.unwrap_or_default());
                    self.event(EventType::Normal, r::EV_ADOPTED, msg);
                }
            }
            let cloning = locked_by_clone
                || self
                    .status
                    .in_flight_task
                    .as_ref()
                    .is_some_and(|t| t.action == TaskKind::Clone);
            if !cloning && self.ctx.slots.holds(id) {
                // The clone is over (observed, not remembered): free the template.
                self.release_template().await;
            }
        }
        let step = self
            .status
            .current_step()
            .unwrap_or(model::Step::PublishEdge);
        let span = tracing::Span::current();
        span.record("step", step.as_str());
        if let Some(v) = self.desired.vmid {
            span.record("vmid", v);
        }
        tracing::trace!(?action, "decided");
    }

    /// Carry out a decision that changes nothing outside the store: look, wait, record.
    async fn control(&mut self, c: Control) -> Result<ControlFlow<Requeue>, ReconcileError> {
        let id = self.server.id;
        let timing = self.ctx.timing();
        let next = match c {
            Control::Observe(Layer::CloneSlot) => {
                let tpl = self.desired.template_vmid().unwrap_or_default();
                self.obs.clone_slot = Some(self.ctx.acquire_slot(tpl, id).await);
                return Ok(ControlFlow::Continue(()));
            }
            Control::Observe(layer) => {
                let source = if self.deleting() {
                    Source::Backends
                } else {
                    self.source
                };
                let names = self.ctx.names(&self.desired);
                let ocx = self.ctx.observe_ctx(
                    &self.snapshot,
                    &self.desired,
                    &self.status,
                    &names,
                    source,
                    (self.direct, self.confirming),
                );
                observe::fill(layer, &self.desired, &mut self.obs, &ocx).await;
                if let Some(agent) = self.obs.agent_detail.take() {
                    self.ctx.record_agent(id, agent).await;
                }
                return Ok(ControlFlow::Continue(()));
            }
            Control::ClearTask => {
                let ended = self.status.in_flight_task.take();
                if ended.as_ref().is_some_and(|t| t.action == TaskKind::Clone) {
                    self.release_template().await;
                }
                self.obs = Observed::default();
                // Its own success says how the container's power is now (a status read
                // moments ago), so that is not read again. A task that changed anything else
                // (its config, its disk, whether it exists) did so after any listing there
                // is: that is read directly.
                match ended.and_then(|t| act::power_after(t.action)) {
                    Some(power) => self.obs.power = Some(Ok(power)),
                    None => self.direct = true,
                }
                return Ok(ControlFlow::Continue(()));
            }
            Control::ReserveVmid { replace } => return self.reserve_vmid(replace).await,
            Control::TaskFailed { kind, message } => self.task_failed(kind, message).await,
            Control::Wait { reason, .. } => {
                let poll = if reason == r::WAITING_FOR_IP {
                    // The IP schedule: not before an address is plausible, then backing off.
                    self.obs.ip_recheck.unwrap_or(timing.wait_poll)
                } else if reason != r::WAITING_FOR_TEMPLATE {
                    timing.wait_poll
                } else if self.ctx.slots.waits(id) {
                    // Queued behind a clone in this process: woken when it ends.
                    timing.local_waiter_poll()
                } else {
                    // The template is held by a server on another replica (or by a human):
                    // no wake-up will come from here.
                    timing.lock_retry
                };
                Acted::Poll(poll)
            }
            Control::AwaitTask => {
                if let (Some(t), Some(tpl)) =
                    (&self.status.in_flight_task, self.desired.template_vmid())
                    && t.action == TaskKind::Clone
                {
                    // Keep the holds on the template while the clone runs: this process's and
                    // the fleet-wide one.
                    self.ctx.slots.renew(tpl, id);
                    self.ctx.hold_template(tpl, id).await;
                }
                // Not before the task is due (what one like it took), else the next poll.
                Acted::Poll(self.obs.task_recheck.unwrap_or(timing.task_poll))
            }
            Control::Degraded { step, error } => self.degrade(step, &error),
            Control::Fail { step, message } => {
                self.release_template().await;
                self.fail(step, message)
            }
            Control::Ready => {
                if !self.deleting() {
                    self.ready();
                }
                return Ok(ControlFlow::Break(Requeue::AwaitChange));
            }
            Control::Archive => {
                self.release_template().await;
                self.ctx.store.archive_and_delete(id, self.fence).await?;
                self.archived = true;
                return Ok(ControlFlow::Break(Requeue::AwaitChange));
            }
        };
        Ok(next.flow())
    }
}
