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
use model::{Role, customer::token_hash};
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
        let found = ctx.app.store.find_token(&hash).await?;
        ctx.address_limiter.learn(&hash, found.is_some());
        let token =
            found.ok_or_else(|| ApiError::Unauthorized("unknown or revoked token".into()))?;
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
}
