//! Provisioning and drift repair, one function per layer, in the order the world is built:
//! VMID, in-flight task, template, container, config, power, network, Agent, edge. Each layer
//! sets its condition and either lets the chain go on or stops it with an action.

use super::{
    AgentObs, Conds, ConfigChange, ContainerObs, Control, Desired, Flow, Inputs, Layer, Mutation,
    Observed, PowerObs, ProcessObs, TaskObs, asked, fail, mutate, stop, wait,
};
use crate::config::ControllerSection;
use crate::ownership::{Ownership, has_marker_tag};
use crate::reason::{self as r, msg};
use model::{ConditionType as C, ErrorClass, Power, Process, Step, TaskKind};
use std::ops::ControlFlow::Continue;
use std::time::Duration;

pub(super) fn chain(d: &Desired, o: &Observed, cx: &Inputs, b: &mut Conds) -> Flow {
    let vmid = vmid(d, b)?;
    let failed = task(o, cx, b)?;
    if failed.is_none() && o.container.is_none() {
        agent_first(d, o, cx, b)?;
        template_first(d, o, cx, b)?;
    }
    let c = container(d, o, cx, b, vmid, failed)?;
    config(d, c, b)?;
    disk(d, c, vmid, b)?;
    power(d, o, cx, b)?;
    network(o, cx, b)?;
    let state = agent(o, cx, b)?;
    let stopped_as_asked = process(d, state, cx, b)?;
    edge(d, o, b, stopped_as_asked)
}

/// The VMID is reserved in the store before anything exists in Proxmox
/// (docs/reconcile-contract.md, rule 2).
fn vmid(d: &Desired, b: &mut Conds) -> Flow<u32> {
    let Some(vmid) = d.vmid else {
        b.set(C::VmidAllocated, false, r::NOT_RESERVED, "reserving a VMID");
        return stop(Control::ReserveVmid { replace: false });
    };
    b.set(C::VmidAllocated, true, r::RESERVED, format!("VMID {vmid}"));
    Continue(vmid)
}

/// A task that failed, carried to the container layer, which decides how to clean up.
struct FailedTask {
    kind: TaskKind,
    message: String,
}

/// A task we started comes first (docs/reconcile-contract.md, rule 3): wait for it, within
/// its deadline.
fn task(o: &Observed, cx: &Inputs, b: &mut Conds) -> Flow<Option<FailedTask>> {
    let Some(t) = cx.in_flight() else {
        return Continue(None);
    };
    match b.known(&o.task, Layer::Task, t.action.step())? {
        TaskObs::Running => {
            let deadline = task_deadline(t.action, cx.timing);
            if (cx.now - t.started_at).to_std().unwrap_or_default() > deadline {
                let why = msg::task_overdue(&t.upid, t.action, deadline);
                return fail(t.action.step(), why);
            }
            stop(Control::AwaitTask)
        }
        TaskObs::Succeeded => stop(Control::ClearTask),
        TaskObs::Failed(message) => Continue(Some(FailedTask {
            kind: t.action,
            message: message.clone(),
        })),
    }
}

fn task_deadline(kind: TaskKind, timing: &ControllerSection) -> Duration {
    match kind {
        TaskKind::Clone => timing.clone_deadline,
        TaskKind::Start
        | TaskKind::Shutdown
        | TaskKind::Reboot
        | TaskKind::Stop
        | TaskKind::Destroy
        | TaskKind::Resize => timing.start_deadline,
    }
}

/// During a recorded Agent install the Agent is asked first: an Agent that answers proves the
/// container runs and has its address, so a long install does not read Proxmox on every
/// poll. Any other answer (or none) goes on to the full observation.
fn agent_first(d: &Desired, o: &Observed, cx: &Inputs, b: &mut Conds) -> Flow {
    let s = cx.status;
    let installing = s.progress.agent_install == Some(d.generation)
        && s.is_true(C::ContainerRunning)
        && s.is_true(C::NetworkReady)
        && s.ip.is_some();
    if !installing {
        return Continue(());
    }
    match asked(&o.agent, Layer::Agent)? {
        Ok(AgentObs::Installing) if !cx.overdue(C::AgentReady, cx.timing.agent_deadline) => {
            installing_wait(b)
        }
        _ => Continue(()),
    }
}

/// During a recorded template wait, and before there is any record of the container (a new
/// server), the clone slot is asked for first, so a queue of waiters costs the cluster nothing
/// until its turn (a new server's container is read once, when it may clone). Only a shortcut:
/// the container is still observed before any clone.
fn template_first(d: &Desired, o: &Observed, cx: &Inputs, b: &mut Conds) -> Flow {
    let s = cx.status;
    // A claimed pool member needs no clone, so it never queues for the slot (`is_new`).
    if (s.progress.template_wait.is_none() && !d.is_new(s)) || d.template.is_none() {
        return Continue(());
    }
    template(d, o, b)?;
    Continue(())
}

/// The template this spec is built from, once its clone slot is ours. Proxmox locks a
/// template for a whole clone, so clones from one template run one after another.
fn template<'d>(d: &'d Desired, o: &Observed, b: &mut Conds) -> Flow<(&'d str, u32)> {
    let Some((node, tpl)) = &d.template else {
        return fail(Step::CloneContainer, msg::NO_TEMPLATE);
    };
    if !*asked(&o.clone_slot, Layer::CloneSlot)? {
        b.set(
            C::ContainerCreated,
            false,
            r::WAITING_FOR_TEMPLATE,
            msg::template_busy(*tpl, node),
        );
        return wait(
            Step::CloneContainer,
            r::WAITING_FOR_TEMPLATE,
            format!("waiting for template {tpl}"),
        );
    }
    Continue((node, *tpl))
}

/// The container at the reserved VMID: cloned when confirmed absent, cleaned up after a
/// failed clone, left alone when it is not ours, waited for while locked.
fn container<'o>(
    d: &Desired,
    o: &'o Observed,
    cx: &Inputs,
    b: &mut Conds,
    vmid: u32,
    failed: Option<FailedTask>,
) -> Flow<&'o ContainerObs> {
    let found = b.known(&o.container, Layer::Container, Step::CloneContainer)?;
    if let Some(f) = failed {
        // A failed clone that left our container behind is cleaned up before it is retried.
        if f.kind == TaskKind::Clone
            && let Some(c) = found
            && c.ownership(d) == Ownership::Ours
            && c.lock.is_none()
        {
            return mutate(Mutation::DestroyFailedClone);
        }
        return stop(Control::TaskFailed {
            kind: f.kind,
            message: f.message,
        });
    }
    let Some(c) = found else {
        let (node, tpl) = template(d, o, b)?;
        b.set(
            C::ContainerCreated,
            false,
            r::CLONING,
            format!("cloning template {tpl} on {node}"),
        );
        return mutate(Mutation::Clone);
    };
    if c.ownership(d) == Ownership::Foreign {
        b.set(
            C::VmidAllocated,
            false,
            r::NOT_RESERVED,
            format!("VMID {vmid} is taken by a container that is not ours"),
        );
        return stop(Control::ReserveVmid { replace: true });
    }
    if let Some(lock) = &c.lock {
        // Proxmox holds lock `create` on a clone until its copy is done.
        let cloning = lock == "create";
        let reason = if cloning { r::CLONING } else { r::LOCKED };
        b.set(
            C::ContainerCreated,
            false,
            reason,
            msg::container_locked(vmid, lock),
        );
        if cloning && cx.overdue(C::ContainerCreated, cx.timing.clone_deadline) {
            return fail(
                Step::CloneContainer,
                format!("container {vmid} still locked (create) past the clone deadline"),
            );
        }
        return wait(
            Step::CloneContainer,
            reason,
            format!("container is locked ({lock})"),
        );
    }
    if d.pool_claim.is_some() && !has_marker_tag(&c.tags, d.id) {
        b.set(
            C::ContainerCreated,
            false,
            r::CLAIMING_MEMBER,
            format!("claiming pool member CT {vmid}"),
        );
        return mutate(Mutation::ClaimMarker);
    }
    Continue(c)
}

/// Cores, memory, swap, bridge and our tags, applied as a spec change or drift repair.
fn config(d: &Desired, c: &ContainerObs, b: &mut Conds) -> Flow {
    let change = ConfigChange::between(c, d);
    if !change.is_empty() {
        b.set(
            C::ContainerCreated,
            false,
            r::CONFIGURING,
            "applying cores, memory, network and tags",
        );
        return mutate(Mutation::Configure(change));
    }
    Continue(())
}

/// The rootfs at least as large as `spec.resources.diskGib`: grown after the clone (the
/// template's disk is smaller) and whenever the spec grows it. Never shrunk: Proxmox cannot
/// (the API refuses a smaller size), and a template larger than the spec is left as it is.
/// A size the config does not state is left alone (nothing to compare).
fn disk(d: &Desired, c: &ContainerObs, vmid: u32, b: &mut Conds) -> Flow {
    if let Some(have) = c.rootfs_gib
        && have < d.disk_gib
    {
        let to = d.disk_gib;
        b.set(
            C::ContainerCreated,
            false,
            r::RESIZING_DISK,
            msg::resizing_disk(have, to),
        );
        return mutate(Mutation::ResizeDisk {
            from_gib: have,
            to_gib: to,
        });
    }
    b.set(C::ContainerCreated, true, r::CREATED, format!("CT {vmid}"));
    Continue(())
}

/// Container power as the spec asks, and the reboots it asks for. A start that hangs is
/// bounded by the task deadline, and starting again is also how drift (a stopped container)
/// is repaired.
fn power(d: &Desired, o: &Observed, cx: &Inputs, b: &mut Conds) -> Flow {
    let power = *b.known(&o.power, Layer::Power, Step::StartContainer)?;
    match (d.power, power) {
        (Power::Running, PowerObs::Running) if cx.container_restart_due(d) => {
            b.set(
                C::ContainerRunning,
                false,
                r::REBOOTING,
                "rebooting as asked",
            );
            mutate(Mutation::Reboot)
        }
        (Power::Stopped, PowerObs::Running) => {
            let why = "stopping as the spec asks";
            b.set(C::ContainerRunning, false, r::STOPPING, why);
            mutate(Mutation::Shutdown)
        }
        (Power::Stopped, PowerObs::Stopped) => {
            let why = "stopped as the spec asks";
            b.set(C::ContainerRunning, false, r::STOPPED, why);
            b.set(C::Ready, true, r::READY, why);
            stop(Control::Ready)
        }
        (Power::Running, PowerObs::Stopped) => {
            b.set(C::ContainerRunning, false, r::STARTING, "starting");
            mutate(Mutation::Start)
        }
        (Power::Running, PowerObs::Running) => {
            b.set(C::ContainerRunning, true, r::RUNNING, "running");
            Continue(())
        }
    }
}

/// An IPv4 address on the container (DHCP), within `ip_deadline`.
fn network(o: &Observed, cx: &Inputs, b: &mut Conds) -> Flow {
    match b.known(&o.ip, Layer::Ip, Step::WaitForIp)? {
        Some(ip) => {
            b.set(C::NetworkReady, true, r::HAS_IP, ip.clone());
            Continue(())
        }
        None => {
            if cx.overdue(C::NetworkReady, cx.timing.ip_deadline) {
                return fail(Step::WaitForIp, msg::NO_IP_BEFORE_DEADLINE);
            }
            b.set(
                C::NetworkReady,
                false,
                r::WAITING_FOR_IP,
                "waiting for an address",
            );
            wait(Step::WaitForIp, r::WAITING_FOR_IP, msg::WAITING_FOR_IP)
        }
    }
}

/// The Agent installs the game: it gets its config when idle, is waited for while
/// installing, and is retried in place on an install error, `agent_attempts` times. Once
/// installed, it goes on with the state of the game process.
fn agent<'o>(o: &'o Observed, cx: &Inputs, b: &mut Conds) -> Flow<&'o ProcessObs> {
    let deadline = cx.timing.agent_deadline;
    match asked(&o.agent, Layer::Agent)? {
        Err(e) if e.class == ErrorClass::Transient => {
            // Right after a start the Agent is not listening yet: that is a wait with a
            // deadline, not an outage; an Agent that was ready and stops answering is one.
            if cx.overdue(C::AgentReady, deadline) {
                return fail(Step::WaitForAgent, msg::agent_unreachable(&e.message));
            }
            if cx.status.is_true(C::AgentReady) {
                return b.degraded(Step::WaitForAgent, e);
            }
            b.set(C::AgentReady, false, r::AGENT_STARTING, e.message.clone());
            wait(
                Step::WaitForAgent,
                r::AGENT_STARTING,
                msg::WAITING_FOR_AGENT,
            )
        }
        Err(e) => fail(Step::SendAgentConfig, msg::agent_refused(&e.message)),
        Ok(AgentObs::Idle) => {
            let why = "sending the Agent its config";
            b.set(C::AgentReady, false, r::CONFIG_SENT, why);
            mutate(Mutation::SendAgentConfig)
        }
        Ok(AgentObs::Installing) => {
            if cx.overdue(C::AgentReady, deadline) {
                return fail(Step::WaitForAgent, msg::AGENT_INSTALL_DEADLINE);
            }
            installing_wait(b)
        }
        Ok(AgentObs::Error(message)) => agent_failed(cx, b, message.clone()),
        Ok(AgentObs::Process(state)) => {
            b.set(C::AgentReady, true, r::AGENT_RUNNING, "installed");
            Continue(state)
        }
    }
}

/// The game process as the spec asks (`process`, `restarts.game`): drift is repaired (a
/// `stop` typed at the console is started again), a stop the spec asks for is kept, a crash
/// is started again and then reinstalled, `agent_attempts` times. Goes on with whether the
/// game is stopped as asked.
fn process(d: &Desired, state: &ProcessObs, cx: &Inputs, b: &mut Conds) -> Flow<bool> {
    let deadline = cx.timing.process_deadline;
    match (d.process, state) {
        (Process::Running, ProcessObs::Running) if cx.game_restart_due(d) => {
            b.set(
                C::ProcessRunning,
                false,
                r::RESTARTING,
                "restarting as asked",
            );
            mutate(Mutation::RestartGame)
        }
        (Process::Running, ProcessObs::Running) => {
            b.set(C::ProcessRunning, true, r::RUNNING, "running");
            Continue(false)
        }
        (Process::Running, ProcessObs::Stopped) => {
            let why = "the game is stopped; starting it";
            b.set(C::ProcessRunning, false, r::GAME_STOPPED, why);
            mutate(Mutation::StartGame)
        }
        (Process::Running, ProcessObs::Starting | ProcessObs::Stopping) => {
            let (reason, why) = match state {
                ProcessObs::Starting => (r::STARTING, msg::GAME_STARTING),
                _ => (r::GAME_STOPPING, msg::GAME_STOPPING_BEFORE_START),
            };
            if cx.overdue(C::ProcessRunning, deadline) {
                return fail(Step::StartGame, msg::GAME_START_DEADLINE);
            }
            b.set(C::ProcessRunning, false, reason, why);
            wait(Step::StartGame, reason, why)
        }
        (Process::Running, ProcessObs::Crashed { count, message }) => {
            crashed(*count, message.as_deref(), cx, b)
        }
        (Process::Stopped, ProcessObs::Running | ProcessObs::Starting) => {
            let why = "stopping as the spec asks";
            b.set(C::ProcessRunning, false, r::GAME_STOPPING, why);
            mutate(Mutation::StopGame)
        }
        (Process::Stopped, ProcessObs::Stopping) => {
            if cx.overdue(C::ProcessRunning, deadline) {
                return fail(Step::StopGame, msg::GAME_STOP_DEADLINE);
            }
            let why = "the game is stopping";
            b.set(C::ProcessRunning, false, r::GAME_STOPPING, why);
            wait(Step::StopGame, r::GAME_STOPPING, why)
        }
        (Process::Stopped, ProcessObs::Stopped | ProcessObs::Crashed { .. }) => {
            let why = "stopped as the spec asks";
            b.set(C::ProcessRunning, false, r::STOPPED_AS_ASKED, why);
            Continue(true)
        }
    }
}

/// A crashed game: started again first, reinstalled if that did not help, and failed with
/// the Agent's message after `agent_attempts` crashes in a row.
fn crashed<T>(count: Option<u32>, message: Option<&str>, cx: &Inputs, b: &mut Conds) -> Flow<T> {
    let why = message.map_or_else(|| msg::PROCESS_CRASHED.to_string(), str::to_string);
    b.set(
        C::ProcessRunning,
        false,
        r::GAME_CRASHED,
        msg::crashed(&why, count),
    );
    // Crashes in a row: the Agent's count when it gives one (a crash right after each start
    // never shows Ready in between), else our attempts.
    let crashes = count.unwrap_or(0).max(cx.status.attempts + 1);
    if crashes >= cx.timing.agent_attempts {
        return fail(Step::StartGame, why);
    }
    if cx.status.attempts == 0 {
        mutate(Mutation::StartGame)
    } else {
        mutate(Mutation::SendAgentConfig)
    }
}

fn installing_wait<T>(b: &mut Conds) -> Flow<T> {
    b.set(C::AgentReady, false, r::INSTALLING, "installing");
    wait(Step::WaitForAgent, r::INSTALLING, msg::AGENT_INSTALLING)
}

/// An Agent error or crash: the same config again while attempts remain, then a failure
/// with the Agent's message.
fn agent_failed<T>(cx: &Inputs, b: &mut Conds, message: String) -> Flow<T> {
    b.set(C::AgentReady, false, r::AGENT_ERROR, message.clone());
    if cx.status.attempts + 1 >= cx.timing.agent_attempts {
        return fail(Step::WaitForAgent, message);
    }
    mutate(Mutation::SendAgentConfig)
}

/// Where players reach a game: DNS, the proxy, then a real connectability check (not while
/// the game is stopped as asked: its records stay published). Dev containers are not
/// published.
fn edge(d: &Desired, o: &Observed, b: &mut Conds, stopped_as_asked: bool) -> Flow {
    if !d.needs_edge() {
        for t in [C::DnsPublished, C::ProxyRegistered] {
            b.set(t, true, r::NOT_REQUIRED, "dev containers are not published");
        }
        b.set(C::Ready, true, r::READY, "ready");
        return Continue(());
    }
    if !b
        .known(&o.dns, Layer::Dns, Step::PublishEdge)?
        .desired_present
    {
        let why = "publishing A and SRV records";
        b.set(C::DnsPublished, false, r::NOT_PUBLISHED, why);
        return mutate(Mutation::PublishDns);
    }
    b.set(
        C::DnsPublished,
        true,
        r::PUBLISHED,
        "A and SRV records in place",
    );
    if !b
        .known(&o.proxy, Layer::Proxy, Step::PublishEdge)?
        .desired_present
    {
        let why = "registering with the proxy";
        b.set(C::ProxyRegistered, false, r::NOT_REGISTERED, why);
        return mutate(Mutation::RegisterProxy);
    }
    b.set(C::ProxyRegistered, true, r::REGISTERED, "registered");
    if stopped_as_asked {
        b.set(
            C::Ready,
            true,
            r::READY,
            "the game is stopped as the spec asks",
        );
        return Continue(());
    }
    let unanswered = match asked(&o.slp, Layer::Slp)? {
        Ok(true) => None,
        Ok(false) => Some(msg::NO_SLP_ANSWER.to_string()),
        Err(e) => Some(e.message.clone()),
    };
    if let Some(why) = unanswered {
        b.set(C::Ready, false, r::NOT_CONNECTABLE, why.clone());
        return wait(Step::PublishEdge, r::NOT_CONNECTABLE, why);
    }
    b.set(C::Ready, true, r::READY, "ready");
    Continue(())
}
