//! Optional outgoing pacing for a backend (a governor limiter), so a fleet-wide resync or a
//! burst of provisioning cannot flood a DNS server, the proxy bridge or the Agents.
//! Cloudflare paces itself against its published budget (see `cloudflare.rs`).

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Pace(Option<Arc<DefaultDirectRateLimiter>>);

impl Pace {
    /// At most `per_second` requests per second (bursts of the same size); 0 = unpaced.
    pub fn per_second(per_second: u32) -> Pace {
        Pace(
            NonZeroU32::new(per_second)
                .map(|n| Arc::new(RateLimiter::direct(Quota::per_second(n)))),
        )
    }

    pub async fn wait(&self) {
        if let Some(l) = &self.0 {
            l.until_ready().await;
        }
    }
}

impl std::fmt::Debug for Pace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Pace(limited)"
        } else {
            "Pace(unlimited)"
        })
    }
}
