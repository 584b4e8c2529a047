//! Customers (quota and standing) and API tokens.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    Active,
    Overdue,
    Suspended,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Overdue => "overdue",
            Standing::Suspended => "suspended",
        }
    }
}

impl std::str::FromStr for Standing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Standing::Active),
            "overdue" => Ok(Standing::Overdue),
            "suspended" => Ok(Standing::Suspended),
            o => Err(format!("unknown standing '{o}'")),
        }
    }
}

/// What a customer's live servers may use together. A member left out of a request body takes
/// its default (so a body from before cores and disk were quotas still parses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Quota {
    pub max_servers: u32,
    pub max_memory_mib: u64,
    pub max_cores: u32,
    pub max_disk_gib: u64,
}

impl Default for Quota {
    /// A new customer may run 5 servers with 32 GiB of memory, 12 cores and 256 GiB of disk
    /// in all, until an operator says otherwise: five servers of the default plan (2 cores,
    /// 16 GiB) with room to grow some, while one server at the largest plan (16 cores, 1 TiB)
    /// needs an operator.
    fn default() -> Self {
        Quota {
            max_servers: 5,
            max_memory_mib: 32 * 1024,
            max_cores: 12,
            max_disk_gib: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: String,
    pub quota: Quota,
    pub standing: Standing,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Acts for any customer, naming the customer in each request.
    Portal,
    /// Everything, including customers' quota and standing.
    Operator,
    /// Read-only, all customers.
    Viewer,
    /// One customer's own servers (the token carries the customer id).
    Customer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Portal => "portal",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Customer => "customer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "portal" => Ok(Role::Portal),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            "customer" => Ok(Role::Customer),
            o => Err(format!(
                "unknown role '{o}' (expected portal, operator, viewer or customer)"
            )),
        }
    }
}

/// A stored API token: only the SHA-256 of the secret is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: uuid::Uuid,
    pub name: String,
    pub hash: String,
    pub role: Role,
    pub customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last request it made, as recorded: written at most once per
    /// `api::auth::LAST_USE_EVERY`, not on every request.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Refused from this time on (`None`: never expires).
    pub expires_at: Option<DateTime<Utc>>,
    /// Refused since this time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Whether a token may be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

impl fmt::Display for TokenState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ApiToken {
    /// Revocation wins over expiry; expiry is exclusive (`expires_at` itself is expired).
    pub fn state(&self, now: DateTime<Utc>) -> TokenState {
        if self.revoked_at.is_some() {
            TokenState::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            TokenState::Expired
        } else {
            TokenState::Active
        }
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("hash", &"<redacted>")
            .field("role", &self.role)
            .field("customer_id", &self.customer_id)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("expires_at", &self.expires_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// External identities appear as `jwt:<subject>` (`api/src/identity.rs`): no token's name
/// may look like one.
pub const EXTERNAL_IDENTITY_PREFIX: &str = "jwt:";

/// A token name: 1-64 visible characters (spaces allowed inside), not an external identity's.
pub fn check_token_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if !(1..=64).contains(&n) || name.trim() != name {
        return Err("1-64 characters, no leading or trailing space".into());
    }
    if name.chars().any(char::is_control) {
        return Err("no control characters".into());
    }
    if name.starts_with(EXTERNAL_IDENTITY_PREFIX) {
        return Err(format!(
            "'{EXTERNAL_IDENTITY_PREFIX}' names external identities"
        ));
    }
    Ok(())
}

/// The stored form of a token secret.
pub fn token_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// A fresh token secret: `zlh_` + 32 random bytes in hex.
pub fn new_token_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("zlh_{}", hex::encode(b))
}
