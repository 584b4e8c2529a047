//! SQLite: the embedded, single-controller backend. What it does differently is in its
//! [`Backend`](super::Backend) implementation (one writer at a time: `BEGIN IMMEDIATE`);
//! here: connecting. Times are stored as fixed-width RFC 3339 text so that text order is
//! time order.

use super::options;
use super::rules::connect_error;
use super::*;
use crate::Clock;
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// The store on SQLite.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
    /// Open (creating if missing) the database at a `sqlite:` URL. Does not migrate.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, &StoreOptions::default()).await
    }

    /// [`connect`](Self::connect) with the pool size and timeouts of `opts`.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        opts: &StoreOptions,
    ) -> Result<Self> {
        let conn = SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_error(e, url))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(opts.busy_timeout)
            .foreign_keys(true);
        let pool = options::sqlite_pool_options(opts)
            .connect_with(conn)
            .await
            .map_err(|e| connect_error(e, url))?;
        Ok(Self::from_pool(pool, clock))
    }

    /// The same database file and notices through a pool of its own (see
    /// [`AnyStore::with_own_pool`]).
    pub fn with_own_pool(&self, opts: &StoreOptions) -> Self {
        if self.sqlite_path().is_none() {
            return self.clone();
        }
        let conn = (*self.pool.connect_options()).clone();
        let pool = options::sqlite_pool_options(opts).connect_lazy_with(conn);
        Self::with_parts(pool, self.clock.clone(), Some(self.notices.clone()), None)
    }

    /// Wrap an existing pool (e.g. from `#[sqlx::test]`); it should have the options
    /// [`connect`](Self::connect) sets.
    pub fn from_pool(pool: SqlitePool, clock: Arc<dyn Clock>) -> Self {
        Self::with_parts(pool, clock, None, None)
    }

    /// The database file, for the single-controller lock; `None` in memory.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let opts = self.pool.connect_options();
        let path = opts.get_filename();
        let s = path.to_string_lossy();
        (s != ":memory:" && !s.starts_with("file:sqlx-in-memory")).then(|| path.to_path_buf())
    }
}
