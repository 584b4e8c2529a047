//! The change feed: every write of a server row appends one change in the same transaction;
//! the change's position becomes the row's `resource_version`. Readers (the resync mirror,
//! SSE watches, `zctl get -w`) follow it with [`Store::changes_since`] from a saved position.
//!
//! # Why a reader never skips a change
//!
//! A reader hands out a change only once it is *final*: no change at a lower position can
//! still commit. Then "everything up to my position" never grows behind a reader, so resuming
//! from the last position delivered sees every later change exactly once, in one order that
//! every reader shares (position order).
//!
//! - **SQLite** has one writer at a time (`BEGIN IMMEDIATE`): positions (AUTOINCREMENT)
//!   commit in the order they are taken, so every committed change is final.
//! - **PostgreSQL** writers do not serialise on the feed (no lock held to commit). A
//!   position is the writing transaction's id (`pg_current_xact_id()`, 64-bit, never wraps)
//!   plus a fixed shift (migration 0006). A change is final when its position is below the
//!   reading statement's `pg_snapshot_xmin(pg_current_snapshot())` (plus the shift): every
//!   transaction with a smaller id has committed (and is visible to that same statement) or
//!   rolled back (its change never existed), and every transaction still running or yet to
//!   start has an id at or above it. So the final prefix a reader sees is complete, and it
//!   only ever grows at its end. A rolled-back transaction leaves no change. One change per
//!   transaction (the primary key on the position enforces it).
//!
//!   The per-row order holds too: every write locks its server row (`FOR UPDATE`, which
//!   assigns the transaction id) before anything else writes, so a later writer of the same
//!   row gets a larger id, and `resource_version` grows with every write of a row.
//!
//!   In-progress transactions of *other* databases on the same cluster (which can never
//!   write here) are left out of that minimum, as far as `pg_stat_activity` shows them
//!   running (`pg_feed_horizon!` in `backend.rs`): leaving out only what is known to be
//!   elsewhere can delay a change, never skip one. So a long transaction of this database
//!   delays (never loses) changes. A read that finds committed changes held back reads
//!   again after [`HELD_BACK_FIRST_WAIT`], doubling, up to [`HELD_BACK_TRIES`] times (about a
//!   second in all), until the changes it saw at first are final; changes committed later do
//!   not extend the wait. Then it answers with the final prefix; the next read continues.
//!
//! # Retention
//!
//! Pruning deletes the oldest changes and raises `feed_state.pruned_through` in the same
//! transaction. A reader whose position is below it may have missed changes: it gets
//! [`StoreError::FeedGone`] and re-reads everything (the mirror) or is told to re-list (a
//! watch: 410 Gone). The check runs *after* the read, so a prune committing in between is
//! seen.

use std::time::Duration;

/// First pause before reading again when committed changes are held back by an older
/// transaction; each further pause doubles.
pub(crate) const HELD_BACK_FIRST_WAIT: Duration = Duration::from_millis(1);
/// Reads before answering with the final prefix only: 1 + 2 + … + 512 ms ≈ 1 s covers a
/// write's commit; a transaction open longer only delays the reader.
pub(crate) const HELD_BACK_TRIES: u32 = 11;

/// Reads that use the cheap horizon (the oldest transaction in progress on the whole
/// cluster) before the precise one (of this database only, through `pg_stat_activity`):
/// the first read and two retries 1 and 2 ms later, which cover a concurrent write's
/// commit; held back longer, most likely by another database's transaction, the precise
/// horizon looks past it.
pub(crate) const QUICK_TRIES: u32 = 3;

/// The pause before read number `tries` + 1.
pub(crate) fn held_back_wait(tries: u32) -> Duration {
    HELD_BACK_FIRST_WAIT * 2u32.saturating_pow(tries.saturating_sub(1))
}
