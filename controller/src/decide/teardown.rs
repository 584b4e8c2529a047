//! Teardown (deletion requested), step by step (docs/reconcile-contract.md, rule 6):
//! unregister the proxy, delete the DNS records, wait for any task, stop the container,
//! destroy it, archive the row. Each step is safe to repeat after a crash, and a transient
//! error delays a step but never skips it.

use super::{
    Conds, Control, Decision, Desired, Flow, Inputs, Layer, Mutation, Observed, PowerObs, TaskObs,
    Unavailable, mutate, run, stop, wait,
};
use crate::backends::Backend;
use crate::ownership::Ownership;
use crate::reason as r;
use crate::reason::msg;
use model::ErrorClass;
use model::Step;
use std::ops::ControlFlow::Continue;

pub fn decide_teardown(d: &Desired, o: &Observed, cx: &Inputs) -> Decision {
    run(|b| {
        edge(d, o, b)?;
        if d.vmid.is_none() {
            return stop(Control::Archive);
        }
        task(o, cx, b)?;
        container(d, o, b)
    })
}

/// The proxy registration first (players stop being routed), then the DNS records.
fn edge(d: &Desired, o: &Observed, b: &mut Conds) -> Flow {
    if !d.needs_edge() {
        return Continue(());
    }
    if b.known(&o.proxy, Layer::Proxy, Step::Teardown)?
        .any_ours_present
    {
        return mutate(Mutation::Unregister);
    }
    if b.known(&o.dns, Layer::Dns, Step::Teardown)?
        .any_ours_present
    {
        return mutate(Mutation::RemoveDns);
    }
    Continue(())
}

/// Any task in flight (ours: a stop, a destroy, or one from provisioning) is waited for;
/// past `teardown_deadline` the server shows Degraded naming it, and it is still waited for.
fn task(o: &Observed, cx: &Inputs, b: &mut Conds) -> Flow {
    let Some(t) = cx.in_flight() else {
        return Continue(());
    };
    match b.known(&o.task, Layer::Task, Step::Teardown)? {
        TaskObs::Running => {
            let deadline = cx.timing.teardown_deadline;
            if (cx.now - t.started_at).to_std().unwrap_or_default() > deadline {
                let late = Unavailable {
                    backend: Backend::Proxmox,
                    class: ErrorClass::Transient,
                    message: msg::task_overdue(&t.upid, t.action, deadline),
                };
                return b.degraded(Step::Teardown, &late);
            }
            stop(Control::AwaitTask)
        }
        TaskObs::Succeeded => stop(Control::ClearTask),
        TaskObs::Failed(message) => stop(Control::TaskFailed {
            kind: t.action,
            message: message.clone(),
        }),
    }
}

/// Stop, then destroy, a container proven ours; a container that is gone, or not ours, lets
/// the row be archived (the intruder is never touched; only our reservation goes).
fn container(d: &Desired, o: &Observed, b: &mut Conds) -> Flow {
    let Some(c) = b.known(&o.container, Layer::Container, Step::Teardown)? else {
        return stop(Control::Archive);
    };
    if c.ownership(d) == Ownership::Foreign {
        return stop(Control::Archive);
    }
    if let Some(lock) = &c.lock {
        return wait(
            Step::Teardown,
            r::LOCKED,
            format!("container is locked ({lock})"),
        );
    }
    match b.known(&o.power, Layer::Power, Step::Teardown)? {
        PowerObs::Running => mutate(Mutation::Stop),
        PowerObs::Stopped => mutate(Mutation::Destroy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::ContainerObs;
    use crate::decide::tests::*;
    use model::{ConditionType as C, Kind, TaskKind};

    #[test]
    fn teardown_table() {
        let cases = vec![
            Case {
                reason: "the proxy registration goes first",
                desired: none,
                observed: no_obs,
                status: no_status,
                want: mu(Mutation::Unregister),
                cond: None,
            },
            Case {
                reason: "then the DNS records",
                desired: none,
                observed: |o| o.proxy = Some(Ok(absent())),
                status: no_status,
                want: mu(Mutation::RemoveDns),
                cond: None,
            },
            Case {
                reason: "a stale registration (another address) is removed too",
                desired: none,
                observed: |o| o.proxy = Some(Ok(stale())),
                status: no_status,
                want: mu(Mutation::Unregister),
                cond: None,
            },
            Case {
                reason: "a proxy outage delays teardown, it never skips the step",
                desired: none,
                observed: |o| o.proxy = Some(Err(down())),
                status: no_status,
                want: ctl(Control::Degraded {
                    step: Step::Teardown,
                    error: down(),
                }),
                cond: Some(degraded_cond()),
            },
            Case {
                reason: "a running container is stopped before destroy",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(absent()));
                    o.dns = Some(Ok(absent()))
                },
                status: no_status,
                want: mu(Mutation::Stop),
                cond: None,
            },
            Case {
                reason: "the stop task is waited for before destroy",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(absent()));
                    o.dns = Some(Ok(absent()));
                    o.task = Some(Ok(TaskObs::Running))
                },
                status: |s| s.in_flight_task = Some(in_flight(TaskKind::Stop, t0())),
                want: ctl(Control::AwaitTask),
                cond: None,
            },
            Case {
                reason: "a destroy past the teardown deadline shows Degraded naming its task, and is still waited for",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(absent()));
                    o.dns = Some(Ok(absent()));
                    o.task = Some(Ok(TaskObs::Running))
                },
                status: |s| s.in_flight_task = Some(in_flight(TaskKind::Destroy, t0() - chrono::Duration::hours(1))),
                want: ctl(Control::Degraded {
                    step: Step::Teardown,
                    error: Unavailable {
                        backend: Backend::Proxmox,
                        class: ErrorClass::Transient,
                        message: "Proxmox task UPID:pve:00001234:00ABCDEF:65000000:vzclone:900:zlh@pve!ctl: (destroy) still running after 10m".into(),
                    },
                }),
                cond: cond(C::Degraded, true, r::PROXMOX_UNAVAILABLE, "proxmox: Proxmox task UPID:pve:00001234:00ABCDEF:65000000:vzclone:900:zlh@pve!ctl: (destroy) still running after 10m"),
            },
            Case {
                reason: "a stopped container of ours is destroyed",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(absent()));
                    o.dns = Some(Ok(absent()));
                    o.power = Some(Ok(PowerObs::Stopped))
                },
                status: no_status,
                want: mu(Mutation::Destroy),
                cond: None,
            },
            Case {
                reason: "unknown container state during teardown degrades (no skipping to archive)",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(absent()));
                    o.dns = Some(Ok(absent()));
                    o.container = Some(Err(down()))
                },
                status: no_status,
                want: ctl(Control::Degraded {
                    step: Step::Teardown,
                    error: down(),
                }),
                cond: Some(degraded_cond()),
            },
            Case {
                reason: "a container that is gone lets the row be archived",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(absent()));
                    o.dns = Some(Ok(absent()));
                    o.container = Some(Ok(None))
                },
                status: no_status,
                want: ctl(Control::Archive),
                cond: None,
            },
            Case {
                reason: "an intruder at our VMID is left alone; only our reservation goes",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(absent()));
                    o.dns = Some(Ok(absent()));
                    o.container = Some(Ok(Some(ContainerObs::default())))
                },
                status: no_status,
                want: ctl(Control::Archive),
                cond: None,
            },
            Case {
                reason: "a server deleted before it had a VMID is archived at once",
                desired: |d| {
                    d.vmid = None;
                    d.kind = Kind::Dev
                },
                observed: no_obs,
                status: no_status,
                want: ctl(Control::Archive),
                cond: None,
            },
            Case {
                reason: "a locked container is waited for",
                desired: |d| d.kind = Kind::Dev,
                observed: |o| {
                    o.container = Some(Ok(Some(ContainerObs {
                        lock: Some("backup".into()),
                        ..ours()
                    })))
                },
                status: no_status,
                want: ctl(Control::Wait {
                    step: Step::Teardown,
                    reason: r::LOCKED,
                    message: "container is locked (backup)".into(),
                }),
                cond: None,
            },
        ];
        run_table(cases, decide_teardown);
    }
}
