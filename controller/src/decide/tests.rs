//! Decision tables: each case starts from a healthy game server, changes what it is about,
//! and states the action and the condition the runbook tells on-call to look for.

use super::*;
use crate::backends::Backend;
use crate::ownership::marker_line;
use crate::reason::{self as r, msg};
use model::status::InFlightTask;
use model::{ErrorClass, ServerStatus};

fn game(p: ProcessObs) -> Option<Seen<AgentObs>> {
    Some(Ok(AgentObs::Process(p)))
}

fn crashed(count: Option<u32>) -> ProcessObs {
    ProcessObs::Crashed {
        count,
        message: Some("exit code 1".into()),
    }
}

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
        clone_mode: model::CloneMode::Full,
        clone_storage: None,
        node: Some("pve".into()),
        hostname: Some("mc-paper-5001".into()),
        pool_claim: None,
        cores: 2,
        memory_mib: 2048,
        swap_mib: 512,
        disk_gib: 16,
        bridge: "vmbr3".into(),
        power: Power::Running,
        process: Process::Running,
        restarts: Restarts::default(),
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
        rootfs_gib: Some(16),
    }
}

/// A free warm-pool member at VMID 5001, as the pool left it.
pub(crate) fn pool_member() -> ContainerObs {
    use crate::ownership::{POOL_TAG, pool_hostname, pool_marker_line};
    ContainerObs {
        hostname: Some(pool_hostname(5001)),
        description: format!("{}\n", pool_marker_line(900)),
        tags: vec![FLEET_TAG.into(), POOL_TAG.into()],
        cores: Some(1),
        ..ours()
    }
}

pub(crate) fn down() -> Unavailable {
    Unavailable {
        backend: Backend::Proxmox,
        class: ErrorClass::Transient,
        message: "failed to read from command socket: Connection reset by peer".into(),
    }
}

pub(crate) fn degraded_cond() -> Cond {
    Cond {
        type_: ConditionType::Degraded,
        status: ConditionStatus::True,
        reason: r::PROXMOX_UNAVAILABLE,
        message: format!("proxmox: {}", down().message),
    }
}

/// Exactly the desired edge records.
pub(crate) fn published() -> EdgeObs {
    EdgeObs {
        desired_present: true,
        any_ours_present: true,
    }
}

/// Nothing of ours published.
pub(crate) fn absent() -> EdgeObs {
    EdgeObs {
        desired_present: false,
        any_ours_present: false,
    }
}

/// Something of ours, but not what is desired (an old address).
pub(crate) fn stale() -> EdgeObs {
    EdgeObs {
        desired_present: false,
        any_ours_present: true,
    }
}

/// Everything observed and healthy: a Ready game server.
pub(crate) fn all_good() -> Observed {
    Observed {
        task: None,
        container: Some(Ok(Some(ours()))),
        power: Some(Ok(PowerObs::Running)),
        ip: Some(Ok(Some("127.1.19.137".into()))),
        agent: Some(Ok(AgentObs::RUNNING)),
        dns: Some(Ok(published())),
        proxy: Some(Ok(published())),
        slp: Some(Ok(true)),
        clone_slot: None,
        agent_detail: None,
        ..Observed::default()
    }
}

pub(crate) fn in_flight(action: TaskKind, started: DateTime<Utc>) -> InFlightTask {
    InFlightTask {
        upid: "UPID:pve:00001234:00ABCDEF:65000000:vzclone:900:zlh@pve!ctl:".into(),
        action,
        started_at: started,
    }
}

pub(crate) fn ctl(c: Control) -> Action {
    Action::Control(c)
}

pub(crate) fn mu(m: Mutation) -> Action {
    Action::Mutate(m)
}

pub(crate) fn waits(step: Step, reason: Reason, message: &str) -> Action {
    ctl(Control::Wait {
        step,
        reason,
        message: message.into(),
    })
}

pub(crate) fn fails(step: Step, message: &str) -> Action {
    ctl(Control::Fail {
        step,
        message: message.into(),
    })
}

pub(crate) fn cond(t: ConditionType, ok: bool, reason: Reason, message: &str) -> Option<Cond> {
    Some(Cond::new(t, ok, reason, message))
}

pub(crate) struct Case {
    pub reason: &'static str,
    pub desired: fn(&mut Desired),
    pub observed: fn(&mut Observed),
    pub status: fn(&mut ServerStatus),
    pub want: Action,
    /// The condition the deciding layer writes (`None`: the row is only about the action).
    pub cond: Option<Cond>,
}

pub(crate) fn none(_: &mut Desired) {}
pub(crate) fn no_obs(_: &mut Observed) {}
pub(crate) fn no_status(_: &mut ServerStatus) {}

/// Each case starts from a healthy game server (`desired`, `all_good`, empty status),
/// applies its changes, and checks the decided action and the condition of its type.
pub(crate) fn run_table(cases: Vec<Case>, decide: fn(&Desired, &Observed, &Inputs) -> Decision) {
    let timing = ControllerSection::default();
    for c in cases {
        let mut d = desired();
        (c.desired)(&mut d);
        let mut o = all_good();
        (c.observed)(&mut o);
        let mut s = ServerStatus::default();
        (c.status)(&mut s);
        let cx = Inputs {
            status: &s,
            now: t0(),
            timing: &timing,
        };
        let got = decide(&d, &o, &cx);
        assert_eq!(got.action, c.want, "{}", c.reason);
        if let Some(want) = &c.cond {
            let written = got.conditions.iter().rev().find(|w| w.type_ == want.type_);
            assert_eq!(written, Some(want), "{}: condition", c.reason);
        }
    }
}

fn waiting_for_template(s: &mut ServerStatus) {
    s.progress.template_wait = Some(900);
}

/// Provisioned up to the Agent, which is installing the config it was sent.
fn installing(s: &mut ServerStatus) {
    for t in [
        ConditionType::ContainerCreated,
        ConditionType::ContainerRunning,
        ConditionType::NetworkReady,
    ] {
        s.set_condition(t, ConditionStatus::True, "", "", 1, t0());
    }
    s.set_condition(
        ConditionType::AgentReady,
        ConditionStatus::False,
        r::INSTALLING.as_str(),
        "",
        1,
        t0(),
    );
    s.progress.agent_install = Some(1);
    s.ip = Some("127.1.19.137".into());
}

fn agent_down() -> Unavailable {
    Unavailable {
        backend: Backend::Agent,
        class: ErrorClass::Transient,
        message: "connection refused".into(),
    }
}

fn dns_down() -> Unavailable {
    Unavailable {
        backend: Backend::Cloudflare,
        class: ErrorClass::Transient,
        message: "429".into(),
    }
}

#[test]
fn provisioning_table() {
    use ConditionType as C;
    let cases = vec![
        Case {
            reason: "no reservation: reserve a VMID before anything exists in Proxmox",
            desired: |d| d.vmid = None,
            observed: no_obs,
            status: no_status,
            want: ctl(Control::ReserveVmid { replace: false }),
            cond: cond(C::VmidAllocated, false, r::NOT_RESERVED, "reserving a VMID"),
        },
        Case {
            reason: "a claimed pool member with the pool's marker: rewrite it to ours first",
            desired: |d| d.pool_claim = Some(5001),
            observed: |o| o.container = Some(Ok(Some(pool_member()))),
            status: no_status,
            want: mu(Mutation::ClaimMarker),
            cond: cond(
                C::ContainerCreated,
                false,
                r::CLAIMING_MEMBER,
                "claiming pool member CT 5001",
            ),
        },
        Case {
            reason: "a pool member this server did not claim is foreign: never touched",
            desired: none,
            observed: |o| o.container = Some(Ok(Some(pool_member()))),
            status: no_status,
            want: ctl(Control::ReserveVmid { replace: true }),
            cond: None,
        },
        Case {
            reason: "a claim at another VMID proves nothing: the pool member there is foreign",
            desired: |d| d.pool_claim = Some(5002),
            observed: |o| o.container = Some(Ok(Some(pool_member()))),
            status: no_status,
            want: ctl(Control::ReserveVmid { replace: true }),
            cond: None,
        },
        Case {
            reason: "a claim whose marker is rewritten goes on like any container of ours",
            desired: |d| d.pool_claim = Some(5001),
            observed: no_obs,
            status: no_status,
            want: ctl(Control::Ready),
            cond: None,
        },
        Case {
            reason: "a new server (no record of a container) asks for its clone slot before \
                     reading anything: a queue of new servers costs Proxmox nothing",
            desired: none,
            observed: |o| {
                o.container = None;
                o.clone_slot = None;
            },
            status: no_status,
            want: ctl(Control::Observe(Layer::CloneSlot)),
            cond: cond(C::VmidAllocated, true, r::RESERVED, "VMID 5001"),
        },
        Case {
            reason: "a new server that claimed a pool member reads it at once: it needs no \
                     clone, so it never queues for the clone slot",
            desired: |d| d.pool_claim = Some(5001),
            observed: |o| {
                o.container = None;
                o.clone_slot = None;
            },
            status: no_status,
            want: ctl(Control::Observe(Layer::Container)),
            cond: cond(C::VmidAllocated, true, r::RESERVED, "VMID 5001"),
        },
        Case {
            reason: "the container is observed before anything is done to it",
            desired: none,
            observed: |o| o.container = None,
            status: |s| s.progress.owned_vmid = Some(5001),
            want: ctl(Control::Observe(Layer::Container)),
            cond: cond(C::VmidAllocated, true, r::RESERVED, "VMID 5001"),
        },
        Case {
            reason: "slot in hand, the new server's container is read before it is cloned",
            desired: none,
            observed: |o| {
                o.container = None;
                o.clone_slot = Some(true);
            },
            status: no_status,
            want: ctl(Control::Observe(Layer::Container)),
            cond: cond(C::VmidAllocated, true, r::RESERVED, "VMID 5001"),
        },
        Case {
            reason: "a transient error is unknown, not absent: degrade, never clone",
            desired: none,
            observed: |o| o.container = Some(Err(down())),
            status: no_status,
            want: ctl(Control::Degraded {
                step: Step::CloneContainer,
                error: down(),
            }),
            cond: Some(degraded_cond()),
        },
        Case {
            reason: "confirmed absent: ask for the template slot first",
            desired: none,
            observed: |o| o.container = Some(Ok(None)),
            status: no_status,
            want: ctl(Control::Observe(Layer::CloneSlot)),
            cond: None,
        },
        Case {
            reason: "confirmed absent and the template is free: clone",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(None));
                o.clone_slot = Some(true)
            },
            status: no_status,
            want: mu(Mutation::Clone),
            cond: cond(
                C::ContainerCreated,
                false,
                r::CLONING,
                "cloning template 900 on pve",
            ),
        },
        Case {
            reason: "the template is being cloned for another server: wait, do not collect lock errors",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(None));
                o.clone_slot = Some(false)
            },
            status: no_status,
            want: waits(
                Step::CloneContainer,
                r::WAITING_FOR_TEMPLATE,
                "waiting for template 900",
            ),
            cond: cond(
                C::ContainerCreated,
                false,
                r::WAITING_FOR_TEMPLATE,
                "template 900 on pve is being cloned for another server",
            ),
        },
        Case {
            reason: "a server waiting for its template asks for it before reading Proxmox",
            desired: none,
            observed: |o| o.container = None,
            status: waiting_for_template,
            want: ctl(Control::Observe(Layer::CloneSlot)),
            cond: None,
        },
        Case {
            reason: "still no template: wait without any Proxmox call",
            desired: none,
            observed: |o| {
                o.container = None;
                o.clone_slot = Some(false)
            },
            status: waiting_for_template,
            want: waits(
                Step::CloneContainer,
                r::WAITING_FOR_TEMPLATE,
                "waiting for template 900",
            ),
            cond: cond(
                C::ContainerCreated,
                false,
                r::WAITING_FOR_TEMPLATE,
                "template 900 on pve is being cloned for another server",
            ),
        },
        Case {
            reason: "the template is ours now: the container is observed before any clone",
            desired: none,
            observed: |o| {
                o.container = None;
                o.clone_slot = Some(true)
            },
            status: waiting_for_template,
            want: ctl(Control::Observe(Layer::Container)),
            cond: None,
        },
        Case {
            reason: "during a long install the Agent is asked first, without reading Proxmox",
            desired: none,
            observed: |o| *o = Observed::default(),
            status: installing,
            want: ctl(Control::Observe(Layer::Agent)),
            cond: None,
        },
        Case {
            reason: "still installing: wait, Proxmox untouched",
            desired: none,
            observed: |o| {
                *o = Observed::default();
                o.agent = Some(Ok(AgentObs::Installing))
            },
            status: installing,
            want: waits(Step::WaitForAgent, r::INSTALLING, msg::AGENT_INSTALLING),
            cond: cond(C::AgentReady, false, r::INSTALLING, "installing"),
        },
        Case {
            reason: "an install recorded for an older generation is no shortcut",
            desired: |d| d.generation = 2,
            observed: |o| *o = Observed::default(),
            status: installing,
            want: ctl(Control::Observe(Layer::Container)),
            cond: None,
        },
        Case {
            reason: "an Agent that does not answer during install: the container is looked at again",
            desired: none,
            observed: |o| {
                *o = Observed::default();
                o.agent = Some(Err(agent_down()))
            },
            status: installing,
            want: ctl(Control::Observe(Layer::Container)),
            cond: None,
        },
        Case {
            reason: "no template offers the spec: fail visibly",
            desired: |d| d.template = None,
            observed: |o| o.container = Some(Ok(None)),
            status: no_status,
            want: fails(Step::CloneContainer, msg::NO_TEMPLATE),
            cond: None,
        },
        Case {
            reason: "someone else's container at our VMID: reserve another, never touch it",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(Some(ContainerObs {
                    hostname: Some("legacy".into()),
                    description: String::new(),
                    tags: vec![],
                    ..ours()
                })))
            },
            status: no_status,
            want: ctl(Control::ReserveVmid { replace: true }),
            cond: cond(
                C::VmidAllocated,
                false,
                r::NOT_RESERVED,
                "VMID 5001 is taken by a container that is not ours",
            ),
        },
        Case {
            reason: "our description marker but another hostname is not proof of ownership",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(Some(ContainerObs {
                    hostname: Some("other".into()),
                    tags: vec![],
                    ..ours()
                })))
            },
            status: no_status,
            want: ctl(Control::ReserveVmid { replace: true }),
            cond: None,
        },
        Case {
            reason: "adoption after a crash between clone and record: marker + hostname at our VMID, still cloning → wait",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(Some(ContainerObs {
                    tags: vec![],
                    lock: Some("create".into()),
                    ..ours()
                })))
            },
            status: no_status,
            want: waits(
                Step::CloneContainer,
                r::CLONING,
                "container is locked (create)",
            ),
            cond: cond(
                C::ContainerCreated,
                false,
                r::CLONING,
                "container 5001 is locked (create)",
            ),
        },
        Case {
            reason: "a container locked by a backup is a wait, not a failure",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(Some(ContainerObs {
                    lock: Some("backup".into()),
                    ..ours()
                })))
            },
            status: no_status,
            want: waits(
                Step::CloneContainer,
                r::LOCKED,
                "container is locked (backup)",
            ),
            cond: cond(
                C::ContainerCreated,
                false,
                r::LOCKED,
                "container 5001 is locked (backup)",
            ),
        },
        Case {
            reason: "adoption: our untagged clone is configured (tags added), not re-cloned",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(Some(ContainerObs {
                    tags: vec![],
                    cores: Some(1),
                    ..ours()
                })))
            },
            status: no_status,
            want: mu(Mutation::Configure(ConfigChange {
                cores: Some(2),
                tags: Some(vec![FLEET_TAG.into(), marker_tag(id())]),
                ..Default::default()
            })),
            cond: cond(
                C::ContainerCreated,
                false,
                r::CONFIGURING,
                "applying cores, memory, network and tags",
            ),
        },
        Case {
            reason: "the template's smaller rootfs is grown to the spec after the clone",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(Some(ContainerObs {
                    rootfs_gib: Some(8),
                    ..ours()
                })))
            },
            status: no_status,
            want: mu(Mutation::ResizeDisk {
                from_gib: 8,
                to_gib: 16,
            }),
            cond: cond(
                C::ContainerCreated,
                false,
                r::RESIZING_DISK,
                &msg::resizing_disk(8, 16),
            ),
        },
        Case {
            reason: "a spec that grows the disk grows the rootfs",
            desired: |d| d.disk_gib = 64,
            observed: no_obs,
            status: no_status,
            want: mu(Mutation::ResizeDisk {
                from_gib: 16,
                to_gib: 64,
            }),
            cond: None,
        },
        Case {
            reason: "a rootfs larger than the spec is never shrunk (Proxmox cannot)",
            desired: |d| d.disk_gib = 4,
            observed: no_obs,
            status: no_status,
            want: ctl(Control::Ready),
            cond: cond(C::ContainerCreated, true, r::CREATED, "CT 5001"),
        },
        Case {
            reason: "a rootfs whose size the config does not state is left alone",
            desired: none,
            observed: |o| {
                o.container = Some(Ok(Some(ContainerObs {
                    rootfs_gib: None,
                    ..ours()
                })))
            },
            status: no_status,
            want: ctl(Control::Ready),
            cond: cond(C::ContainerCreated, true, r::CREATED, "CT 5001"),
        },
        Case {
            reason: "the config is applied before the disk: one change at a time",
            desired: |d| {
                d.memory_mib = 4096;
                d.disk_gib = 64;
            },
            observed: no_obs,
            status: no_status,
            want: mu(Mutation::Configure(ConfigChange {
                memory_mib: Some(4096),
                ..Default::default()
            })),
            cond: None,
        },
        Case {
            reason: "resource drift or a spec change is applied",
            desired: |d| d.memory_mib = 4096,
            observed: no_obs,
            status: no_status,
            want: mu(Mutation::Configure(ConfigChange {
                memory_mib: Some(4096),
                ..Default::default()
            })),
            cond: None,
        },
        Case {
            reason: "a running task is waited for, not re-issued",
            desired: none,
            observed: |o| o.task = Some(Ok(TaskObs::Running)),
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Clone, t0())),
            want: ctl(Control::AwaitTask),
            cond: None,
        },
        Case {
            reason: "a task is checked before anything else",
            desired: none,
            observed: no_obs,
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Clone, t0())),
            want: ctl(Control::Observe(Layer::Task)),
            cond: None,
        },
        Case {
            reason: "a finished task is forgotten and the next step decided",
            desired: none,
            observed: |o| o.task = Some(Ok(TaskObs::Succeeded)),
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Start, t0())),
            want: ctl(Control::ClearTask),
            cond: None,
        },
        Case {
            reason: "a task past its deadline fails visibly",
            desired: none,
            observed: |o| o.task = Some(Ok(TaskObs::Running)),
            status: |s| {
                s.in_flight_task = Some(in_flight(
                    TaskKind::Clone,
                    t0() - chrono::Duration::hours(2),
                ))
            },
            want: fails(
                Step::CloneContainer,
                "Proxmox task UPID:pve:00001234:00ABCDEF:65000000:vzclone:900:zlh@pve!ctl: (clone) still running after 30m",
            ),
            cond: None,
        },
        Case {
            reason: "a failed clone that left our container behind is cleaned up first",
            desired: none,
            observed: |o| o.task = Some(Ok(TaskObs::Failed("clone failed: disk full".into()))),
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Clone, t0())),
            want: mu(Mutation::DestroyFailedClone),
            cond: None,
        },
        Case {
            reason: "a failed clone with nothing left is recorded and retried later",
            desired: none,
            observed: |o| {
                o.task = Some(Ok(TaskObs::Failed("clone failed: disk full".into())));
                o.container = Some(Ok(None))
            },
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Clone, t0())),
            want: ctl(Control::TaskFailed {
                kind: TaskKind::Clone,
                message: "clone failed: disk full".into(),
            }),
            cond: None,
        },
        Case {
            reason: "a failed clone never destroys a container that is not ours",
            desired: none,
            observed: |o| {
                o.task = Some(Ok(TaskObs::Failed("x".into())));
                o.container = Some(Ok(Some(ContainerObs {
                    tags: vec![],
                    description: String::new(),
                    ..ours()
                })))
            },
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Clone, t0())),
            want: ctl(Control::TaskFailed {
                kind: TaskKind::Clone,
                message: "x".into(),
            }),
            cond: None,
        },
        Case {
            reason: "a task status that cannot be read is unknown: degrade",
            desired: none,
            observed: |o| o.task = Some(Err(down())),
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Start, t0())),
            want: ctl(Control::Degraded {
                step: Step::StartContainer,
                error: down(),
            }),
            cond: Some(degraded_cond()),
        },
        Case {
            reason: "stopped but the spec says running: start (drift repair too)",
            desired: none,
            observed: |o| o.power = Some(Ok(PowerObs::Stopped)),
            status: no_status,
            want: mu(Mutation::Start),
            cond: cond(C::ContainerRunning, false, r::STARTING, "starting"),
        },
        Case {
            reason: "power state unknown: degrade, do not start blindly",
            desired: none,
            observed: |o| o.power = Some(Err(down())),
            status: no_status,
            want: ctl(Control::Degraded {
                step: Step::StartContainer,
                error: down(),
            }),
            cond: Some(degraded_cond()),
        },
        Case {
            reason: "the spec says stopped: shut down",
            desired: |d| d.power = Power::Stopped,
            observed: no_obs,
            status: no_status,
            want: mu(Mutation::Shutdown),
            cond: cond(
                C::ContainerRunning,
                false,
                r::STOPPING,
                "stopping as the spec asks",
            ),
        },
        Case {
            reason: "stopped as asked is Ready",
            desired: |d| d.power = Power::Stopped,
            observed: |o| o.power = Some(Ok(PowerObs::Stopped)),
            status: no_status,
            want: ctl(Control::Ready),
            cond: cond(C::Ready, true, r::READY, "stopped as the spec asks"),
        },
        Case {
            reason: "no address yet: wait",
            desired: none,
            observed: |o| o.ip = Some(Ok(None)),
            status: no_status,
            want: waits(Step::WaitForIp, r::WAITING_FOR_IP, msg::WAITING_FOR_IP),
            cond: cond(
                C::NetworkReady,
                false,
                r::WAITING_FOR_IP,
                "waiting for an address",
            ),
        },
        Case {
            reason: "the IP wait has a deadline",
            desired: none,
            observed: |o| o.ip = Some(Ok(None)),
            status: |s| {
                s.set_condition(
                    ConditionType::NetworkReady,
                    ConditionStatus::False,
                    r::WAITING_FOR_IP.as_str(),
                    "",
                    1,
                    t0() - chrono::Duration::hours(1),
                );
            },
            want: fails(Step::WaitForIp, msg::NO_IP_BEFORE_DEADLINE),
            cond: None,
        },
        Case {
            reason: "an idle Agent gets its config",
            desired: none,
            observed: |o| o.agent = Some(Ok(AgentObs::Idle)),
            status: no_status,
            want: mu(Mutation::SendAgentConfig),
            cond: cond(
                C::AgentReady,
                false,
                r::CONFIG_SENT,
                "sending the Agent its config",
            ),
        },
        Case {
            reason: "an Agent back to idle after a container restart gets its config again",
            desired: none,
            observed: |o| o.agent = Some(Ok(AgentObs::Idle)),
            status: |s| {
                s.set_condition(
                    ConditionType::Ready,
                    ConditionStatus::True,
                    r::READY.as_str(),
                    "",
                    1,
                    t0(),
                );
            },
            want: mu(Mutation::SendAgentConfig),
            cond: None,
        },
        Case {
            reason: "an installing Agent is waited for",
            desired: none,
            observed: |o| o.agent = Some(Ok(AgentObs::Installing)),
            status: no_status,
            want: waits(Step::WaitForAgent, r::INSTALLING, msg::AGENT_INSTALLING),
            cond: cond(C::AgentReady, false, r::INSTALLING, "installing"),
        },
        Case {
            reason: "an install past the Agent deadline fails visibly",
            desired: none,
            observed: |o| o.agent = Some(Ok(AgentObs::Installing)),
            status: |s| {
                s.set_condition(
                    ConditionType::AgentReady,
                    ConditionStatus::False,
                    r::INSTALLING.as_str(),
                    "",
                    1,
                    t0() - chrono::Duration::hours(1),
                );
            },
            want: fails(Step::WaitForAgent, msg::AGENT_INSTALL_DEADLINE),
            cond: None,
        },
        Case {
            reason: "an Agent error is retried in place while attempts remain",
            desired: none,
            observed: |o| o.agent = Some(Ok(AgentObs::Error("download failed".into()))),
            status: no_status,
            want: mu(Mutation::SendAgentConfig),
            cond: cond(C::AgentReady, false, r::AGENT_ERROR, "download failed"),
        },
        Case {
            reason: "an Agent error after the last attempt fails with the step and message",
            desired: none,
            observed: |o| o.agent = Some(Ok(AgentObs::Error("download failed".into()))),
            status: |s| s.attempts = 2,
            want: fails(Step::WaitForAgent, "download failed"),
            cond: cond(C::AgentReady, false, r::AGENT_ERROR, "download failed"),
        },
        Case {
            reason: "an Agent not answering right after start is a wait",
            desired: none,
            observed: |o| o.agent = Some(Err(agent_down())),
            status: no_status,
            want: waits(
                Step::WaitForAgent,
                r::AGENT_STARTING,
                msg::WAITING_FOR_AGENT,
            ),
            cond: cond(
                C::AgentReady,
                false,
                r::AGENT_STARTING,
                "connection refused",
            ),
        },
        Case {
            reason: "an Agent that was ready and stops answering is an outage, not a wait",
            desired: none,
            observed: |o| o.agent = Some(Err(agent_down())),
            status: |s| {
                s.set_condition(
                    ConditionType::AgentReady,
                    ConditionStatus::True,
                    r::AGENT_RUNNING.as_str(),
                    "",
                    1,
                    t0(),
                );
            },
            want: ctl(Control::Degraded {
                step: Step::WaitForAgent,
                error: agent_down(),
            }),
            cond: cond(
                C::Degraded,
                true,
                r::AGENT_UNAVAILABLE,
                "agent: connection refused",
            ),
        },
        Case {
            reason: "an Agent that refuses us (not transient) fails: a wrong token does not fix itself",
            desired: none,
            observed: |o| {
                o.agent = Some(Err(Unavailable {
                    class: ErrorClass::Unauthorized,
                    message: "401".into(),
                    ..agent_down()
                }))
            },
            status: no_status,
            want: fails(Step::SendAgentConfig, "Agent refused: 401"),
            cond: None,
        },
        Case {
            reason: "missing DNS records are published",
            desired: none,
            observed: |o| o.dns = Some(Ok(absent())),
            status: no_status,
            want: mu(Mutation::PublishDns),
            cond: cond(
                C::DnsPublished,
                false,
                r::NOT_PUBLISHED,
                "publishing A and SRV records",
            ),
        },
        Case {
            reason: "stale DNS records are repaired",
            desired: none,
            observed: |o| o.dns = Some(Ok(stale())),
            status: no_status,
            want: mu(Mutation::PublishDns),
            cond: None,
        },
        Case {
            reason: "DNS unreachable degrades, the server keeps running",
            desired: none,
            observed: |o| o.dns = Some(Err(dns_down())),
            status: no_status,
            want: ctl(Control::Degraded {
                step: Step::PublishEdge,
                error: dns_down(),
            }),
            cond: cond(C::Degraded, true, r::DNS_UNAVAILABLE, "cloudflare: 429"),
        },
        Case {
            reason: "a proxy that forgot the registration (restart) gets it again",
            desired: none,
            observed: |o| o.proxy = Some(Ok(absent())),
            status: no_status,
            want: mu(Mutation::RegisterProxy),
            cond: cond(
                C::ProxyRegistered,
                false,
                r::NOT_REGISTERED,
                "registering with the proxy",
            ),
        },
        Case {
            reason: "not connectable yet is a wait, not Ready",
            desired: none,
            observed: |o| o.slp = Some(Ok(false)),
            status: no_status,
            want: waits(Step::PublishEdge, r::NOT_CONNECTABLE, msg::NO_SLP_ANSWER),
            cond: cond(C::Ready, false, r::NOT_CONNECTABLE, msg::NO_SLP_ANSWER),
        },
        Case {
            reason: "everything in place is Ready",
            desired: none,
            observed: no_obs,
            status: no_status,
            want: ctl(Control::Ready),
            cond: cond(C::Ready, true, r::READY, "ready"),
        },
        Case {
            reason: "dev containers are Ready without edge steps",
            desired: |d| {
                d.kind = Kind::Dev;
                d.bridge = "vmbr3".into()
            },
            observed: |o| {
                o.dns = None;
                o.proxy = None;
                o.slp = None
            },
            status: no_status,
            want: ctl(Control::Ready),
            cond: cond(
                C::DnsPublished,
                true,
                r::NOT_REQUIRED,
                "dev containers are not published",
            ),
        },
        Case {
            reason: "a stop typed at the console is drift: the game is started again, never failed",
            desired: none,
            observed: |o| o.agent = game(ProcessObs::Stopped),
            status: no_status,
            want: mu(Mutation::StartGame),
            cond: cond(
                C::ProcessRunning,
                false,
                r::GAME_STOPPED,
                "the game is stopped; starting it",
            ),
        },
        Case {
            reason: "a starting game is waited for",
            desired: none,
            observed: |o| o.agent = game(ProcessObs::Starting),
            status: no_status,
            want: waits(Step::StartGame, r::STARTING, msg::GAME_STARTING),
            cond: cond(C::ProcessRunning, false, r::STARTING, msg::GAME_STARTING),
        },
        Case {
            reason: "a game stopping on its own is waited for before it is started",
            desired: none,
            observed: |o| o.agent = game(ProcessObs::Stopping),
            status: no_status,
            want: waits(
                Step::StartGame,
                r::GAME_STOPPING,
                msg::GAME_STOPPING_BEFORE_START,
            ),
            cond: None,
        },
        Case {
            reason: "a start that never finishes is bounded by the process deadline",
            desired: none,
            observed: |o| o.agent = game(ProcessObs::Starting),
            status: |s| {
                s.set_condition(
                    ConditionType::ProcessRunning,
                    ConditionStatus::False,
                    r::STARTING.as_str(),
                    "",
                    1,
                    t0() - chrono::Duration::hours(1),
                );
            },
            want: fails(Step::StartGame, msg::GAME_START_DEADLINE),
            cond: None,
        },
        Case {
            reason: "a crashed game is started again first (an attempt)",
            desired: none,
            observed: |o| o.agent = game(crashed(Some(1))),
            status: no_status,
            want: mu(Mutation::StartGame),
            cond: cond(
                C::ProcessRunning,
                false,
                r::GAME_CRASHED,
                "exit code 1 (crash 1 in a row)",
            ),
        },
        Case {
            reason: "a game that crashes again after a start is reinstalled",
            desired: none,
            observed: |o| o.agent = game(crashed(Some(2))),
            status: |s| s.attempts = 1,
            want: mu(Mutation::SendAgentConfig),
            cond: None,
        },
        Case {
            reason: "after agent_attempts crashes in a row the server fails with the Agent's message",
            desired: none,
            observed: |o| o.agent = game(crashed(Some(3))),
            status: no_status,
            want: fails(Step::StartGame, "exit code 1"),
            cond: None,
        },
        Case {
            reason: "an Agent that does not count crashes is failed on our attempts",
            desired: none,
            observed: |o| o.agent = game(crashed(None)),
            status: |s| s.attempts = 2,
            want: fails(Step::StartGame, "exit code 1"),
            cond: None,
        },
        Case {
            reason: "the spec stops the game: it is stopped",
            desired: |d| d.process = Process::Stopped,
            observed: no_obs,
            status: no_status,
            want: mu(Mutation::StopGame),
            cond: cond(
                C::ProcessRunning,
                false,
                r::GAME_STOPPING,
                "stopping as the spec asks",
            ),
        },
        Case {
            reason: "a game starting against a stopped spec is stopped",
            desired: |d| d.process = Process::Stopped,
            observed: |o| o.agent = game(ProcessObs::Starting),
            status: no_status,
            want: mu(Mutation::StopGame),
            cond: None,
        },
        Case {
            reason: "a stopping game is waited for",
            desired: |d| d.process = Process::Stopped,
            observed: |o| o.agent = game(ProcessObs::Stopping),
            status: no_status,
            want: waits(Step::StopGame, r::GAME_STOPPING, "the game is stopping"),
            cond: None,
        },
        Case {
            reason: "stopped as asked is Ready, without a Server List Ping, the edge left published",
            desired: |d| d.process = Process::Stopped,
            observed: |o| {
                o.agent = game(ProcessObs::Stopped);
                o.slp = None
            },
            status: no_status,
            want: ctl(Control::Ready),
            cond: cond(
                C::ProcessRunning,
                false,
                r::STOPPED_AS_ASKED,
                "stopped as the spec asks",
            ),
        },
        Case {
            reason: "stopped as asked still repairs the edge",
            desired: |d| d.process = Process::Stopped,
            observed: |o| {
                o.agent = game(ProcessObs::Stopped);
                o.dns = Some(Ok(absent()))
            },
            status: no_status,
            want: mu(Mutation::PublishDns),
            cond: None,
        },
        Case {
            reason: "an Agent that forgot its config gets it even while the game is to stay stopped",
            desired: |d| d.process = Process::Stopped,
            observed: |o| o.agent = Some(Ok(AgentObs::Idle)),
            status: no_status,
            want: mu(Mutation::SendAgentConfig),
            cond: None,
        },
        Case {
            reason: "a pending game restart restarts a running game",
            desired: |d| d.restarts.game = 1,
            observed: no_obs,
            status: no_status,
            want: mu(Mutation::RestartGame),
            cond: cond(
                C::ProcessRunning,
                false,
                r::RESTARTING,
                "restarting as asked",
            ),
        },
        Case {
            reason: "a restart already carried out is not repeated",
            desired: |d| d.restarts.game = 1,
            observed: no_obs,
            status: |s| s.observed_restarts.game = 1,
            want: ctl(Control::Ready),
            cond: None,
        },
        Case {
            reason: "a pending container restart reboots the container through Proxmox",
            desired: |d| d.restarts.container = 2,
            observed: no_obs,
            status: |s| s.observed_restarts.container = 1,
            want: mu(Mutation::Reboot),
            cond: cond(
                C::ContainerRunning,
                false,
                r::REBOOTING,
                "rebooting as asked",
            ),
        },
        Case {
            reason: "a reboot task is waited for like any task",
            desired: |d| d.restarts.container = 1,
            observed: |o| o.task = Some(Ok(TaskObs::Running)),
            status: |s| s.in_flight_task = Some(in_flight(TaskKind::Reboot, t0())),
            want: ctl(Control::AwaitTask),
            cond: None,
        },
    ];
    run_table(cases, decide);
}
