//! Version skew: which database schemas this binary runs on, and migrating.
//!
//! Schema changes are expand-then-contract (deploy/POSTGRES.md, "Upgrades"): a migration never
//! breaks the previous release's queries, so release N keeps working while `zlhd migrate` of
//! N+1 expands the schema under it. A binary therefore needs every migration it ships (the
//! oldest schema it runs on is its newest) and runs on any newer schema whose
//! `schema_compat.min_reader` (raised only by a migration that contracts) it reaches; it
//! refuses anything else with a message naming both versions. Only [`AnyStore::migrate`]
//! changes the schema.

use super::{AnyStore, PG_MIGRATOR, SQLITE_MIGRATOR, StoreError};
use sqlx::migrate::{Migration, Migrator};
use std::fmt;

/// The fixed parts of the refusals, kept greppable.
pub mod msg {
    pub const RUN_MIGRATE: &str = "run `zlhd migrate` with this binary first";
    pub const UPGRADE_ZLHD: &str = "upgrade zlhd";
    pub const NEWER_SCHEMA: &str = "the database schema is newer than this zlhd; running on it (expand-then-contract keeps the previous release working); upgrade zlhd soon";
    pub const FAILED_MIGRATION: &str = "fix its cause and run `zlhd migrate` again";
}

/// The schema versions a binary understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaRange {
    /// The oldest schema its queries work on: its own newest, since a binary may use
    /// everything it migrates to.
    pub oldest: i64,
    /// The newest migration it knows.
    pub newest: i64,
}

impl fmt::Display for SchemaRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.oldest == self.newest {
            write!(f, "schema {}", self.newest)
        } else {
            write!(f, "schema {} to {}", self.oldest, self.newest)
        }
    }
}

/// What a database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaState {
    /// The newest migration applied (0: none, an empty database).
    pub version: i64,
    /// The oldest schema version whose binaries may use it (0 before `schema_compat` exists).
    pub min_reader: i64,
    /// The oldest migration recorded as failed, if any.
    pub failed: Option<i64>,
}

/// A schema this binary runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFit {
    /// Exactly the binary's newest.
    Current { version: i64 },
    /// Newer than the binary, and still usable by it (log [`msg::NEWER_SCHEMA`]).
    Newer { db: i64, range: SchemaRange },
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database schema is version {db}, older than this zlhd needs ({range}): {}",
        msg::RUN_MIGRATE
    )]
    TooOld { db: i64, range: SchemaRange },
    #[error(
        "the database schema is version {db}, which zlhd of schema {min_reader} or newer can use; this zlhd understands {range}: {}",
        msg::UPGRADE_ZLHD
    )]
    TooNew {
        db: i64,
        min_reader: i64,
        range: SchemaRange,
    },
    #[error("migration {version} failed partway: {}", msg::FAILED_MIGRATION)]
    Failed { version: i64 },
    #[error("cannot apply migrations: {0}")]
    Migrate(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a binary understanding `range` runs on a database in `state`.
pub fn fit(range: SchemaRange, state: SchemaState) -> Result<SchemaFit, SchemaError> {
    if let Some(version) = state.failed {
        return Err(SchemaError::Failed { version });
    }
    if state.version < range.oldest {
        return Err(SchemaError::TooOld {
            db: state.version,
            range,
        });
    }
    if state.min_reader > range.newest {
        return Err(SchemaError::TooNew {
            db: state.version,
            min_reader: state.min_reader,
            range,
        });
    }
    Ok(if state.version > range.newest {
        SchemaFit::Newer {
            db: state.version,
            range,
        }
    } else {
        SchemaFit::Current {
            version: state.version,
        }
    })
}

fn range_of(m: &Migrator) -> SchemaRange {
    let newest = m.iter().map(|m| m.version).max().unwrap_or(0);
    SchemaRange {
        oldest: newest,
        newest,
    }
}

/// The embedded migrations plus `extra`, tolerating migrations the binary does not know (a
/// newer release's, applied by its `zlhd migrate`).
fn migrator(base: &Migrator, extra: &[Migration]) -> Migrator {
    let mut all: Vec<Migration> = base.iter().cloned().collect();
    all.extend(extra.iter().cloned());
    let mut m = Migrator::with_migrations(all);
    m.set_ignore_missing(true);
    m
}

fn base(store: &AnyStore) -> &'static Migrator {
    match store {
        AnyStore::Sqlite(_) => &SQLITE_MIGRATOR,
        AnyStore::Pg(_) => &PG_MIGRATOR,
    }
}

const SQLITE_TABLE_EXISTS: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1";
const PG_TABLE_EXISTS: &str = "SELECT COUNT(*) FROM pg_catalog.pg_tables \
     WHERE schemaname = current_schema() AND tablename = $1";
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";
const COMPAT_TABLE: &str = "schema_compat";
const NEWEST_APPLIED: &str = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
const OLDEST_FAILED: &str = "SELECT MIN(version) FROM _sqlx_migrations WHERE NOT success";
const MIN_READER: &str = "SELECT min_reader FROM schema_compat WHERE id = 1";

/// Read the schema state through `$pool` (the same SQL on both backends but for `$exists`).
macro_rules! read_state {
    ($pool:expr, $exists:expr) => {{
        let pool = $pool;
        let exists = async |table: &str| -> Result<bool, StoreError> {
            let n: i64 = sqlx::query_scalar($exists)
                .bind(table)
                .fetch_one(pool)
                .await?;
            Ok(n > 0)
        };
        if !exists(MIGRATIONS_TABLE).await? {
            SchemaState {
                version: 0,
                min_reader: 0,
                failed: None,
            }
        } else {
            let version: i64 = sqlx::query_scalar(NEWEST_APPLIED).fetch_one(pool).await?;
            let failed: Option<i64> = sqlx::query_scalar(OLDEST_FAILED).fetch_one(pool).await?;
            let min_reader: i64 = if exists(COMPAT_TABLE).await? {
                sqlx::query_scalar(MIN_READER)
                    .fetch_optional(pool)
                    .await?
                    .unwrap_or(0)
            } else {
                0
            };
            SchemaState {
                version,
                min_reader,
                failed,
            }
        }
    }};
}

/// Run `$m` on a connection of `$pool`, then drop statements prepared before the change
/// (sqlx issue #2517).
macro_rules! run_migrator {
    ($pool:expr, $m:expr) => {{
        use sqlx::Connection;
        let mut conn = $pool.acquire().await.map_err(StoreError::from)?;
        $m.run(&mut *conn)
            .await
            .map_err(|e| SchemaError::Migrate(e.to_string()))?;
        conn.clear_cached_statements()
            .await
            .map_err(StoreError::from)?;
    }};
}

impl AnyStore {
    /// The schema versions this binary understands on this backend.
    pub fn schema_range(&self) -> SchemaRange {
        range_of(base(self))
    }

    /// What the database holds.
    pub async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        Ok(match self {
            AnyStore::Sqlite(s) => read_state!(s.pool(), SQLITE_TABLE_EXISTS),
            AnyStore::Pg(s) => read_state!(s.pool(), PG_TABLE_EXISTS),
        })
    }

    /// Whether this binary runs on the database as it is (nothing is changed): every command
    /// but `zlhd migrate` and `zlhd dev` starts with this.
    pub async fn check_schema(&self) -> Result<SchemaFit, SchemaError> {
        fit(self.schema_range(), self.schema_state().await?)
    }

    /// Apply the embedded migrations (`zlhd migrate`). A schema newer than the binary but
    /// still usable is left as it is; one the binary does not understand is refused
    /// untouched. Concurrent runs are safe (sqlx locks the migrations on PostgreSQL; SQLite
    /// has one writer).
    pub async fn migrate(&self) -> Result<SchemaFit, SchemaError> {
        self.migrate_with(&[]).await
    }

    /// [`migrate`](Self::migrate) with `extra` after the embedded migrations: what a newer
    /// release's `zlhd migrate` applies (the version-skew tests).
    pub async fn migrate_with(&self, extra: &[Migration]) -> Result<SchemaFit, SchemaError> {
        let m = migrator(base(self), extra);
        let range = range_of(&m);
        match fit(range, self.schema_state().await?) {
            Ok(_) | Err(SchemaError::TooOld { .. }) => {}
            Err(e) => return Err(e),
        }
        match self {
            AnyStore::Sqlite(s) => run_migrator!(s.pool(), m),
            AnyStore::Pg(s) => run_migrator!(s.pool(), m),
        }
        fit(range, self.schema_state().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: SchemaRange = SchemaRange {
        oldest: 4,
        newest: 4,
    };

    fn state(version: i64, min_reader: i64) -> SchemaState {
        SchemaState {
            version,
            min_reader,
            failed: None,
        }
    }

    #[test]
    fn fit_accepts_the_range_and_additive_steps_beyond_it() {
        let cases: &[(&str, SchemaState, Result<SchemaFit, &str>)] = &[
            (
                "its own schema",
                state(4, 1),
                Ok(SchemaFit::Current { version: 4 }),
            ),
            (
                "a newer, additive schema runs with a warning",
                state(6, 1),
                Ok(SchemaFit::Newer { db: 6, range: R }),
            ),
            (
                "a contraction that still admits this binary",
                state(7, 4),
                Ok(SchemaFit::Newer { db: 7, range: R }),
            ),
            (
                "an empty database needs migrating",
                state(0, 0),
                Err("version 0, older than this zlhd needs (schema 4)"),
            ),
            (
                "an older schema needs migrating",
                state(3, 1),
                Err("version 3, older than this zlhd needs (schema 4)"),
            ),
            (
                "a contraction past this binary",
                state(9, 5),
                Err(
                    "version 9, which zlhd of schema 5 or newer can use; this zlhd understands schema 4",
                ),
            ),
        ];
        for (why, st, want) in cases {
            match (fit(R, *st), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{why}"),
                (Err(e), Err(w)) => {
                    let s = e.to_string();
                    assert!(s.contains(w), "{why}: {s}");
                }
                (got, want) => panic!("{why}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_failed_migration_is_refused_whatever_the_versions() {
        let st = SchemaState {
            failed: Some(5),
            ..state(4, 1)
        };
        let e = fit(R, st).unwrap_err().to_string();
        assert!(e.contains("migration 5 failed"), "{e}");
    }

    /// Why `sql` would break the previous release without raising `min_reader`: it drops or
    /// renames something, changes a column, or adds a NOT NULL column without a default (the
    /// previous release's inserts do not name it).
    fn breaks_previous_release(sql: &str) -> Option<String> {
        const CONTRACTS: &[&str] = &[
            "drop table",
            "drop column",
            "drop view",
            "rename",
            "alter column",
        ];
        let sql: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        if sql.contains("update schema_compat set min_reader") {
            return None;
        }
        // A new column default changes nothing the previous release names.
        let contracting = |s: &&str| !(s.contains("alter column") && s.contains("set default"));
        let statements: Vec<&str> = sql.split(';').filter(contracting).collect();
        if let Some(c) = CONTRACTS
            .iter()
            .find(|c| statements.iter().any(|s| s.contains(**c)))
        {
            return Some(format!("{c} without raising min_reader"));
        }
        sql.split(';')
            .find(|s| s.contains("add column") && s.contains("not null") && !s.contains("default"))
            .map(|s| format!("a NOT NULL column without a default: {}", s.trim()))
    }

    #[test]
    fn the_expand_then_contract_check_tells_additive_from_breaking() {
        let cases: &[(&str, &str, bool)] = &[
            ("a new table", "CREATE TABLE t (id INT);", false),
            (
                "a nullable column",
                "ALTER TABLE s ADD COLUMN c BIGINT;",
                false,
            ),
            (
                "a column with a default",
                "ALTER TABLE s ADD COLUMN c TEXT NOT NULL DEFAULT '';",
                false,
            ),
            ("an index", "CREATE INDEX i ON s (c);", false),
            (
                "a new column default",
                "ALTER TABLE s ALTER COLUMN c SET DEFAULT f();",
                false,
            ),
            (
                "a changed column type",
                "ALTER TABLE s ALTER COLUMN c TYPE TEXT;",
                true,
            ),
            (
                "a comment naming a drop",
                "-- never DROP TABLE here\nCREATE TABLE t (id INT);",
                false,
            ),
            ("a dropped column", "ALTER TABLE s DROP COLUMN c;", true),
            ("a rename", "ALTER TABLE s RENAME COLUMN a TO b;", true),
            (
                "a NOT NULL column",
                "ALTER TABLE s ADD COLUMN c TEXT NOT NULL;",
                true,
            ),
            (
                "a contraction that says so",
                "ALTER TABLE s DROP COLUMN c; UPDATE schema_compat SET min_reader = 7 WHERE id = 1;",
                false,
            ),
        ];
        for (why, sql, breaks) in cases {
            assert_eq!(breaks_previous_release(sql).is_some(), *breaks, "{why}");
        }
    }

    #[test]
    fn every_embedded_migration_only_expands_or_raises_min_reader() {
        for m in SQLITE_MIGRATOR.iter().chain(PG_MIGRATOR.iter()) {
            if m.version == 1 {
                continue;
            }
            if let Some(why) = breaks_previous_release(m.sql.as_str()) {
                panic!("migration {} ({}): {why}", m.version, m.description);
            }
        }
    }

    #[test]
    fn the_embedded_migrations_share_versions_across_backends() {
        let v = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(
            v(&SQLITE_MIGRATOR),
            v(&PG_MIGRATOR),
            "one schema version means the same step on both stores"
        );
    }
}
