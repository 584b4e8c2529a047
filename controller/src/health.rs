//! The engine's liveness and readiness, as the controller's listener (`/readyz`) and
//! systemd's watchdog see them: when the main loop last went round, and when a resync round
//! last completed. A store call that hangs stops both, so a wedged controller shows unready
//! and stops its watchdog keep-alives; a store or backend that answers with errors does not.

use crate::config::ControllerSection;
use crate::metrics as m;
use crate::queue::WorkQueue;
use model::ServerId;
use model::store::{AnyStore, Store};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How long `/readyz` waits for the store: a ping is one trivial query, so a store that takes
/// longer is in trouble whatever its reason.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a replica is not ready (the listener's 503 detail). Never carries a store error's text,
/// which may name the database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the store does not answer")]
    StoreUnreachable,
    #[error("the store did not answer within {0:?}")]
    StoreTimeout(Duration),
    #[error("no resync round has completed yet")]
    NoResync,
    #[error("the last resync round completed {age:?} ago (more than {max:?})")]
    ResyncStale { age: Duration, max: Duration },
}

pub struct Health {
    /// The main loop's last round (its heartbeat); the start until the first one.
    beat: Mutex<Instant>,
    /// The last completed resync round: swept, or left to the replica holding the resync.
    resync: Mutex<Option<Instant>>,
}

impl Health {
    /// A replica's health, with its series registered (see [`m::register_engine`]).
    pub fn new(replica: &str) -> Self {
        m::register_engine(replica);
        Health {
            beat: Mutex::new(Instant::now()),
            resync: Mutex::new(None),
        }
    }

    /// The main loop went round (its heartbeat ran, whatever the store answered): record it
    /// and sample the queue's gauges.
    pub fn beat(&self, queue: &WorkQueue<ServerId>) {
        *self.beat.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        metrics::gauge!(m::CONTROLLER_LOOP).set(m::unix_now());
        metrics::gauge!(m::WORKQUEUE_DEPTH).set(queue.depth() as f64);
        metrics::gauge!(m::WORKQUEUE_OLDEST_AGE).set(queue.oldest_ready_age().as_secs_f64());
        metrics::gauge!(m::RECONCILES_IN_FLIGHT).set(queue.running() as f64);
    }

    /// A resync swept the fleet.
    pub fn resync_swept(&self) {
        self.resync_round();
        metrics::gauge!(m::RESYNC_LAST_SUCCESS).set(m::unix_now());
    }

    /// Another replica holds the resync: this round is done too. The fleet gauges drop to 0
    /// here, so that summing (or taking the max) across replicas counts the fleet once (one
    /// engine per process; replicas sharing a process, in tests, share the gauges).
    pub fn resync_elsewhere(&self) {
        self.resync_round();
        crate::resync::clear_fleet_gauges();
    }

    fn resync_round(&self) {
        *self.resync.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Time since the main loop last went round.
    pub fn loop_age(&self) -> Duration {
        self.beat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Time since a resync round last completed; `None` before the first.
    pub fn resync_age(&self) -> Option<Duration> {
        self.resync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    /// Ready: the store answers, and a resync round completed within
    /// [`ControllerSection::readiness_resync_max_age`].
    pub async fn readiness(
        &self,
        store: &AnyStore,
        timing: &ControllerSection,
    ) -> Result<(), NotReady> {
        match tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: the store does not answer");
                return Err(NotReady::StoreUnreachable);
            }
            Err(_) => return Err(NotReady::StoreTimeout(STORE_PING_TIMEOUT)),
        }
        self.resync_fresh(timing.readiness_resync_max_age())
    }

    /// The resync half of [`readiness`](Self::readiness).
    pub fn resync_fresh(&self, max: Duration) -> Result<(), NotReady> {
        match self.resync_age() {
            None => Err(NotReady::NoResync),
            Some(age) if age > max => Err(NotReady::ResyncStale { age, max }),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unready until the first resync round, ready after one (swept or left to another
    /// replica), unready again once the last round is older than the limit.
    #[tokio::test(start_paused = true)]
    async fn readiness_follows_the_resync_rounds() {
        let h = Health::new("test-replica");
        let max = Duration::from_secs(180);
        assert_eq!(h.resync_fresh(max), Err(NotReady::NoResync));
        h.resync_swept();
        assert_eq!(h.resync_fresh(max), Ok(()));
        tokio::time::advance(Duration::from_secs(181)).await;
        assert!(matches!(
            h.resync_fresh(max),
            Err(NotReady::ResyncStale { .. })
        ));
        h.resync_elsewhere();
        assert_eq!(h.resync_fresh(max), Ok(()));
    }

    /// The loop's age restarts at each beat.
    #[tokio::test(start_paused = true)]
    async fn the_loop_age_restarts_at_each_beat() {
        let h = Health::new("test-replica");
        let q = WorkQueue::new();
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(h.loop_age(), Duration::from_secs(30));
        h.beat(&q);
        assert_eq!(h.loop_age(), Duration::ZERO);
    }
}
