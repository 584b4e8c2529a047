//! Live detail of a server (issue 20, item 4): what the resync and reconciles see in passing,
//! kept beside the server row, not in `ServerStatus`: a sample neither bumps
//! `resourceVersion` nor enters the change feed, so a steady fleet costs no status writes
//! and watchers see no change per sample.

use crate::ServerId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The latest sample of each part, with when it was seen. A part never seen is absent; a
/// write leaves the parts it does not carry as they were.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    pub server_id: ServerId,
    /// From the resync's `cluster/resources` listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources_seen_at: Option<DateTime<Utc>>,
    /// From the Server List Ping (games only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<Players>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players_seen_at: Option<DateTime<Utc>>,
    /// From the Agent's `/status`, when a reconcile asked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_seen_at: Option<DateTime<Utc>>,
}

impl ServerStats {
    /// The newest of the parts' times.
    pub fn last_seen(&self) -> Option<DateTime<Utc>> {
        [
            self.resources_seen_at,
            self.players_seen_at,
            self.agent_seen_at,
        ]
        .into_iter()
        .flatten()
        .max()
    }
}

/// A container's usage as Proxmox reports it in `cluster/resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUsage {
    /// CPU in use, in cores (PVE's `cpu`: 1.0 is one core busy).
    pub cpu: f64,
    pub mem_bytes: u64,
    pub maxmem_bytes: u64,
    pub disk_bytes: u64,
    pub maxdisk_bytes: u64,
    /// Bytes received and sent since the container started.
    pub netin_bytes: u64,
    pub netout_bytes: u64,
    pub uptime_seconds: u64,
}

/// Players from the Server List Ping answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Players {
    pub online: u32,
    pub max: u32,
    /// The names the server chose to list (Minecraft sends at most 12).
    #[serde(default)]
    pub sample: Vec<String>,
}

/// The Agent's last answer, as far as a server card shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentDetail {
    /// The Agent's state (`installing`, `running`, `crashed`, ...).
    pub state: String,
    /// The install step, while installing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Crashes in a row, when crashed and the Agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_count: Option<u32>,
}
