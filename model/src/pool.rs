//! Warm pools (docs/pools.md): containers cloned ahead of demand from a template, stopped and
//! marked as the pool's, for a new server to claim instead of waiting for a clone. A member
//! lives in the store from before its clone (its VMID reserved through the same allocator as
//! servers') until it is claimed (its VMID becomes the server's reservation, in the same
//! transaction) or destroyed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a member is in its life. A claim only ever takes a `Free` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Reserved; its clone is not started, running, or not yet tagged.
    Cloning,
    /// Cloned, stopped, tagged: a server may claim it.
    Free,
    /// Being destroyed (surplus, too old, made from a changed template, a failed clone, or the
    /// pool drained). Never claimed.
    Retiring,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Cloning => "cloning",
            MemberState::Free => "free",
            MemberState::Retiring => "retiring",
        }
    }

    pub fn parse(s: &str) -> Option<MemberState> {
        [
            MemberState::Cloning,
            MemberState::Free,
            MemberState::Retiring,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// One member of a template's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolMember {
    pub vmid: u32,
    /// Its pool: the template it is cloned from.
    pub template: u32,
    pub node: String,
    pub state: MemberState,
    /// Holds the template's clone slot while it clones (the slot's holder name).
    #[schema(value_type = String)]
    pub id: uuid::Uuid,
    /// The Proxmox task in flight (its clone or its destroy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upid: Option<String>,
    /// The template's config digest when the member was reserved (a changed template makes
    /// the member stale).
    pub template_digest: String,
    /// The template's configured `version` then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it became `Free`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<DateTime<Utc>>,
}

/// The id events about `template`'s pool are recorded under (events belong to an id; a pool
/// is no server, so it gets a fixed one of its own, never a uuid v7 a server could have).
pub fn pool_event_id(template: u32) -> crate::ServerId {
    const POOL_EVENTS: u128 = 0x7a6c_6870_6f6f_4000_8000_0000_0000_0000;
    crate::ServerId(uuid::Uuid::from_u128(POOL_EVENTS | u128::from(template)))
}

/// A member to reserve: the VMID is picked by the store.
#[derive(Debug, Clone)]
pub struct NewPoolMember {
    pub template: u32,
    pub node: String,
    pub template_digest: String,
    pub template_version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            MemberState::Cloning,
            MemberState::Free,
            MemberState::Retiring,
        ] {
            assert_eq!(MemberState::parse(s.as_str()), Some(s), "{s:?}");
        }
        assert_eq!(MemberState::parse("claimed"), None, "no such state");
    }

    #[test]
    fn pool_event_ids_are_distinct_and_not_v7() {
        let a = pool_event_id(900);
        assert_ne!(a, pool_event_id(901), "one id per pool");
        assert_ne!(a.0.get_version_num(), 7, "never a server's kind of id");
    }
}
