//! Who asked for each change: every mutating call records its caller (token name and role, or
//! the external identity `jwt:<subject>`) in the append-only audit log (`GET /api/audit`) and,
//! for a server, in its events (`… requested by …`).
//!
//! Recorded right after the change is stored, best effort: the change has happened, and
//! failing the request now would invite a retry that repeats it (a failed write is logged as
//! an error).

use crate::auth::Principal;
use crate::state::Ctx;
use model::store::Store;
use model::{EventType, NewAudit, ServerId};

/// What was asked. `as_str` is the `action` of the audit entry (and its filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ServerCreate,
    ServerPatch,
    ServerDelete,
    ServerReconcile,
    /// `POST /api/servers:reconcile`: one entry for the call; each server gets its event.
    ServersReconcile,
    ServerPause,
    ServerResume,
    ServerPower,
    ServerCommand,
    CustomerSet,
    TokenCreate,
    TokenRevoke,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::ServerCreate,
        Action::ServerPatch,
        Action::ServerDelete,
        Action::ServerReconcile,
        Action::ServersReconcile,
        Action::ServerPause,
        Action::ServerResume,
        Action::ServerPower,
        Action::ServerCommand,
        Action::CustomerSet,
        Action::TokenCreate,
        Action::TokenRevoke,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ServerCreate => "server.create",
            Action::ServerPatch => "server.patch",
            Action::ServerDelete => "server.delete",
            Action::ServerReconcile => "server.reconcile",
            Action::ServersReconcile => "servers.reconcile",
            Action::ServerPause => "server.pause",
            Action::ServerResume => "server.resume",
            Action::ServerPower => "server.power",
            Action::ServerCommand => "server.command",
            Action::CustomerSet => "customer.set",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
        }
    }

    /// The reason of the server event it records; `None`: not about a server.
    pub fn event_reason(self) -> Option<&'static str> {
        Some(match self {
            Action::ServerCreate => reason::CREATE_REQUESTED,
            Action::ServerPatch => reason::UPDATE_REQUESTED,
            Action::ServerDelete => reason::DELETE_REQUESTED,
            Action::ServerReconcile | Action::ServersReconcile => reason::RECONCILE_REQUESTED,
            Action::ServerPause => reason::PAUSE_REQUESTED,
            Action::ServerResume => reason::RESUME_REQUESTED,
            Action::ServerPower => reason::POWER_REQUESTED,
            Action::ServerCommand => reason::COMMAND_SENT,
            Action::CustomerSet | Action::TokenCreate | Action::TokenRevoke => return None,
        })
    }
}

/// The reasons of the events a request records.
pub mod reason {
    pub const CREATE_REQUESTED: &str = "CreateRequested";
    pub const UPDATE_REQUESTED: &str = "UpdateRequested";
    pub const DELETE_REQUESTED: &str = "DeleteRequested";
    pub const RECONCILE_REQUESTED: &str = "ReconcileRequested";
    pub const PAUSE_REQUESTED: &str = "PauseRequested";
    pub const RESUME_REQUESTED: &str = "ResumeRequested";
    pub const POWER_REQUESTED: &str = "PowerRequested";
    pub const COMMAND_SENT: &str = "CommandSent";
}

/// The caller as events name it: role, customer scope and token name.
pub(crate) fn who(p: &Principal) -> String {
    match &p.scope {
        Some(c) => format!("{} {c} (token {})", p.role, p.token_name),
        None => format!("{} (token {})", p.role, p.token_name),
    }
}

/// The text of a request's event: `detail requested by …`.
pub(crate) fn message(p: &Principal, detail: &str) -> String {
    format!("{detail} requested by {}", who(p))
}

/// Record `action` by `p` (on `server`, if any): an audit entry, and the server's event.
pub(crate) async fn record(
    ctx: &Ctx,
    p: &Principal,
    action: Action,
    server: Option<ServerId>,
    detail: &str,
) {
    let entry = NewAudit {
        actor: p.token_name.clone(),
        role: p.role,
        action: action.as_str().into(),
        server_id: server,
        detail: detail.into(),
    };
    if let Err(e) = ctx.app.store.record_audit(&entry).await {
        tracing::error!(action = action.as_str(), actor = %p.token_name, error = %e, "audit entry not recorded");
    }
    if let Some(id) = server {
        event(ctx, p, action, id, detail).await;
    }
}

/// Only the server's event (`detail requested by …`), for calls recorded once for many
/// servers.
pub(crate) async fn event(ctx: &Ctx, p: &Principal, action: Action, id: ServerId, detail: &str) {
    let Some(reason) = action.event_reason() else {
        return;
    };
    let message = message(p, detail);
    if let Err(e) = ctx
        .app
        .store
        .append_event(id, EventType::Normal, reason, &message)
        .await
    {
        tracing::warn!(server = %id, error = %e, "request event not recorded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_have_distinct_names_and_server_actions_a_reason() {
        let names: std::collections::BTreeSet<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), Action::ALL.len());
        for a in Action::ALL {
            let about_a_server = a.as_str().starts_with("server");
            assert_eq!(a.event_reason().is_some(), about_a_server, "{a:?}");
        }
    }
}
