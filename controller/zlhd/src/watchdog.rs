//! systemd's watchdog: with `WatchdogSec=` the service manager restarts zlhd unless it hears
//! `WATCHDOG=1` at least once per period. Keep-alives are sent only while the engine's main
//! loop goes round, so a wedged controller (a store call that never returns, a deadlock) is
//! restarted; a controller whose store or backends answer with errors keeps going, since a
//! restart would not help it.

use controller::health::Health;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Whether to send a keep-alive now: always without an engine in the process (`zlhd api`),
/// else only if its main loop went round within one watchdog `period`.
pub fn alive(health: Option<&Health>, period: Duration) -> bool {
    health.is_none_or(|h| h.loop_age() < period)
}

/// Start the keep-alives if the service manager asked for them (`WATCHDOG_USEC`).
pub fn spawn(health: Option<Arc<Health>>, shutdown: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    info!(?period, "systemd watchdog enabled");
    tokio::spawn(run(health, period, shutdown, |ok| {
        if ok {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }));
}

/// Every half `period` (as systemd advises), decide and `report(alive)`; a stalled loop is
/// logged once per stall.
pub async fn run(
    health: Option<Arc<Health>>,
    period: Duration,
    shutdown: CancellationToken,
    mut report: impl FnMut(bool) + Send,
) {
    let mut tick = tokio::time::interval(period / 2);
    let mut stalled = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ok = alive(health.as_deref(), period);
        if !ok && !stalled {
            let age = health.as_ref().map(|h| h.loop_age());
            warn!(
                ?age,
                "the engine's main loop has not gone round for a watchdog period; \
                 withholding keep-alives so systemd restarts zlhd"
            );
        } else if ok && stalled {
            info!("the engine's main loop goes round again; keep-alives resume");
        }
        stalled = !ok;
        report(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No engine: always alive. An engine: alive until its loop misses a whole period.
    #[tokio::test(start_paused = true)]
    async fn keep_alives_follow_the_engine_loop() {
        let period = Duration::from_secs(60);
        assert!(alive(None, period));
        let h = Health::new("watchdog-test");
        assert!(alive(Some(&h), period));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!alive(Some(&h), period), "a wedged loop gets no keep-alive");
        h.beat(&controller::queue::WorkQueue::new());
        assert!(alive(Some(&h), period));
    }
}
