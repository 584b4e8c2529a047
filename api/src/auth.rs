//! Bearer-token authentication, roles, visibility and the rate limits: per token, and per
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

use crate::problem::{ApiError, ApiResult};
use crate::router::Ctx;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as RateQuota};
use model::store::Store;
use model::{Role, customer::token_hash};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// Per-token limiter (GCRA, keyed by token id).
pub(crate) struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<uuid::Uuid>,
    checks: AtomicU64,
}

impl RateLimiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let per_second = NonZeroU32::new(per_second.max(1)).expect("max(1)");
        let burst = NonZeroU32::new(burst.max(1)).expect("max(1)");
        RateLimiter {
            limiter: governor::RateLimiter::keyed(
                RateQuota::per_second(per_second).allow_burst(burst),
            ),
            checks: AtomicU64::new(0),
        }
    }

    /// `Err(seconds to wait)` when over the limit.
    fn check(&self, key: uuid::Uuid) -> Result<(), u64> {
        // Forget idle tokens now and then so the table stays small.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key).map_err(wait_secs)
    }
}

fn wait_secs(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// What a 429 names as the limited party.
pub(crate) mod limited {
    pub const TOKEN: &str = "token";
    pub const ADDRESS: &str = "client address";
}

/// Per-client-address limit (GCRA) on requests whose token is not known good, checked before
/// the token lookup, so unknown tokens cannot cost the store more than the limit. A token
/// found valid joins `known` and is not counted again (a client behind a shared address, e.g.
/// a proxy, is not locked out by someone else guessing); a failed lookup removes it.
pub(crate) struct AddressLimiter {
    /// `None`: turned off (rate 0).
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Hashes of valid tokens: at most as many as the store holds (only a lookup adds one).
    known: Mutex<HashSet<String>>,
    checks: AtomicU64,
}

impl AddressLimiter {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|per_second| {
            let burst = NonZeroU32::new(burst.max(1)).expect("max(1)");
            governor::RateLimiter::keyed(RateQuota::per_second(per_second).allow_burst(burst))
        });
        AddressLimiter {
            limiter,
            known: Mutex::new(HashSet::new()),
            checks: AtomicU64::new(0),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(seconds to wait)` when `addr` is over its limit and `hash` is not known good.
    /// Without an address (a router served without connection info) nothing is limited.
    fn check(&self, addr: Option<IpAddr>, hash: &str) -> Result<(), u64> {
        let (Some(limiter), Some(addr)) = (&self.limiter, addr) else {
            return Ok(());
        };
        if self.known().contains(hash) {
            return Ok(());
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
        }
        limiter.check_key(&client_key(addr)).map_err(wait_secs)
    }

    /// Record a lookup's outcome for `hash`.
    fn learn(&self, hash: &str, valid: bool) {
        if self.limiter.is_none() {
            return;
        }
        let mut known = self.known();
        if !valid {
            known.remove(hash);
        } else if !known.contains(hash) {
            known.insert(hash.to_owned());
        }
    }
}

/// The limiter key of a client address: IPv4 as is, IPv6 by its /64 (one host usually has a
/// whole /64, so single addresses would be free to rotate).
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
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
    fn the_limiter_refuses_after_the_burst_and_names_a_wait() {
        let l = RateLimiter::new(1, 3);
        let k = uuid::Uuid::now_v7();
        for _ in 0..3 {
            assert!(l.check(k).is_ok());
        }
        let wait = l.check(k).unwrap_err();
        assert!(wait >= 1);
        // Another token has its own budget.
        assert!(l.check(uuid::Uuid::now_v7()).is_ok());
    }

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
