//! Retention: prunes the change feed, events, finished operations (and both of deleted
//! servers), the archive and the audit log as `[retention]` says, a small batch (one short
//! transaction) at a time, so writers never wait long behind a prune. On PostgreSQL one replica at a time prunes (the `retention`
//! singleton); the others skip the round. Server rows are never touched: a prune cannot
//! disturb a server, only make a reader that fell behind the feed's horizon re-list
//! (`StoreError::FeedGone`, see `docs/store.md`).

use crate::config::RetentionSection;
use model::store::{AnyStore, Prune, Store, StoreError};
use tracing::info;

pub const SINGLETON_RETENTION: &str = "retention";

/// Rows one round removed, per target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub changes: u64,
    pub events_per_server: u64,
    pub events: u64,
    pub operations: u64,
    /// Events and operations of servers deleted longer ago than `deleted_servers`.
    pub of_deleted: u64,
    pub archive: u64,
    pub audit: u64,
}

impl Pruned {
    fn slot(&mut self, what: Prune) -> &mut u64 {
        match what {
            Prune::ChangeFeed { .. } => &mut self.changes,
            Prune::EventsPerServer { .. } => &mut self.events_per_server,
            Prune::Events { .. } => &mut self.events,
            Prune::Operations { .. } => &mut self.operations,
            Prune::EventsOfDeleted { .. } | Prune::OperationsOfDeleted { .. } => {
                &mut self.of_deleted
            }
            Prune::Archive { .. } => &mut self.archive,
            Prune::Audit { .. } => &mut self.audit,
        }
    }

    pub fn total(&self) -> u64 {
        self.changes
            + self.events_per_server
            + self.events
            + self.operations
            + self.of_deleted
            + self.archive
            + self.audit
    }
}

/// What a round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Another replica holds the singleton (or retention is off).
    Skipped,
    Pruned(Pruned),
}

/// One prune round: every target, batch after batch until one comes back short or
/// `max_batches` ran.
pub async fn prune_round(
    store: &AnyStore,
    cfg: &RetentionSection,
    holder: &str,
) -> Result<Round, StoreError> {
    if !cfg.enabled
        || !store
            .try_singleton(SINGLETON_RETENTION, holder, cfg.singleton_ttl())
            .await?
    {
        return Ok(Round::Skipped);
    }
    let mut pruned = Pruned::default();
    for what in cfg.targets() {
        for _ in 0..cfg.max_batches {
            let n = store.prune(what, cfg.batch).await?;
            *pruned.slot(what) += n;
            if n < u64::from(cfg.batch) {
                break;
            }
        }
    }
    if pruned.total() > 0 {
        info!(
            changes = pruned.changes,
            events = pruned.events + pruned.events_per_server,
            operations = pruned.operations,
            of_deleted_servers = pruned.of_deleted,
            archive = pruned.archive,
            audit = pruned.audit,
            "retention pruned"
        );
    }
    Ok(Round::Pruned(pruned))
}
