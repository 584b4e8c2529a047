//! `Server`: one desired server with its observed status.

use crate::{Phase, ServerId, ServerSpec, ServerStatus, Step};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub id: ServerId,
    pub customer_id: String,
    pub spec: ServerSpec,
    /// Bumped on every spec change.
    pub generation: i64,
    /// Bumped on every write of the row (the change-feed sequence of that write); used for
    /// optimistic concurrency and to resume a watch.
    pub resource_version: i64,
    /// The VMID reserved for this server in the store (the source of truth for identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_vmid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_requested_at: Option<DateTime<Utc>>,
    pub paused: bool,
    /// Set by `reconcile?retry=true`: clears a terminal failure older than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub status: ServerStatus,
}

impl Server {
    pub fn phase(&self) -> (Phase, Option<Step>) {
        self.status
            .phase(self.generation, self.deletion_requested_at.is_some())
    }

    pub fn is_deleting(&self) -> bool {
        self.deletion_requested_at.is_some()
    }
}
