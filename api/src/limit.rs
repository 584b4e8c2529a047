//! The request rate limits (GCRA, `governor`): per token, and per client address for tokens
//! not known to be valid. A leaf: the state holds them, `crate::auth` checks them.

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as RateQuota};
use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    pub(crate) fn check(&self, key: uuid::Uuid) -> Result<(), u64> {
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
    pub(crate) fn check(&self, addr: Option<IpAddr>, hash: &str) -> Result<(), u64> {
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
    pub(crate) fn learn(&self, hash: &str, valid: bool) {
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
}
