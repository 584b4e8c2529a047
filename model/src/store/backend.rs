//! What differs between the two databases, and nothing else: the SQL a backend runs in place
//! of the shared text, and how it binds times. Everything else — every `Store` method, every
//! helper — is written once, generically, in [`SqlStore`](super::SqlStore).
//!
//! The helper vocabulary both backends share (`super::sql_store`):
//! - `write_tx`: begin a write (SQLite `BEGIN IMMEDIATE`: the database write lock up front);
//! - `lock`: read the server row for writing (Postgres `FOR UPDATE`; SQLite already holds the
//!   write lock);
//! - `lease_for_fence`: read the lease a fence is checked against (Postgres `FOR SHARE`, so a
//!   claim cannot slip between the check and the write);
//! - `lock_customer`: serialise a customer's creates and quota-checked updates (Postgres
//!   advisory lock; SQLite: the write lock already does);
//! - `stamp`: append to the change feed (the cross-process wake-up is sent after the commit,
//!   see `super::notify`);
//! - `leave`: roll back now and answer.

use super::sql::{SELECT_LEASE, SELECT_SERVER, SELECT_SERVER_FOR_UPDATE};
use chrono::{DateTime, Utc};
use sqlx::{Database, Encode, Postgres, Sqlite, Type};

/// A database the store runs on. Implemented for [`Sqlite`] and [`Postgres`] only.
pub trait Backend: Database {
    /// A time as bound: TIMESTAMPTZ on Postgres, fixed-width RFC 3339 text on SQLite.
    type Time: for<'q> Encode<'q, Self> + Type<Self> + Send + Sync + 'static;
    /// `"sqlite"` or `"postgres"`.
    const BACKEND: &'static str;
    /// Starts every write transaction.
    const BEGIN_WRITE: &'static str;
    /// Reads a server row (`$1`) for writing.
    const LOCK_SERVER: &'static str;
    /// Reads the lease row (`$1`) a fence is checked against.
    const LEASE_FOR_FENCE: &'static str;
    /// Reads the lease row (`$1`) a claim decides on; no row means "try to create it".
    const LEASE_FOR_CLAIM: &'static str;
    /// Serialises a customer's (`$1`) creates and quota-checked updates to commit, if the
    /// write lock does not already.
    const LOCK_CUSTOMER: Option<&'static str>;
    /// Changes after position `$1`, oldest first, at most `$2`, each with `final`: whether no
    /// change at a lower position can still commit (see [`super::feed`]).
    const CHANGES_SINCE: &'static str;
    /// [`CHANGES_SINCE`](Self::CHANGES_SINCE) with a cheaper horizon that is never above
    /// its own (so never calls a change final that is not): tried first.
    const CHANGES_SINCE_QUICK: &'static str;
    /// The newest final position (at least the pruned one) and whether committed changes
    /// above it are held back by an older transaction still in progress.
    const LATEST_SEQ: &'static str;
    /// [`LATEST_SEQ`](Self::LATEST_SEQ) with the cheaper horizon, tried first.
    const LATEST_SEQ_QUICK: &'static str;
    /// Up to `$4` free VMIDs of `$1..=$2` above `$3`, lowest first, held until commit; one
    /// a concurrent reservation holds is skipped.
    const FREE_VMIDS: &'static str;
    /// [`FREE_VMIDS`](Self::FREE_VMIDS), waiting for one a concurrent reservation holds
    /// (asked when nothing free was unheld: that one may yet come back).
    const FREE_VMIDS_WAIT: &'static str;
    /// Deletes up to `$2` idempotency keys created before `$1`.
    const PURGE_IDEMPOTENCY_KEYS: &'static str;
    /// The oldest free member of template `$1`'s pool, held until commit; one a concurrent
    /// claim holds is skipped (each claim takes a different member).
    const FREE_POOL_MEMBER: &'static str;

    fn ts(t: DateTime<Utc>) -> Self::Time;
    /// Rows a statement changed (each driver's result type has its own method).
    fn rows_affected(r: &Self::QueryResult) -> u64;
}

/// One writer at a time: `BEGIN IMMEDIATE` takes the database write lock up front (no
/// `SQLITE_BUSY` on a read→write upgrade), so reads inside a write are as good as
/// `FOR UPDATE`, and change-feed numbers commit in order.
impl Backend for Sqlite {
    type Time = String;
    const BACKEND: &'static str = "sqlite";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const LOCK_SERVER: &'static str = SELECT_SERVER;
    const LEASE_FOR_FENCE: &'static str = SELECT_LEASE;
    const LEASE_FOR_CLAIM: &'static str = SELECT_LEASE;
    const LOCK_CUSTOMER: Option<&'static str> = None;
    /// One writer at a time: positions (AUTOINCREMENT) commit in order, every one is final.
    const CHANGES_SINCE: &'static str = "SELECT seq, server_id, kind, at, TRUE AS final \
         FROM server_changes WHERE seq > $1 ORDER BY seq LIMIT $2";
    const CHANGES_SINCE_QUICK: &'static str = Self::CHANGES_SINCE;
    const LATEST_SEQ: &'static str = "SELECT MAX(pruned_through, \
         COALESCE((SELECT MAX(seq) FROM server_changes), 0)), FALSE FROM feed_state WHERE id = 1";
    const LATEST_SEQ_QUICK: &'static str = Self::LATEST_SEQ;
    const FREE_VMIDS: &'static str = "SELECT vmid FROM vmid_free \
         WHERE vmid BETWEEN $1 AND $2 AND vmid > $3 ORDER BY vmid LIMIT $4";
    const FREE_VMIDS_WAIT: &'static str = Self::FREE_VMIDS;
    const FREE_POOL_MEMBER: &'static str = "SELECT vmid FROM pool_members \
         WHERE template_vmid = $1 AND state = 'free' ORDER BY created_at, vmid LIMIT 1";
    const PURGE_IDEMPOTENCY_KEYS: &'static str = "DELETE FROM idempotency_keys WHERE rowid IN \
         (SELECT rowid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)";

    /// The one stored time format: `2026-11-27T20:11:48.123456Z`. sqlx's own encoding drops
    /// trailing zero digits, which would make text order differ from time order.
    fn ts(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    fn rows_affected(r: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        r.rows_affected()
    }
}

/// The feed's horizon on PostgreSQL, as a derived table `h(horizon)`: the oldest transaction
/// of *this* database still in progress at the statement's snapshot (a position below it is
/// final). The snapshot's in-progress list (`xip`) holds every database's transactions;
/// those `pg_stat_activity` shows running in another database can never write here, so they
/// are left out, and a long transaction elsewhere on the cluster (another database's
/// migration, a report, a parallel test) no longer holds our readers back. Leaving one out
/// is safe only that way round: an id not shown there (finished meanwhile, or hidden from
/// this role) stays in, which can delay a change, never skip one. With nothing left,
/// `xmax` (every id below it has completed) is the horizon. `backend_xid` is 32 bits, so
/// the in-progress ids are compared on their low 32 bits: ids in progress together are
/// less than 2^31 apart, so those are unique.
macro_rules! pg_feed_horizon {
    () => {
        "(SELECT COALESCE( \
            (SELECT MIN(x::text::bigint) FROM pg_snapshot_xip(s.snap) AS x \
             WHERE (x::text::bigint & 4294967295) NOT IN \
               (SELECT a.backend_xid::text::bigint FROM pg_stat_activity a \
                WHERE a.datname <> current_database() AND a.backend_xid IS NOT NULL)), \
            pg_snapshot_xmax(s.snap)::text::bigint) + f2.shift AS horizon \
          FROM feed_state f2, (SELECT pg_current_snapshot() AS snap) s WHERE f2.id = 1) h"
    };
}

/// [`pg_feed_horizon!`] without leaving other databases' transactions out: the snapshot's
/// `xmin`, the oldest transaction in progress on the whole cluster. Never above the precise
/// horizon (it is the minimum over a superset), so what it calls final is; it may hold back
/// more. It skips `pg_stat_activity`, which costs several times the feed read itself
/// (0.76 against 0.11 ms per read measured on this machine's PostgreSQL 15), so readers try
/// it first and ask the precise one only when changes stay held back
/// (`super::feed::QUICK_TRIES`).
macro_rules! pg_feed_horizon_quick {
    () => {
        "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint + f2.shift AS horizon \
          FROM feed_state f2 WHERE f2.id = 1) h"
    };
}

/// Several writers: row locks, and advisory locks where a row lock cannot say it.
impl Backend for Postgres {
    type Time = DateTime<Utc>;
    const BACKEND: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const LOCK_SERVER: &'static str = SELECT_SERVER_FOR_UPDATE;
    /// Share-locked: a claimer (`FOR UPDATE SKIP LOCKED`) backs off until we commit, and we
    /// wait for a claimer that got there first, then see its new token.
    const LEASE_FOR_FENCE: &'static str = "SELECT holder, token, expires_at, released \
         FROM leases WHERE server_id = $1 FOR SHARE";
    /// A lease row another claimer (or a fenced writer) is working on is skipped: not ours.
    const LEASE_FOR_CLAIM: &'static str = "SELECT holder, token, expires_at, released \
         FROM leases WHERE server_id = $1 FOR UPDATE SKIP LOCKED";
    /// Advisory lock in the two-int key space (disjoint from the bigint one), namespace
    /// 2053924963 = 0x7a6c6863 ("zlhc"). Taken after the row lock: no transaction takes a row
    /// lock while holding this one.
    const LOCK_CUSTOMER: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(2053924963, hashtext($1))");
    /// Positions are transaction ids (the column default, migration 0006): final below the
    /// oldest transaction of this database still in progress (see [`super::feed`]).
    const CHANGES_SINCE: &'static str = concat!(
        "SELECT c.seq, c.server_id, c.kind, c.at, c.seq < h.horizon AS final \
         FROM server_changes c, ",
        pg_feed_horizon!(),
        " WHERE c.seq > $1 ORDER BY c.seq LIMIT $2"
    );
    const CHANGES_SINCE_QUICK: &'static str = concat!(
        "SELECT c.seq, c.server_id, c.kind, c.at, c.seq < h.horizon AS final \
         FROM server_changes c, ",
        pg_feed_horizon_quick!(),
        " WHERE c.seq > $1 ORDER BY c.seq LIMIT $2"
    );
    const LATEST_SEQ_QUICK: &'static str = concat!(
        "SELECT GREATEST(f.pruned_through, \
         COALESCE((SELECT MAX(seq) FROM server_changes WHERE seq < h.horizon), 0)), \
         EXISTS (SELECT 1 FROM server_changes WHERE seq >= h.horizon) \
         FROM feed_state f, ",
        pg_feed_horizon_quick!(),
        " WHERE f.id = 1"
    );
    const LATEST_SEQ: &'static str = concat!(
        "SELECT GREATEST(f.pruned_through, \
         COALESCE((SELECT MAX(seq) FROM server_changes WHERE seq < h.horizon), 0)), \
         EXISTS (SELECT 1 FROM server_changes WHERE seq >= h.horizon) \
         FROM feed_state f, ",
        pg_feed_horizon!(),
        " WHERE f.id = 1"
    );
    const FREE_VMIDS: &'static str = "SELECT vmid FROM vmid_free \
         WHERE vmid BETWEEN $1 AND $2 AND vmid > $3 ORDER BY vmid LIMIT $4 \
         FOR UPDATE SKIP LOCKED";
    const FREE_VMIDS_WAIT: &'static str = "SELECT vmid FROM vmid_free \
         WHERE vmid BETWEEN $1 AND $2 AND vmid > $3 ORDER BY vmid LIMIT $4 FOR UPDATE";
    const FREE_POOL_MEMBER: &'static str = "SELECT vmid FROM pool_members \
         WHERE template_vmid = $1 AND state = 'free' ORDER BY created_at, vmid LIMIT 1 \
         FOR UPDATE SKIP LOCKED";
    /// Skips rows another purge holds: housekeeping never waits or deadlocks.
    const PURGE_IDEMPOTENCY_KEYS: &'static str = "DELETE FROM idempotency_keys WHERE ctid IN \
         (SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2 \
          FOR UPDATE SKIP LOCKED)";

    /// Binds as TIMESTAMPTZ directly.
    fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }

    fn rows_affected(r: &sqlx::postgres::PgQueryResult) -> u64 {
        r.rows_affected()
    }
}
