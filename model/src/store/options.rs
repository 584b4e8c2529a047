//! Connection pools: their size and timeouts (`[database]` in zlh.toml), and the pool every
//! store builds from them.

use serde::{Deserialize, Serialize};
use sqlx::pool::PoolOptions;
use sqlx::{Connection, Database};
use std::time::Duration;

/// Pool size and timeouts. Every default is in [`StoreOptions::default`] with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreOptions {
    /// Connections of the process's pool: the controller's (workers, lease renewals, resync,
    /// heartbeats) in `serve` and `controller`, the API's in `api`.
    pub max_connections: u32,
    /// Connections of the API's own pool in `serve`, and of `api`'s only pool: API clients
    /// can hold these at most, never the controller's.
    pub api_max_connections: u32,
    /// How long an operation waits for a connection (including opening one, e.g. while the
    /// database is down) before it fails: the API answers 503, the controller retries with
    /// backoff.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// A pooled connection idle this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// SQLite only: how long a write waits for the database's write lock.
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            // Reconciles mostly wait on Proxmox, holding no connection; 10 serves 16 workers.
            max_connections: 10,
            // Every API handler is a few short queries; 8 serves a busy Portal, and a flood
            // of API requests waits for these instead of taking the controller's.
            api_max_connections: 8,
            // Below the API's request_timeout (10 s), so a request against a store that is
            // down answers "store unavailable" itself rather than a generic timeout.
            acquire_timeout: Duration::from_secs(5),
            // sqlx's own default: keeps a quiet process from holding connections for ever.
            idle_timeout: Duration::from_secs(10 * 60),
            // Writes are single short transactions; 5 s of waiting means something is stuck.
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Why options were refused (the caller prefixes the key's section).
pub mod msg {
    pub const AT_LEAST_ONE: &str = "must be at least 1";
    pub const POSITIVE: &str = "must be longer than zero";
}

impl StoreOptions {
    /// Checks serde cannot express: `(key, why)` of the first bad value.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_connections == 0 {
            return Err(("max_connections", msg::AT_LEAST_ONE));
        }
        if self.api_max_connections == 0 {
            return Err(("api_max_connections", msg::AT_LEAST_ONE));
        }
        for (key, d) in [
            ("acquire_timeout", self.acquire_timeout),
            ("busy_timeout", self.busy_timeout),
        ] {
            if d.is_zero() {
                return Err((key, msg::POSITIVE));
            }
        }
        Ok(())
    }

    /// The options with `max_connections` replaced (the API's pool).
    pub fn with_max_connections(&self, max: u32) -> Self {
        StoreOptions {
            max_connections: max,
            ..self.clone()
        }
    }
}

/// A pool of `opts.max_connections` with the configured timeouts.
pub(crate) fn pool_options<DB: Database>(opts: &StoreOptions) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(opts.max_connections)
        .acquire_timeout(opts.acquire_timeout)
        .idle_timeout(opts.idle_timeout)
}

/// SQLite's pool also drops a connection a failed COMMIT left behind. When COMMIT fails
/// (disk full, read-only file system), SQLite rolls the transaction back itself; sqlx's
/// ROLLBACK then fails and it keeps counting the connection as inside a transaction, so every
/// later `BEGIN` on it would fail ("begin_with at non-zero transaction depth") until a
/// restart. Closing it lets the pool open a fresh one, so writes recover with the disk.
pub(crate) fn sqlite_pool_options(opts: &StoreOptions) -> PoolOptions<sqlx::Sqlite> {
    pool_options(opts).after_release(|conn: &mut sqlx::SqliteConnection, _meta| {
        Box::pin(async move {
            // A dropped transaction's ROLLBACK is queued on the connection: let it run first.
            conn.ping().await?;
            Ok(!conn.is_in_transaction())
        })
    })
}
