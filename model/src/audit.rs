//! The audit log: who asked the API for which change, and when. Append-only; pruned only by
//! the retention loop (`Prune::Audit`).

use crate::{Role, ServerId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One recorded request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Increasing with time; pages go from newest to oldest (`before`).
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The token's name, or the external identity (`jwt:<subject>`).
    pub actor: String,
    pub role: Role,
    /// What was asked, e.g. `server.delete` (the API's `audit::Action`).
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<ServerId>,
    /// The request in a few words (e.g. `restart game`, `retry`).
    pub detail: String,
}

/// An entry to record; the store stamps `seq` and `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub actor: String,
    pub role: Role,
    pub action: String,
    pub server_id: Option<ServerId>,
    pub detail: String,
}

/// Which entries to list (every given part must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub server_id: Option<ServerId>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Only entries older than this `seq` (the previous page's last).
    pub before: Option<i64>,
}
