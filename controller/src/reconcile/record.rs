//! What a reconcile records: conditions and progress from each decision, failures and
//! degraded backends, Ready, and the one fenced status write (only when something changed)
//! with its events.

use super::{Acted, ReconcileError, Requeue, Run};
use crate::backends::{Backend, Stack};
use crate::decide::{Action, AgentObs, Cond, Control, Desired, Observed, Unavailable};
use crate::metrics as m;
use crate::reason as r;
use chrono::{DateTime, Utc};
use model::status::{Failure, LastError};
use model::store::{Store, StoreError};
use model::{ConditionStatus, ConditionType, ErrorClass, EventType, ServerStatus, Step, TaskKind};

/// Record what `decide` concluded, and the progress its observations show. Any action but
/// waiting on an observation or a degraded backend means the server is healthy again.
pub(crate) fn apply(
    status: &mut ServerStatus,
    conditions: &[Cond],
    action: &Action,
    obs: &Observed,
    d: &Desired,
    now: DateTime<Utc>,
) {
    let generation = d.generation;
    for c in conditions {
        status.set_condition(
            c.type_,
            c.status,
            c.reason.as_str(),
            c.message.clone(),
            generation,
            now,
        );
    }
    if !matches!(
        action,
        Action::Control(Control::Degraded { .. } | Control::Observe(_))
    ) {
        status.set_condition(
            ConditionType::Degraded,
            ConditionStatus::False,
            r::HEALTHY.as_str(),
            "",
            generation,
            now,
        );
    }
    note_progress(status, obs, d);
}

/// Progress follows what was seen: an Agent seen installing is an install in progress (and
/// any other answer ends it); a template seen taken is a wait, a container seen ends it; a
/// container seen absent is owned by nobody.
fn note_progress(status: &mut ServerStatus, obs: &Observed, d: &Desired) {
    let p = &mut status.progress;
    match &obs.agent {
        Some(Ok(AgentObs::Installing)) => p.agent_install = Some(d.generation),
        Some(_) => p.agent_install = None,
        None => {}
    }
    match (obs.clone_slot, &obs.container) {
        (Some(false), _) => p.template_wait = d.template_vmid(),
        (Some(true), _) | (None, Some(Ok(Some(_)))) => p.template_wait = None,
        (None, _) => {}
    }
    if let Some(Ok(None)) = &obs.container {
        p.owned_vmid = None;
    }
}

/// The status of a server that reached Ready for `generation`.
pub(crate) fn mark_ready(status: &mut ServerStatus, generation: i64, obs: &Observed) {
    status.observed_generation = generation;
    status.attempts = 0;
    status.last_error = None;
    status.next_retry_at = None;
    if let Some(ip) = obs.ip() {
        status.ip = Some(ip.to_string());
    }
}

/// Did anything but the bookkeeping stamps (`last_reconcile_at`, `next_retry_at`) change?
pub fn status_changed(old: &ServerStatus, new: &ServerStatus) -> bool {
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

impl<S: Stack> Run<'_, S> {
    /// A backend failed: record it and back off; nothing is destroyed
    /// (docs/reconcile-contract.md, rule 4).
    pub(super) fn degrade(&mut self, step: Step, e: &Unavailable) -> Acted {
        let message = format!("{}: {}", e.backend, e.message);
        self.status.last_error = Some(LastError {
            class: e.class,
            step: step.as_str().into(),
            message: message.clone(),
            at: self.now,
        });
        let reason = match e.backend {
            Backend::Proxmox => r::EV_PROXMOX_UNAVAILABLE,
            _ => r::EV_BACKEND_UNAVAILABLE,
        };
        self.event(EventType::Warning, reason, message);
        metrics::counter!(m::BACKEND_ERRORS, "backend" => e.backend.as_str(), "class" => e.class.as_str())
            .increment(1);
        match e.class {
            // A bug or bad credentials will not fix itself by hammering: retry slowly.
            ErrorClass::Invalid | ErrorClass::Unauthorized => {
                Acted::Poll(self.ctx.timing().backoff_max)
            }
            _ => Acted::Backoff,
        }
    }

    /// A terminal failure: it stays until the spec changes or a forced retry.
    pub(super) fn fail(&mut self, step: Step, message: String) -> Acted {
        let generation = self.server.generation;
        self.status.set_condition(
            ConditionType::Ready,
            ConditionStatus::False,
            r::FAILED.as_str(),
            format!("{step}: {message}"),
            generation,
            self.now,
        );
        let msg = format!("{step}: {message}");
        self.status.failure = Some(Failure {
            step: step.as_str().into(),
            message,
            at: self.now,
            generation,
        });
        self.event(EventType::Warning, r::EV_FAILED, msg);
        Acted::Failed
    }

    /// The in-flight task failed: count the attempt, record the error, and back off (or fail
    /// after `clone_attempts`).
    pub(super) async fn task_failed(&mut self, kind: TaskKind, message: String) -> Acted {
        self.status.in_flight_task = None;
        self.status.attempts += 1;
        let step = match kind {
            TaskKind::Clone | TaskKind::Destroy | TaskKind::Reboot | TaskKind::Resize => {
                kind.step()
            }
            TaskKind::Start | TaskKind::Shutdown | TaskKind::Stop => {
                self.status.current_step().unwrap_or(Step::PublishEdge)
            }
        };
        self.status.last_error = Some(LastError {
            class: proxmox_client::classify(None, &message),
            step: step.as_str().into(),
            message: message.clone(),
            at: self.now,
        });
        if kind == TaskKind::Clone {
            self.release_template().await;
            self.event(EventType::Warning, r::EV_CLONE_FAILED, message.clone());
        }
        if self.status.attempts >= self.ctx.timing().clone_attempts {
            return self.fail(step, message);
        }
        Acted::Backoff
    }

    /// Ready for this generation: attempts and errors forgotten; the first time, an event and
    /// the time-to-Ready metric.
    pub(super) fn ready(&mut self) {
        let generation = self.server.generation;
        let was_ready = self.server.status.is_true(ConditionType::Ready)
            && self.server.status.observed_generation == generation;
        mark_ready(&mut self.status, generation, &self.obs);
        if !was_ready {
            let since = self.status.ready_since.unwrap_or(self.server.created_at);
            let secs = (self.now - since).num_milliseconds() as f64 / 1000.0;
            metrics::histogram!(m::TIME_TO_READY).record(secs.max(0.0));
            self.status.ready_since = Some(self.now);
            self.event(EventType::Normal, r::EV_READY, "server is ready");
        }
    }

    /// Record status (only if it changed; fenced) and events, and say when to look again.
    pub(super) async fn finish(mut self, next: Requeue) -> Result<Requeue, ReconcileError> {
        let store = &self.ctx.store;
        let now = self.ctx.clock.now();
        let id = self.server.id;
        // Nothing observed changed: no write (a resync of a steady fleet costs no writes, and
        // watchers see only real changes).
        if status_changed(&self.server.status, &self.status) {
            self.status.last_reconcile_at = Some(now);
            self.status.next_retry_at = match next {
                Requeue::After(d) => chrono::Duration::from_std(d).ok().map(|d| now + d),
                Requeue::AwaitChange | Requeue::Now | Requeue::Backoff => None,
            };
            let rv = self.server.resource_version;
            // One transaction: a crash keeps both or neither, so a step recorded as done
            // always has its event.
            match store
                .write_status_with_events(id, &self.status, rv, self.fence, &self.events)
                .await
            {
                Ok(_) => {}
                // The user changed the server meanwhile: look again at once.
                Err(StoreError::Stale) => return Ok(Requeue::Now),
                Err(StoreError::NotFound) => return Ok(Requeue::AwaitChange),
                Err(e) => return Err(e.into()),
            }
        } else {
            for e in &self.events {
                store
                    .append_event(id, e.type_, e.reason, &e.message)
                    .await?;
            }
        }
        Ok(next)
    }
}

/// Record a caught panic on the server, best effort (the reconcile that panicked wrote
/// nothing): `Degraded=True` reason `ReconcilePanicked` and a Warning event.
pub(super) async fn panicked<S: Stack>(
    ctx: &super::Context<S>,
    id: model::ServerId,
    fence: Option<model::store::Fence>,
    message: &str,
) {
    let text = format!("{}: {message}", super::RECONCILE_PANICKED);
    let store = &ctx.store;
    let written = async {
        let Some(s) = store.get_server(id).await? else {
            return Ok(());
        };
        let mut status = s.status.clone();
        let now = ctx.clock.now();
        status.set_condition(
            ConditionType::Degraded,
            ConditionStatus::True,
            r::RECONCILE_PANICKED.as_str(),
            text.clone(),
            s.generation,
            now,
        );
        status.last_error = Some(LastError {
            class: ErrorClass::Invalid,
            step: status
                .current_step()
                .unwrap_or(Step::PublishEdge)
                .as_str()
                .into(),
            message: text.clone(),
            at: now,
        });
        let event = model::NewEvent {
            type_: EventType::Warning,
            reason: r::EV_RECONCILE_PANICKED.as_str(),
            message: text.clone(),
        };
        store
            .write_status_with_events(id, &status, s.resource_version, fence, &[event])
            .await
            .map(drop)
    };
    let result: Result<(), StoreError> = written.await;
    if let Err(e) = result {
        tracing::warn!(server = %id, error = %e, "could not record the panic");
    }
}
