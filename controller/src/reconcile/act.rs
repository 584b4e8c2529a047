//! Acting on a decision: the one call that changes the world in a round of the reconcile
//! (clone, configure, start, stop, destroy, send the Agent its config, publish DNS, register
//! with the proxy), and how each backend's answer turns into status, events and the next
//! look.

use super::{Requeue, Run};
use crate::backends::Stack;
use crate::decide::{
    Action, AgentObs, ConfigChange, Control, Layer, Mutation, PowerObs, ProcessObs, Unavailable,
};
use crate::observe;
use crate::ownership::{FLEET_TAG, marker_line, marker_tag};
use crate::reason::{self as r, msg};
use edge_client::dns::DnsProvider;
use edge_client::{Agent, Proxy};
use model::status::{InFlightTask, LastError};
use model::{ConditionType, ErrorClass, EventType, Step, TaskKind};
use proxmox_client::{Proxmox, PveError, Upid};
use std::ops::ControlFlow;
use std::time::Duration;

/// What an action's answer means for this reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acted {
    /// A synchronous change is done: observe again and go on in this reconcile.
    Again,
    /// Look again after this long (a task started, a lock, a slow retry).
    Poll(Duration),
    /// A backend failed: back off.
    Backoff,
    /// A terminal failure was recorded.
    Failed,
}

impl Acted {
    /// Go on in this reconcile, or end it with when to look again.
    pub fn flow(self) -> ControlFlow<Requeue> {
        match self {
            Acted::Again => ControlFlow::Continue(()),
            Acted::Poll(d) => ControlFlow::Break(Requeue::After(d)),
            Acted::Backoff => ControlFlow::Break(Requeue::Backoff),
            Acted::Failed => ControlFlow::Break(Requeue::AwaitChange),
        }
    }
}

/// Whether `m` changes the container in Proxmox (so it is decided only on reads of its own,
/// and no listing taken before it speaks for the container afterwards). The Agent and edge
/// calls are decided on their own direct answers (the Agent's, the DNS providers', the
/// proxy's); a listing may only have let the chain get that far.
pub(super) fn touches_proxmox(m: &Mutation) -> bool {
    match m {
        Mutation::Clone
        | Mutation::ClaimMarker
        | Mutation::DestroyFailedClone
        | Mutation::Configure(_)
        | Mutation::ResizeDisk { .. }
        | Mutation::Start
        | Mutation::Shutdown
        | Mutation::Reboot
        | Mutation::Stop
        | Mutation::Destroy => true,
        Mutation::SendAgentConfig
        | Mutation::StartGame
        | Mutation::StopGame
        | Mutation::RestartGame
        | Mutation::PublishDns
        | Mutation::RegisterProxy
        | Mutation::Unregister
        | Mutation::RemoveDns => false,
    }
}

/// Whether `action`, decided on tentative layers (a listing, the recorded status), must be
/// decided again on reads of their own first: anything but a wait, a look or a confirmation
/// that all is well (docs/reconcile-contract.md, rule 4).
pub(super) fn needs_confirmation(action: &Action) -> bool {
    match action {
        // The clone is decided only on a container absent, and absence is presumed only for a
        // new server (`observe::presume`); Proxmox checks it for us: a taken `newid` is
        // refused `CT N already exists` before anything is changed, and that answer is read
        // (`clone`'s conflict arm). A read first would cost every new server a call.
        Action::Mutate(Mutation::Clone) => false,
        Action::Mutate(m) => touches_proxmox(m),
        Action::Control(c) => match c {
            // A terminal failure (a deadline passed), a VMID given up, a task's failure; and
            // an outage, which a stale input may explain (an Agent asked at an address the
            // container no longer has): each is taken only on reads of their own.
            Control::Fail { .. }
            | Control::ReserveVmid { replace: true }
            | Control::TaskFailed { .. }
            | Control::Degraded { .. } => true,
            Control::Observe(_)
            | Control::ReserveVmid { replace: false }
            | Control::AwaitTask
            | Control::ClearTask
            | Control::Wait { .. }
            | Control::Ready
            | Control::Archive => false,
        },
    }
}

/// The layers a synchronous change (one that answers `Acted::Again`) may have changed: they
/// are observed again; the rest was observed in this reconcile and stays.
pub(super) fn touched(m: &Mutation) -> &'static [Layer] {
    match m {
        // The container observation is updated with what was written (`configure`); a new
        // bridge may bring a new address, and everything behind it.
        Mutation::Configure(c) if c.bridge.is_none() => &[],
        Mutation::Configure(_) => &Layer::WORLD[1..],
        // Written as desired and answered OK: taken as written (`Observed::dns_published`).
        Mutation::PublishDns | Mutation::RegisterProxy => &[],
        Mutation::RemoveDns => &[Layer::Dns],
        Mutation::Unregister => &[Layer::Proxy],
        Mutation::Clone
        | Mutation::ClaimMarker
        | Mutation::DestroyFailedClone
        | Mutation::ResizeDisk { .. }
        | Mutation::Start
        | Mutation::Shutdown
        | Mutation::Reboot
        | Mutation::Stop
        | Mutation::Destroy
        | Mutation::SendAgentConfig
        | Mutation::StartGame
        | Mutation::StopGame
        | Mutation::RestartGame => &Layer::WORLD,
    }
}

/// The container's power once a task of `kind` has ended well.
pub(super) fn power_after(kind: TaskKind) -> Option<PowerObs> {
    match kind {
        TaskKind::Start | TaskKind::Reboot => Some(PowerObs::Running),
        TaskKind::Shutdown | TaskKind::Stop => Some(PowerObs::Stopped),
        TaskKind::Clone | TaskKind::Destroy | TaskKind::Resize => None,
    }
}

/// Make the call `m` asks for, once.
pub(super) async fn act<S: Stack>(run: &mut Run<'_, S>, m: Mutation) -> Acted {
    match m {
        Mutation::Clone => clone(run).await,
        Mutation::ClaimMarker => claim_marker(run).await,
        Mutation::DestroyFailedClone => destroy_failed_clone(run).await,
        Mutation::Configure(change) => configure(run, &change).await,
        Mutation::ResizeDisk { from_gib, to_gib } => resize_disk(run, from_gib, to_gib).await,
        Mutation::Start => start(run).await,
        Mutation::Shutdown => shutdown(run).await,
        Mutation::Reboot => reboot(run).await,
        Mutation::SendAgentConfig => send_agent_config(run).await,
        Mutation::StartGame => game_power(run, GamePower::Start).await,
        Mutation::StopGame => game_power(run, GamePower::Stop).await,
        Mutation::RestartGame => game_power(run, GamePower::Restart).await,
        Mutation::PublishDns => publish_dns(run).await,
        Mutation::RegisterProxy => register_proxy(run).await,
        Mutation::Unregister => unregister(run).await,
        Mutation::RemoveDns => remove_dns(run).await,
        Mutation::Stop => stop(run).await,
        Mutation::Destroy => destroy(run).await,
    }
}

impl<S: Stack> Run<'_, S> {
    fn node(&self) -> String {
        self.desired.node().unwrap_or_default().to_string()
    }

    fn vmid(&self) -> u32 {
        self.desired.vmid.unwrap_or_default()
    }

    /// A Proxmox task was started: remember it and check it after `task_poll`
    /// (docs/reconcile-contract.md, rule 3).
    fn started(&mut self, upid: Upid, action: TaskKind) -> Acted {
        let timing = self.ctx.timing();
        let like = crate::task_listing::TaskKey {
            node: &upid.node,
            kind: action,
            template: self.desired.template_vmid(),
        };
        // First looked at when due: when one like it is expected to have ended.
        let first_look = self
            .ctx
            .durations
            .expected(like)
            .map_or(timing.task_poll, |d| {
                d.clamp(timing.task_poll, timing.task_recheck_max())
            });
        self.status.in_flight_task = Some(InFlightTask {
            upid: upid.to_string(),
            action,
            started_at: self.now,
        });
        Acted::Poll(first_look)
    }

    /// A DNS write that failed: Degraded, unless our own outgoing budget had no room for it
    /// (nothing was sent): then it is tried again when the budget has room, and the worker
    /// goes on to other servers meanwhile (docs/reconcile-contract.md, rule 3).
    fn edge_failed(&mut self, step: Step, e: &edge_client::EdgeError) -> Acted {
        match e.budget_wait {
            Some(wait) => Acted::Poll(wait),
            None => self.degrade(step, &Unavailable::from(e)),
        }
    }

    /// One more failed attempt of `step`, recorded as the last error.
    fn count_attempt(&mut self, step: Step, message: &str) {
        self.status.attempts += 1;
        self.status.last_error = Some(LastError {
            class: ErrorClass::Transient,
            step: step.as_str().into(),
            message: message.to_string(),
            at: self.now,
        });
    }

    /// If the game was seen crashed: count the attempt and record `GameCrashed`.
    fn note_crash(&mut self) -> bool {
        let Some(Ok(AgentObs::Process(ProcessObs::Crashed { count, message }))) = &self.obs.agent
        else {
            return false;
        };
        let why = message
            .clone()
            .unwrap_or_else(|| msg::PROCESS_CRASHED.into());
        let what = msg::crashed(&why, *count);
        self.count_attempt(Step::StartGame, &why);
        self.event(EventType::Warning, r::EV_GAME_CRASHED, what);
        true
    }

    fn pve_failed(&mut self, step: Step, e: &PveError) -> Acted {
        self.degrade(step, &Unavailable::from(e))
    }

    /// The container's IP: as observed in this reconcile, or as recorded.
    fn ip(&self) -> Option<String> {
        self.obs
            .ip()
            .map(str::to_string)
            .or_else(|| self.status.ip.clone())
    }
}

async fn clone<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let (node, tpl) = run.desired.template.clone().unwrap_or_default();
    let vmid = run.vmid();
    let req = clone_request(&run.desired, vmid, marker_line(run.desired.id));
    match run.ctx.backends.pve.clone_ct(&node, tpl, &req).await {
        Ok(upid) => {
            let msg = format!("cloning template {tpl} to {vmid} on {node}");
            run.event(EventType::Normal, r::EV_CLONE_STARTED, msg);
            run.status.node = Some(node);
            run.status.progress.owned_vmid = Some(vmid);
            run.started(upid, TaskKind::Clone)
        }
        Err(e) if e.class == ErrorClass::Locked => {
            // Another replica (or a human) is cloning this template: a wait.
            run.release_template().await;
            Acted::Poll(run.ctx.timing().lock_retry)
        }
        // `CT N already exists`: read it (adopt, or a conflict); nothing is presumed about it
        // any more in this reconcile.
        Err(e) if e.class == ErrorClass::Conflict => {
            run.confirming = true;
            Acted::Again
        }
        Err(e) => {
            run.release_template().await;
            run.pve_failed(Step::CloneContainer, &e)
        }
    }
}

/// The clone call for the template's mode. `full` is always sent: unset, PVE picks linked
/// for a template, which fails on storage without snapshots (docs/proxmox-api.md).
pub(crate) fn clone_request(
    d: &crate::decide::Desired,
    vmid: u32,
    description: String,
) -> proxmox_client::CloneRequest {
    let (mode, storage) = (d.clone_mode, d.clone_storage.as_deref());
    clone_request_for(mode, storage, vmid, d.hostname.clone(), description)
}

/// The clone call for `mode` (also a warm-pool member's, `pool.rs`).
pub(crate) fn clone_request_for(
    mode: model::CloneMode,
    storage: Option<&str>,
    vmid: u32,
    hostname: Option<String>,
    description: String,
) -> proxmox_client::CloneRequest {
    let (full, storage) = match mode {
        model::CloneMode::Full => (true, storage.map(str::to_string)),
        // PVE: `parameter 'storage' not allowed for linked clones` (config validation refuses
        // the combination at start-up, so none is set here).
        model::CloneMode::Linked => (false, None),
    };
    proxmox_client::CloneRequest {
        newid: vmid,
        hostname,
        description: Some(description),
        full: Some(full),
        storage,
        pool: None,
    }
}

/// A claimed warm-pool member becomes the server's: its description, hostname and tags
/// rewritten in one config write (docs/pools.md), so from here on it is ours by tag like a
/// container we cloned; the config layer then applies cores, memory and network.
async fn claim_marker<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let id = run.desired.id;
    let req = proxmox_client::ConfigUpdate {
        tags: Some(vec![FLEET_TAG.to_string(), marker_tag(id)]),
        description: Some(marker_line(id)),
        hostname: run.desired.hostname.clone(),
        ..Default::default()
    };
    let (node, vmid) = (run.node(), run.vmid());
    match run
        .ctx
        .backends
        .pve
        .update_ct_config(&node, vmid, &req)
        .await
    {
        Ok(()) => {
            run.status.progress.owned_vmid = Some(vmid);
            Acted::Again
        }
        Err(e) if e.class == ErrorClass::Locked => Acted::Poll(run.ctx.timing().lock_retry),
        Err(e) => run.pve_failed(Step::ConfigureContainer, &e),
    }
}

/// Grow the rootfs: a task, waited for like any other; the container is read again after it.
async fn resize_disk<S: Stack>(run: &mut Run<'_, S>, from_gib: u32, to_gib: u32) -> Acted {
    let (node, vmid) = (run.node(), run.vmid());
    match run.ctx.backends.pve.resize_ct(&node, vmid, to_gib).await {
        Ok(upid) => {
            let what = msg::disk_resized(vmid, from_gib, to_gib);
            run.event(EventType::Normal, r::EV_DISK_RESIZED, what);
            run.started(upid, TaskKind::Resize)
        }
        Err(e) if e.class == ErrorClass::Locked => Acted::Poll(run.ctx.timing().lock_retry),
        Err(e) if e.class == ErrorClass::Invalid => {
            run.fail(Step::ConfigureContainer, format!("resize: {}", e.message))
        }
        Err(e) => run.pve_failed(Step::ConfigureContainer, &e),
    }
}

async fn destroy_failed_clone<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let msg = match &run.obs.task {
        Some(Ok(crate::decide::TaskObs::Failed(m))) => m.clone(),
        _ => "clone failed".into(),
    };
    run.release_template().await;
    run.status.attempts += 1;
    run.status.last_error = Some(LastError {
        class: ErrorClass::Transient,
        step: Step::CloneContainer.as_str().into(),
        message: msg.clone(),
        at: run.now,
    });
    run.event(EventType::Warning, r::EV_CLONE_FAILED, msg.clone());
    if run.status.attempts >= run.ctx.timing().clone_attempts {
        run.status.in_flight_task = None;
        return run.fail(Step::CloneContainer, msg);
    }
    let (node, vmid) = (run.node(), run.vmid());
    match run.ctx.backends.pve.delete_ct(&node, vmid, &DESTROY).await {
        Ok(upid) => {
            let what = format!("destroying the failed clone {vmid}");
            run.event(EventType::Normal, r::EV_CLONE_CLEANED_UP, what);
            run.started(upid, TaskKind::Destroy)
        }
        Err(e) => run.pve_failed(Step::CloneContainer, &e),
    }
}

async fn configure<S: Stack>(run: &mut Run<'_, S>, change: &ConfigChange) -> Acted {
    let current_net0 = run.obs.container().and_then(|c| c.net0.clone());
    let req = proxmox_client::ConfigUpdate {
        cores: change.cores,
        memory: change.memory_mib.map(u64::from),
        swap: change.swap_mib.map(u64::from),
        tags: change.tags.clone(),
        net0: change
            .bridge
            .as_ref()
            .map(|b| observe::desired_net0(current_net0.as_deref(), b)),
        onboot: Some(true),
        description: Some(marker_line(run.desired.id)),
        ..Default::default()
    };
    let (node, vmid) = (run.node(), run.vmid());
    match run
        .ctx
        .backends
        .pve
        .update_ct_config(&node, vmid, &req)
        .await
    {
        Ok(()) => {
            // Proxmox writes the config synchronously: it now holds what was sent.
            if let Some(Ok(Some(c))) = &mut run.obs.container {
                c.apply(change, req.net0.clone(), req.description.clone());
            }
            let (reason, what) = if run.status.is_true(ConditionType::Ready) {
                let what = format!("configuration of CT {vmid} re-applied");
                (r::EV_DRIFT_REPAIRED, what)
            } else {
                (r::EV_CONFIGURED, format!("configured CT {vmid}"))
            };
            run.event(EventType::Normal, reason, what);
            Acted::Again
        }
        Err(e) if e.class == ErrorClass::Locked => Acted::Poll(run.ctx.timing().lock_retry),
        Err(e) => run.pve_failed(Step::ConfigureContainer, &e),
    }
}

async fn start<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let (node, vmid) = (run.node(), run.vmid());
    match run.ctx.backends.pve.start_ct(&node, vmid).await {
        Ok(upid) => {
            if run.status.is_true(ConditionType::Ready) {
                let what = "container was stopped; starting it";
                run.event(EventType::Normal, r::EV_DRIFT_REPAIRED, what);
            }
            run.event(
                EventType::Normal,
                r::EV_STARTED,
                format!("starting CT {vmid}"),
            );
            // A fresh start is as good as any reboot asked for meanwhile.
            run.status.observed_restarts.container = run.desired.restarts.container;
            run.started(upid, TaskKind::Start)
        }
        Err(e) if e.is_already_running() => Acted::Again,
        Err(e) if e.class == ErrorClass::Locked => Acted::Poll(run.ctx.timing().lock_retry),
        Err(e) => run.pve_failed(Step::StartContainer, &e),
    }
}

async fn shutdown<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let (node, vmid) = (run.node(), run.vmid());
    let timeout = run.ctx.timing().shutdown_timeout_secs();
    match run
        .ctx
        .backends
        .pve
        .shutdown_ct(&node, vmid, Some(timeout), true)
        .await
    {
        Ok(upid) => {
            let what = format!("shutting down CT {vmid}");
            run.event(EventType::Normal, r::EV_STOPPED, what);
            run.started(upid, TaskKind::Shutdown)
        }
        Err(e) if e.is_not_running() => Acted::Again,
        Err(e) => run.pve_failed(Step::StartContainer, &e),
    }
}

async fn reboot<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let (node, vmid) = (run.node(), run.vmid());
    let timeout = run.ctx.timing().shutdown_timeout_secs();
    match run
        .ctx
        .backends
        .pve
        .reboot_ct(&node, vmid, Some(timeout))
        .await
    {
        Ok(upid) => {
            let what = format!("rebooting CT {vmid}");
            run.event(EventType::Normal, r::EV_CONTAINER_REBOOTED, what);
            // Recorded with the task: a crash before this write reboots once more (at least
            // once, never lost).
            run.status.observed_restarts.container = run.desired.restarts.container;
            run.started(upid, TaskKind::Reboot)
        }
        // Stopped meanwhile: the power layer starts it, which is as good as a reboot.
        Err(e) if e.is_not_running() => Acted::Again,
        Err(e) if e.class == ErrorClass::Locked => Acted::Poll(run.ctx.timing().lock_retry),
        Err(e) => run.pve_failed(Step::RestartContainer, &e),
    }
}

/// What the game process is asked to do.
#[derive(Debug, Clone, Copy)]
enum GamePower {
    Start,
    Stop,
    Restart,
}

/// Ask the Agent to start, stop or restart the game. A 2xx means accepted; the next look
/// at the Agent tells how it went.
async fn game_power<S: Stack>(run: &mut Run<'_, S>, what: GamePower) -> Acted {
    let ctx = run.ctx;
    let Some(ip) = run.ip() else {
        return Acted::Poll(ctx.timing().wait_poll);
    };
    if matches!(what, GamePower::Start) {
        run.note_crash();
    }
    let agent = &ctx.backends.agent;
    let (answer, step) = match what {
        GamePower::Start => (agent.start(&ip).await, Step::StartGame),
        GamePower::Stop => (agent.stop(&ip).await, Step::StopGame),
        GamePower::Restart => (agent.restart(&ip).await, Step::RestartGame),
    };
    if let Err(e) = answer {
        return run.degrade(step, &Unavailable::from(&e));
    }
    let (reason, message) = match what {
        GamePower::Start => (r::EV_GAME_STARTED, "starting the game"),
        GamePower::Stop => (r::EV_GAME_STOPPED, "stopping the game as the spec asks"),
        GamePower::Restart => (r::EV_GAME_RESTARTED, "restarting the game as asked"),
    };
    run.event(EventType::Normal, reason, message);
    if !matches!(what, GamePower::Stop) {
        // A start or restart carries out any restart asked for. Recorded after the call: a
        // crash in between restarts twice (at least once, never lost).
        run.status.observed_restarts.game = run.desired.restarts.game;
    }
    Acted::Poll(ctx.timing().wait_poll)
}

async fn send_agent_config<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let Some(ip) = run.ip() else {
        return Acted::Poll(run.ctx.timing().wait_poll);
    };
    if let Some(Ok(AgentObs::Error(msg))) = &run.obs.agent {
        let msg = msg.clone();
        run.count_attempt(Step::WaitForAgent, &msg);
        let what = format!("attempt {}: {msg}", run.status.attempts);
        run.event(EventType::Warning, r::EV_AGENT_INSTALL_FAILED, what);
    } else if run.note_crash() {
        // Started again and still crashing: reinstalled.
    } else if run.status.is_true(ConditionType::Ready) {
        let what = "Agent lost its config; sending it again";
        run.event(EventType::Normal, r::EV_DRIFT_REPAIRED, what);
    }
    let ctx = run.ctx;
    let payload = match edge_client::AgentPayload::for_spec(
        run.vmid(),
        &run.server.spec,
        ctx.cfg.agent.game_port,
        "admin",
        ctx.backends.admin_password(run.desired.id),
    ) {
        Ok(p) => p,
        Err(e) => return run.fail(Step::SendAgentConfig, e.message),
    };
    match ctx.backends.agent.send_config(&ip, &payload).await {
        Ok(()) => {
            run.event(
                EventType::Normal,
                r::EV_AGENT_CONFIG_SENT,
                format!("config sent to {ip}"),
            );
            run.status.progress.agent_install = Some(run.desired.generation);
            Acted::Poll(ctx.timing().wait_poll)
        }
        Err(e) => run.degrade(Step::SendAgentConfig, &Unavailable::from(&e)),
    }
}

async fn publish_dns<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let ctx = run.ctx;
    let (hostname, fqdn) = ctx.names(&run.desired);
    let edge = ctx.edge_target(&hostname, &fqdn);
    // Cloudflare first: a write its budget has no room for costs nothing else then (the
    // internal zone is written on the attempt that goes through).
    if let Some(c) = &ctx.backends.cloudflare
        && let Err(e) = c.ensure(&fqdn, &edge.records(true)).await
    {
        return run.edge_failed(Step::PublishEdge, &e);
    }
    if let Some(t) = &ctx.backends.technitium
        && let Err(e) = t.ensure(&fqdn, &edge.records(false)).await
    {
        return run.edge_failed(Step::PublishEdge, &e);
    }
    let what = format!("A and SRV records for {fqdn}");
    run.event(EventType::Normal, r::EV_DNS_PUBLISHED, what);
    run.obs.dns_published();
    Acted::Again
}

async fn register_proxy<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let ctx = run.ctx;
    let (Some(v), Some(ip)) = (&ctx.backends.velocity, run.ip()) else {
        return Acted::Again;
    };
    let (hostname, _) = ctx.names(&run.desired);
    let port = ctx.cfg.agent.game_port;
    match v.ensure(&hostname, &ip, port).await {
        Ok(_) => {
            let what = format!("{hostname} → {ip}:{port}");
            run.event(EventType::Normal, r::EV_PROXY_REGISTERED, what);
            run.obs.proxy_registered();
            Acted::Again
        }
        Err(e) => run.degrade(Step::PublishEdge, &Unavailable::from(&e)),
    }
}

async fn unregister<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let ctx = run.ctx;
    let Some(v) = &ctx.backends.velocity else {
        return Acted::Again;
    };
    let (hostname, _) = ctx.names(&run.desired);
    match v.remove(&hostname).await {
        Ok(_) => {
            let what = format!("unregistered {hostname} from the proxy");
            run.event(EventType::Normal, r::EV_TEARDOWN_STEP, what);
            Acted::Again
        }
        Err(e) => run.degrade(Step::Teardown, &Unavailable::from(&e)),
    }
}

async fn remove_dns<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let ctx = run.ctx;
    let (_, fqdn) = ctx.names(&run.desired);
    // Cloudflare first, as in `publish_dns`.
    if let Some(c) = &ctx.backends.cloudflare
        && let Err(e) = c.remove(&fqdn).await
    {
        return run.edge_failed(Step::Teardown, &e);
    }
    if let Some(t) = &ctx.backends.technitium
        && let Err(e) = t.remove(&fqdn).await
    {
        return run.edge_failed(Step::Teardown, &e);
    }
    let what = format!("DNS records of {fqdn} deleted");
    run.event(EventType::Normal, r::EV_TEARDOWN_STEP, what);
    Acted::Again
}

async fn stop<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let (node, vmid) = (run.node(), run.vmid());
    match run.ctx.backends.pve.stop_ct(&node, vmid).await {
        Ok(upid) => {
            let what = format!("stopping CT {vmid}");
            run.event(EventType::Normal, r::EV_TEARDOWN_STEP, what);
            run.started(upid, TaskKind::Stop)
        }
        Err(e) if e.is_not_running() => Acted::Again,
        Err(e) if e.class == ErrorClass::Locked => Acted::Poll(run.ctx.timing().lock_retry),
        Err(e) => run.pve_failed(Step::Teardown, &e),
    }
}

async fn destroy<S: Stack>(run: &mut Run<'_, S>) -> Acted {
    let (node, vmid) = (run.node(), run.vmid());
    match run.ctx.backends.pve.delete_ct(&node, vmid, &DESTROY).await {
        Ok(upid) => {
            let what = format!("destroying CT {vmid}");
            run.event(EventType::Normal, r::EV_DESTROYED, what);
            run.started(upid, TaskKind::Destroy)
        }
        // Already gone: idempotent success.
        Err(e) if e.class == ErrorClass::NotFound => Acted::Again,
        Err(e) if e.class == ErrorClass::Locked => Acted::Poll(run.ctx.timing().lock_retry),
        Err(e) => run.pve_failed(Step::Teardown, &e),
    }
}

/// Destroy with its disks and every reference (backup jobs, replication, HA).
const DESTROY: proxmox_client::DeleteOptions = proxmox_client::DeleteOptions {
    purge: true,
    force: false,
    destroy_unreferenced_disks: true,
};
