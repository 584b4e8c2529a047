//! Opening the store: which commands migrate, the pools, and the API's connection cap within
//! the open-file limit.
//!
//! Only `zlhd migrate` (the API unit's and `zlh.service`'s `ExecStartPre=`) and `zlhd dev`
//! change the schema. Every other command checks that this binary understands the schema
//! (deploy/POSTGRES.md, "Upgrades") and refuses, naming both versions, if it does not: so in
//! the split layout controllers never migrate, and a rolling upgrade runs one migrator.

use anyhow::Context as _;
use controller::config::Config;
use model::store::{AnyStore, SchemaFit, StoreOptions, schema};
use model::{Clock, SystemClock};
use std::sync::Arc;
use tracing::{info, warn};

/// What a command does with the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply the embedded migrations (`zlhd migrate`, `zlhd dev`).
    Migrate,
    /// Refuse a schema this binary does not understand; change nothing.
    Check,
}

pub const CANNOT_OPEN: &str = "cannot open the database";
pub const CANNOT_USE_SCHEMA: &str = "cannot use the database schema";
pub const CAP_LOWERED: &str =
    "api.limits.max_connections lowered to fit the open-file limit; raise LimitNOFILE";
/// File descriptors kept for everything but API connections and the database pools: the
/// listeners, log and database files, the backend clients' sockets.
const RESERVED_FDS: u64 = 128;
/// The API takes at least this many connections, whatever the limit says.
const MIN_API_CONNECTIONS: usize = 16;

/// Connect with `opts` (creating a SQLite file's directory) and apply `schema`.
pub async fn open(cfg: &Config, opts: &StoreOptions, schema: Schema) -> anyhow::Result<AnyStore> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let url = cfg.database_url()?;
    if let Some(path) = url.strip_prefix("sqlite://")
        && let Some(dir) = std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    let store = AnyStore::connect_with(&url, clock, opts)
        .await
        .context(CANNOT_OPEN)?;
    let fit = match schema {
        Schema::Migrate => store.migrate().await,
        Schema::Check => store.check_schema().await,
    }
    .context(CANNOT_USE_SCHEMA)?;
    match fit {
        SchemaFit::Current { version } => info!(version, "database schema"),
        SchemaFit::Newer { db, range } => {
            warn!(
                db,
                newest_known = range.newest,
                "{}",
                schema::msg::NEWER_SCHEMA
            )
        }
    }
    Ok(store)
}

/// The pool options of the API's store.
pub fn api_options(cfg: &Config) -> StoreOptions {
    cfg.database
        .with_max_connections(cfg.database.api_max_connections)
}

/// The API's connection cap: the configured one, lowered (with a warning) to what the soft
/// open-file limit leaves after the database pools and `RESERVED_FDS`, so a flood of idle
/// connections cannot take the descriptors the controller and the store need.
pub fn connection_cap(cfg: &Config) -> usize {
    let configured = cfg.api.limits.max_connections;
    let Some(limit) = open_file_limit() else {
        return configured;
    };
    let pools = u64::from(cfg.database.max_connections + cfg.database.api_max_connections) + 1;
    let room = limit.saturating_sub(pools + RESERVED_FDS);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if room >= configured {
        return configured;
    }
    let cap = room.max(MIN_API_CONNECTIONS);
    warn!(configured, cap, open_file_limit = limit, "{CAP_LOWERED}");
    cap
}

/// The soft `RLIMIT_NOFILE` (Linux: `/proc/self/limits`); `None` where unknown or unlimited.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&text)
}

fn parse_open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63704                63704                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(text), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None, "unlimited: no cap");
        assert_eq!(parse_open_file_limit(""), None, "not Linux");
    }
}
