//! Acting on a decision: the one mutating call a reconcile makes (clone, configure, start,
//! stop, destroy, send the Agent its config, publish DNS, register with the proxy), and how
//! each backend's answer turns into status, events and the next look.

use crate::decide::{
    self, Action, Desired, Observed, TASK_CLONE, TASK_DESTROY, TASK_SHUTDOWN, TASK_START, TASK_STOP,
};
use crate::observe;
use crate::reason as r;
use crate::reconciler::{Outcome, Pending, Reconciler};
use chrono::{DateTime, Utc};
use edge_client::dns::DnsProvider;
use model::status::{InFlightTask, LastError};
use model::{ConditionType, ErrorClass, EventType, Server, ServerStatus, Step};
use proxmox_client::Proxmox;
use std::time::Duration;

impl Reconciler {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn act(
        &self,
        action: Action,
        server: &Server,
        d: &Desired,
        status: &mut ServerStatus,
        obs: &mut Observed,
        p: &mut Pending,
        now: DateTime<Utc>,
        step: Step,
    ) -> Outcome {
        let pve = &self.backends.pve;
        let node = d.node().unwrap_or_default().to_string();
        let vmid = d.vmid.unwrap_or_default();
        let timing = &self.cfg.controller;
        let started = |status: &mut ServerStatus, upid: String, action: &str| {
            status.in_flight_task = Some(InFlightTask {
                upid,
                action: action.into(),
                started_at: now,
            });
            Outcome::Done(Some(timing.task_poll))
        };
        let ip = obs
            .ip
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .cloned()
            .flatten()
            .or_else(|| status.ip.clone());
        let hostname = d.hostname.clone().unwrap_or_default();
        let fqdn = format!("{hostname}.{}", self.cfg.edge.zone);
        match action {
            Action::Clone => {
                let (tnode, tpl) = d.template.clone().unwrap_or_default();
                let req = proxmox_client::CloneRequest {
                    newid: vmid,
                    hostname: Some(hostname.clone()),
                    description: Some(decide::marker_line(d.id)),
                    full: None,
                    storage: None,
                    pool: None,
                };
                match pve.clone_ct(&tnode, tpl, &req).await {
                    Ok(upid) => {
                        p.event(
                            EventType::Normal,
                            r::EV_CLONE_STARTED,
                            format!("cloning template {tpl} to {vmid} on {tnode}"),
                        );
                        status.node = Some(tnode);
                        started(status, upid.to_string(), TASK_CLONE)
                    }
                    Err(e) if e.class == ErrorClass::Locked => {
                        // Another replica (or a human) is cloning this template: a wait.
                        self.release_slot(d.id, d.template.as_ref().map(|t| t.1))
                            .await;
                        Outcome::Done(Some(timing.lock_retry))
                    }
                    Err(e) if e.class == ErrorClass::Conflict => {
                        // `CT N already exists`: observe again (adopt or conflict).
                        Outcome::Done(Some(Duration::ZERO))
                    }
                    Err(e) => {
                        self.release_slot(d.id, d.template.as_ref().map(|t| t.1))
                            .await;
                        self.degrade(status, Step::CloneContainer, &(&e).into(), p, now)
                    }
                }
            }
            Action::TaskFailed { action, message } => {
                status.in_flight_task = None;
                status.attempts += 1;
                let step = if action == TASK_CLONE || action == TASK_DESTROY {
                    Step::CloneContainer
                } else {
                    step
                };
                let class = proxmox_client::classify(None, &message);
                status.last_error = Some(LastError {
                    class,
                    step: step.as_str().into(),
                    message: message.clone(),
                    at: now,
                });
                if action == TASK_CLONE {
                    self.release_slot(d.id, d.template.as_ref().map(|t| t.1))
                        .await;
                    p.event(EventType::Warning, r::EV_CLONE_FAILED, message.clone());
                }
                if status.attempts >= timing.clone_attempts {
                    return self.fail(status, server, step, message, p, now);
                }
                Outcome::Backoff
            }
            Action::DestroyFailedClone => {
                let msg = match &obs.task {
                    Some(Ok(decide::TaskObs::Failed(m))) => m.clone(),
                    _ => "clone failed".into(),
                };
                self.release_slot(d.id, d.template.as_ref().map(|t| t.1))
                    .await;
                status.attempts += 1;
                status.last_error = Some(LastError {
                    class: ErrorClass::Transient,
                    step: Step::CloneContainer.as_str().into(),
                    message: msg.clone(),
                    at: now,
                });
                p.event(EventType::Warning, r::EV_CLONE_FAILED, msg.clone());
                if status.attempts >= timing.clone_attempts {
                    status.in_flight_task = None;
                    return self.fail(status, server, Step::CloneContainer, msg, p, now);
                }
                match pve.delete_ct(&node, vmid, &destroy_options()).await {
                    Ok(upid) => {
                        p.event(
                            EventType::Normal,
                            r::EV_CLONE_CLEANED_UP,
                            format!("destroying the failed clone {vmid}"),
                        );
                        started(status, upid.to_string(), TASK_DESTROY)
                    }
                    Err(e) => self.degrade(status, Step::CloneContainer, &(&e).into(), p, now),
                }
            }
            Action::Configure(change) => {
                let current_net0 = match &obs.container {
                    Some(Ok(Some(c))) => c.net0.clone(),
                    _ => None,
                };
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
                    description: Some(decide::marker_line(d.id)),
                    ..Default::default()
                };
                match pve.update_ct_config(&node, vmid, &req).await {
                    Ok(()) => {
                        let (reason, what) = if status.is_true(ConditionType::Ready) {
                            (
                                r::EV_DRIFT_REPAIRED,
                                format!("configuration of CT {vmid} re-applied"),
                            )
                        } else {
                            (r::EV_CONFIGURED, format!("configured CT {vmid}"))
                        };
                        p.event(EventType::Normal, reason, what);
                        Outcome::Done(Some(Duration::ZERO))
                    }
                    Err(e) if e.class == ErrorClass::Locked => {
                        Outcome::Done(Some(timing.lock_retry))
                    }
                    Err(e) => self.degrade(status, Step::ConfigureContainer, &(&e).into(), p, now),
                }
            }
            Action::Start => match pve.start_ct(&node, vmid).await {
                Ok(upid) => {
                    if status.is_true(ConditionType::Ready) {
                        p.event(
                            EventType::Normal,
                            r::EV_DRIFT_REPAIRED,
                            "container was stopped; starting it",
                        );
                    }
                    p.event(
                        EventType::Normal,
                        r::EV_STARTED,
                        format!("starting CT {vmid}"),
                    );
                    started(status, upid.to_string(), TASK_START)
                }
                Err(e) if e.is_already_running() => Outcome::Done(Some(Duration::ZERO)),
                Err(e) if e.class == ErrorClass::Locked => Outcome::Done(Some(timing.lock_retry)),
                Err(e) => self.degrade(status, Step::StartContainer, &(&e).into(), p, now),
            },
            Action::Shutdown => match pve.shutdown_ct(&node, vmid, Some(60), true).await {
                Ok(upid) => {
                    p.event(
                        EventType::Normal,
                        r::EV_STOPPED,
                        format!("shutting down CT {vmid}"),
                    );
                    started(status, upid.to_string(), TASK_SHUTDOWN)
                }
                Err(e) if e.is_not_running() => Outcome::Done(Some(Duration::ZERO)),
                Err(e) => self.degrade(status, Step::StartContainer, &(&e).into(), p, now),
            },
            Action::SendAgentConfig => {
                let Some(ip) = ip else {
                    return Outcome::Done(Some(timing.wait_poll));
                };
                if matches!(
                    &obs.agent,
                    Some(Ok(decide::AgentObs::Error(_) | decide::AgentObs::Crashed))
                ) {
                    status.attempts += 1;
                    let msg = match &obs.agent {
                        Some(Ok(decide::AgentObs::Error(m))) => m.clone(),
                        _ => "crashed".into(),
                    };
                    status.last_error = Some(LastError {
                        class: ErrorClass::Transient,
                        step: Step::WaitForAgent.as_str().into(),
                        message: msg.clone(),
                        at: now,
                    });
                    p.event(
                        EventType::Warning,
                        r::EV_AGENT_INSTALL_FAILED,
                        format!("attempt {}: {msg}", status.attempts),
                    );
                } else if status.is_true(ConditionType::Ready) {
                    p.event(
                        EventType::Normal,
                        r::EV_DRIFT_REPAIRED,
                        "Agent lost its config; sending it again",
                    );
                }
                let payload = match edge_client::AgentPayload::for_spec(
                    vmid,
                    &server.spec,
                    self.cfg.agent.game_port,
                    "admin",
                    self.backends.admin_password(d.id),
                ) {
                    Ok(p) => p,
                    Err(e) => {
                        return self.fail(status, server, Step::SendAgentConfig, e.message, p, now);
                    }
                };
                match self.backends.agent.send_config(&ip, &payload).await {
                    Ok(()) => {
                        p.event(
                            EventType::Normal,
                            r::EV_AGENT_CONFIG_SENT,
                            format!("config sent to {ip}"),
                        );
                        Outcome::Done(Some(timing.wait_poll))
                    }
                    Err(e) => self.degrade(status, Step::SendAgentConfig, &(&e).into(), p, now),
                }
            }
            Action::PublishDns => {
                let edge = self.edge_target(&hostname, &fqdn);
                if let Some(t) = &self.backends.technitium
                    && let Err(e) = t.ensure(&fqdn, &edge.records(false)).await
                {
                    return self.degrade(status, Step::PublishEdge, &(&e).into(), p, now);
                }
                if let Some(c) = &self.backends.cloudflare
                    && let Err(e) = c.ensure(&fqdn, &edge.records(true)).await
                {
                    return self.degrade(status, Step::PublishEdge, &(&e).into(), p, now);
                }
                p.event(
                    EventType::Normal,
                    r::EV_DNS_PUBLISHED,
                    format!("A and SRV records for {fqdn}"),
                );
                obs.dns = Some(Ok(true));
                Outcome::Done(Some(Duration::ZERO))
            }
            Action::RegisterProxy => {
                let (Some(v), Some(ip)) = (&self.backends.velocity, ip) else {
                    return Outcome::Done(Some(Duration::ZERO));
                };
                match v.ensure(&hostname, &ip, self.cfg.agent.game_port).await {
                    Ok(_) => {
                        p.event(
                            EventType::Normal,
                            r::EV_PROXY_REGISTERED,
                            format!("{hostname} → {ip}:{}", self.cfg.agent.game_port),
                        );
                        Outcome::Done(Some(Duration::ZERO))
                    }
                    Err(e) => self.degrade(status, Step::PublishEdge, &(&e).into(), p, now),
                }
            }
            Action::Unregister => {
                let Some(v) = &self.backends.velocity else {
                    obs.proxy = Some(Ok(false));
                    return Outcome::Done(Some(Duration::ZERO));
                };
                match v.remove(&hostname).await {
                    Ok(_) => {
                        p.event(
                            EventType::Normal,
                            r::EV_TEARDOWN_STEP,
                            format!("unregistered {hostname} from the proxy"),
                        );
                        Outcome::Done(Some(Duration::ZERO))
                    }
                    Err(e) => self.degrade(status, Step::Teardown, &(&e).into(), p, now),
                }
            }
            Action::RemoveDns => {
                if let Some(t) = &self.backends.technitium
                    && let Err(e) = t.remove(&fqdn).await
                {
                    return self.degrade(status, Step::Teardown, &(&e).into(), p, now);
                }
                if let Some(c) = &self.backends.cloudflare
                    && let Err(e) = c.remove(&fqdn).await
                {
                    return self.degrade(status, Step::Teardown, &(&e).into(), p, now);
                }
                p.event(
                    EventType::Normal,
                    r::EV_TEARDOWN_STEP,
                    format!("DNS records of {fqdn} deleted"),
                );
                Outcome::Done(Some(Duration::ZERO))
            }
            Action::Stop => match pve.stop_ct(&node, vmid).await {
                Ok(upid) => {
                    p.event(
                        EventType::Normal,
                        r::EV_TEARDOWN_STEP,
                        format!("stopping CT {vmid}"),
                    );
                    started(status, upid.to_string(), TASK_STOP)
                }
                Err(e) if e.is_not_running() => Outcome::Done(Some(Duration::ZERO)),
                Err(e) if e.class == ErrorClass::Locked => Outcome::Done(Some(timing.lock_retry)),
                Err(e) => self.degrade(status, Step::Teardown, &(&e).into(), p, now),
            },
            Action::Destroy => match pve.delete_ct(&node, vmid, &destroy_options()).await {
                Ok(upid) => {
                    p.event(
                        EventType::Normal,
                        r::EV_DESTROYED,
                        format!("destroying CT {vmid}"),
                    );
                    started(status, upid.to_string(), TASK_DESTROY)
                }
                Err(e) if e.class == ErrorClass::NotFound => Outcome::Done(Some(Duration::ZERO)),
                Err(e) if e.class == ErrorClass::Locked => Outcome::Done(Some(timing.lock_retry)),
                Err(e) => self.degrade(status, Step::Teardown, &(&e).into(), p, now),
            },
            other => {
                tracing::error!(?other, "action not handled by act()");
                Outcome::Backoff
            }
        }
    }
}

fn destroy_options() -> proxmox_client::DeleteOptions {
    proxmox_client::DeleteOptions {
        purge: true,
        force: false,
        destroy_unreferenced_disks: true,
    }
}
