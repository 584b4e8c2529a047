//! Bearer-token authentication, roles, visibility and the rate limits (`crate::limit`): per token, and per
//! client address for tokens not known to be valid (checked before the token lookup).
//!
//! A request's `Authorization: Bearer <secret>` is hashed (SHA-256) and looked up in the store;
//! the secret itself is never logged, stored or echoed. Roles:
//! - `operator`: everything;
//! - `portal`: reads and writes servers of any customer, naming the customer on create;
//! - `viewer`: read-only, every customer;
//! - `customer`: its own servers only.
//!
//! A token that carries a customer id is scoped to that customer whatever its role: another
//! customer's server answers 404, exactly as if it did not exist.

use crate::limit::limited;
use crate::problem::{ApiError, ApiResult};
use crate::state::Ctx;
use crate::wire::ListFilter;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use model::store::{ServerFilter, Store};
use model::{Role, TokenState, customer::token_hash};
use std::net::SocketAddr;
use std::sync::Arc;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: uuid::Uuid,
    pub token_name: String,
    pub role: Role,
    /// `Some(customer)` for customer-scoped tokens.
    pub scope: Option<String>,
}

impl Principal {
    /// Allow only these roles (403 otherwise).
    pub fn require(&self, allowed: &[Role], action: &str) -> ApiResult<()> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "a {} token may not {action}",
                self.role
            )))
        }
    }

    /// Roles that may change servers.
    pub const WRITERS: &'static [Role] = &[Role::Operator, Role::Portal, Role::Customer];
    /// Every role may read (visibility still applies).
    pub const READERS: &'static [Role] =
        &[Role::Operator, Role::Portal, Role::Viewer, Role::Customer];
    /// Fleet-wide operational views.
    pub const OPS: &'static [Role] = &[Role::Operator, Role::Viewer];

    /// Whether this caller may see resources of `customer`.
    pub fn sees(&self, customer: &str) -> bool {
        self.scope.as_deref().is_none_or(|c| c == customer)
    }
}

/// The store filter for a caller, or `None` if the caller can see nothing of it (a customer
/// token asking for another customer).
pub(crate) fn store_filter(p: &Principal, f: &ListFilter) -> Option<ServerFilter> {
    let customer_id = match (&p.scope, &f.customer) {
        (Some(own), Some(asked)) if own != asked => return None,
        (Some(own), _) => Some(own.clone()),
        (None, asked) => asked.clone(),
    };
    Some(ServerFilter {
        customer_id,
        kind: f.kind,
        phase: f.phase,
        hostname: f.hostname.clone(),
        vmid: f.vmid,
    })
}

/// The bearer secret of a request, if the header is well-formed.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let Some(value) = parts.headers.get(AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <token> header".into(),
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    let (scheme, secret) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::Unauthorized("malformed Authorization header".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(
            "unsupported authorization scheme; use Bearer".into(),
        ));
    }
    let secret = secret.trim();
    if secret.is_empty() {
        return Err(ApiError::Unauthorized("empty bearer token".into()));
    }
    Ok(secret)
}

impl FromRequestParts<Arc<Ctx>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Arc<Ctx>) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let secret = bearer(parts)?;
        if let Some(verifier) = &ctx.identity
            && crate::identity::looks_like_jwt(secret)
        {
            // No store lookup, so no per-address limit before it (that limit protects the
            // store); the per-principal limit below still applies.
            let principal = crate::identity::principal(verifier, secret)?;
            ctx.limiter
                .check(principal.token_id)
                .map_err(|retry_after_secs| ApiError::RateLimited {
                    retry_after_secs: retry_after_secs.max(1),
                    limited: limited::TOKEN,
                })?;
            let span = tracing::Span::current();
            span.record("token", principal.token_name.as_str());
            span.record("role", principal.role.as_str());
            parts.extensions.insert(principal.clone());
            return Ok(principal);
        }
        let hash = token_hash(secret);
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        ctx.address_limiter
            .check(addr, &hash)
            .map_err(|retry_after_secs| ApiError::RateLimited {
                retry_after_secs: retry_after_secs.max(1),
                limited: limited::ADDRESS,
            })?;
        // Read on every request, so a revocation or an expiry holds at once on every replica.
        let found = ctx.app.store.find_token(&hash).await?;
        let now = chrono::Utc::now();
        let state = found.as_ref().map(|t| t.state(now));
        ctx.address_limiter
            .learn(&hash, state == Some(TokenState::Active));
        let token = match found.zip(state) {
            Some((t, TokenState::Active)) => t,
            Some((_, TokenState::Expired)) => {
                return Err(ApiError::Unauthorized(msg::EXPIRED.into()));
            }
            Some((_, TokenState::Revoked)) | None => {
                return Err(ApiError::Unauthorized(msg::UNKNOWN.into()));
            }
        };
        if token.role == Role::Customer && token.customer_id.is_none() {
            return Err(ApiError::Forbidden(
                "this customer token names no customer; issue a new one with --customer".into(),
            ));
        }
        ctx.limiter
            .check(token.id)
            .map_err(|retry_after_secs| ApiError::RateLimited {
                retry_after_secs: retry_after_secs.max(1),
                limited: limited::TOKEN,
            })?;
        if ctx.last_use.due(token.id, token.last_used_at, now) {
            let store = ctx.app.store.clone();
            let id = token.id;
            // Off the request path: a slow write must not slow the request.
            tokio::spawn(async move {
                if let Err(e) = store
                    .touch_token(id, now, now - LAST_USE_EVERY_CHRONO)
                    .await
                {
                    tracing::debug!(error = %e, "token last use not recorded");
                }
            });
        }
        let principal = Principal {
            token_id: token.id,
            token_name: token.name,
            role: token.role,
            scope: token.customer_id,
        };
        let span = tracing::Span::current();
        span.record("token", principal.token_name.as_str());
        span.record("role", principal.role.as_str());
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// The refusals' texts.
pub mod msg {
    pub const UNKNOWN: &str = "unknown or revoked token";
    pub const EXPIRED: &str = "this token has expired; ask an operator for a new one";
}

/// A token's last use is written at most this often (per token, per API process; replicas
/// racing write once, see `Store::touch_token`): minute precision is what `token list` needs,
/// and a write per request would double the store's load.
pub const LAST_USE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const LAST_USE_EVERY_CHRONO: chrono::TimeDelta =
    chrono::TimeDelta::seconds(LAST_USE_EVERY.as_secs() as i64);

/// When this process last wrote each token's last use.
#[derive(Default)]
pub(crate) struct LastUse {
    written: std::sync::Mutex<std::collections::HashMap<uuid::Uuid, std::time::Instant>>,
}

impl LastUse {
    /// Whether to record a use at `now`: the stored one is older than [`LAST_USE_EVERY`] and
    /// this process has not written one within it (marked as written when `true`).
    pub(crate) fn due(
        &self,
        id: uuid::Uuid,
        stored: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        if stored.is_some_and(|t| now - t < LAST_USE_EVERY_CHRONO) {
            return false;
        }
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let at = std::time::Instant::now();
        match written.get(&id) {
            Some(w) if at.duration_since(*w) < LAST_USE_EVERY => false,
            _ => {
                written.insert(id, at);
                true
            }
        }
    }
}

/// Extractors that authenticate and then require a role (403 otherwise).
macro_rules! role_guard {
    ($(#[$doc:meta])* $name:ident, $roles:expr, $action:literal) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequestParts<Arc<Ctx>> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                ctx: &Arc<Ctx>,
            ) -> Result<Self, ApiError> {
                let p = Principal::from_request_parts(parts, ctx).await?;
                p.require($roles, $action)?;
                Ok($name(p))
            }
        }
    };
}

role_guard!(
    /// Any role (visibility still applies).
    Reader, Principal::READERS, "read"
);
role_guard!(
    /// Operator, portal or customer.
    Writer, Principal::WRITERS, "change servers"
);
role_guard!(
    /// Operator or viewer: fleet-wide operational views.
    OpsReader, Principal::OPS, "read fleet-wide controller state"
);
role_guard!(
    /// Operator only.
    Operator, &[Role::Operator], "do this (operators only)"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_limits_visibility() {
        let p = Principal {
            token_id: uuid::Uuid::nil(),
            token_name: "t".into(),
            role: Role::Customer,
            scope: Some("u1".into()),
        };
        assert!(p.sees("u1"));
        assert!(!p.sees("u2"));
        assert!(Principal { scope: None, ..p }.sees("u2"));
    }

    #[test]
    fn last_use_is_written_at_most_once_per_period() {
        let l = LastUse::default();
        let id = uuid::Uuid::now_v7();
        let now = chrono::Utc::now();
        type Case = (&'static str, Option<chrono::DateTime<chrono::Utc>>, bool);
        let cases: &[Case] = &[
            ("never used: write", None, true),
            ("written by this process just now: skip", None, false),
            ("stored recently (another replica): skip", Some(now), false),
        ];
        for (reason, stored, want) in cases {
            assert_eq!(l.due(id, *stored, now), *want, "{reason}");
        }
        let old = now - chrono::TimeDelta::minutes(5);
        assert!(
            l.due(uuid::Uuid::now_v7(), Some(old), now),
            "another token, stale: write"
        );
    }
}
