//! Teardown (deletion requested), step by step: unregister the proxy, delete the DNS records,
//! wait for any task, stop the container, destroy it, archive the row. Each step is safe to
//! repeat after a crash, and a transient error delays a step but never skips it.

use super::{
    Action, Builder, Context, Decision, Desired, Layer, Observed, Ownership, PowerObs, TaskObs,
    degraded,
};
use crate::reason as r;
use model::Step;

pub fn decide_teardown(d: &Desired, o: &Observed, cx: &Context) -> Decision {
    let b = Builder::new();
    if d.needs_edge() {
        let Some(proxy) = &o.proxy else {
            return b.done(Action::Observe(Layer::Proxy));
        };
        match proxy {
            Err(e) => return degraded(b, Step::Teardown, e),
            Ok(true) => return b.done(Action::Unregister),
            Ok(false) => {}
        }
        let Some(dns) = &o.dns else {
            return b.done(Action::Observe(Layer::Dns));
        };
        match dns {
            Err(e) => return degraded(b, Step::Teardown, e),
            // For teardown the DNS layer reports "anything of ours still published".
            Ok(true) => return b.done(Action::RemoveDns),
            Ok(false) => {}
        }
    }
    if d.vmid.is_none() {
        return b.done(Action::Archive);
    }
    if let Some(t) = &cx.status.in_flight_task {
        match &o.task {
            None => return b.done(Action::Observe(Layer::Task)),
            Some(Err(e)) => return degraded(b, Step::Teardown, e),
            Some(Ok(TaskObs::Running)) => return b.done(Action::AwaitTask),
            Some(Ok(TaskObs::Succeeded)) => return b.done(Action::ClearTask),
            Some(Ok(TaskObs::Failed(m))) => {
                return b.done(Action::TaskFailed {
                    action: t.action.clone(),
                    message: m.clone(),
                });
            }
        }
    }
    let Some(container) = &o.container else {
        return b.done(Action::Observe(Layer::Container));
    };
    let c = match container {
        Err(e) => return degraded(b, Step::Teardown, e),
        Ok(None) => return b.done(Action::Archive),
        Ok(Some(c)) => c,
    };
    if c.ownership(d) == Ownership::Foreign {
        // Never touch the intruder; our reservation simply goes.
        return b.done(Action::Archive);
    }
    if let Some(lock) = &c.lock {
        return b.done(Action::Wait {
            step: Step::Teardown,
            reason: r::LOCKED,
            message: format!("container is locked ({lock})"),
        });
    }
    let Some(power) = &o.power else {
        return b.done(Action::Observe(Layer::Power));
    };
    match power {
        Err(e) => degraded(b, Step::Teardown, e),
        Ok(PowerObs::Running) => b.done(Action::Stop),
        Ok(PowerObs::Stopped) => b.done(Action::Destroy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::tests::*;
    use crate::decide::{ContainerObs, TASK_STOP};
    use model::Kind;

    #[test]
    fn teardown_table() {
        let cases = vec![
            Case {
                reason: "the proxy registration goes first",
                desired: none,
                observed: no_obs,
                status: no_status,
                want: Action::Unregister,
            },
            Case {
                reason: "then the DNS records",
                desired: none,
                observed: |o| o.proxy = Some(Ok(false)),
                status: no_status,
                want: Action::RemoveDns,
            },
            Case {
                reason: "a proxy outage delays teardown, it never skips the step",
                desired: none,
                observed: |o| o.proxy = Some(Err(down())),
                status: no_status,
                want: Action::Degraded {
                    step: Step::Teardown,
                    error: down(),
                },
            },
            Case {
                reason: "a running container is stopped before destroy",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(false));
                    o.dns = Some(Ok(false))
                },
                status: no_status,
                want: Action::Stop,
            },
            Case {
                reason: "the stop task is waited for before destroy",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(false));
                    o.dns = Some(Ok(false));
                    o.task = Some(Ok(TaskObs::Running))
                },
                status: |s| s.in_flight_task = Some(task(TASK_STOP, t0())),
                want: Action::AwaitTask,
            },
            Case {
                reason: "a stopped container of ours is destroyed",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(false));
                    o.dns = Some(Ok(false));
                    o.power = Some(Ok(PowerObs::Stopped))
                },
                status: no_status,
                want: Action::Destroy,
            },
            Case {
                reason: "unknown container state during teardown degrades (no skipping to archive)",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(false));
                    o.dns = Some(Ok(false));
                    o.container = Some(Err(down()))
                },
                status: no_status,
                want: Action::Degraded {
                    step: Step::Teardown,
                    error: down(),
                },
            },
            Case {
                reason: "a container that is gone lets the row be archived",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(false));
                    o.dns = Some(Ok(false));
                    o.container = Some(Ok(None))
                },
                status: no_status,
                want: Action::Archive,
            },
            Case {
                reason: "an intruder at our VMID is left alone; only our reservation goes",
                desired: none,
                observed: |o| {
                    o.proxy = Some(Ok(false));
                    o.dns = Some(Ok(false));
                    o.container = Some(Ok(Some(ContainerObs::default())))
                },
                status: no_status,
                want: Action::Archive,
            },
            Case {
                reason: "a server deleted before it had a VMID is archived at once",
                desired: |d| {
                    d.vmid = None;
                    d.kind = Kind::Dev
                },
                observed: no_obs,
                status: no_status,
                want: Action::Archive,
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
                want: Action::Wait {
                    step: Step::Teardown,
                    reason: r::LOCKED,
                    message: "container is locked (backup)".into(),
                },
            },
        ];
        run_table(cases, decide_teardown);
    }
}
