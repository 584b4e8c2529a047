//! SQLite: the embedded, single-controller backend.
//!
//! One writer at a time: every write transaction starts with `BEGIN IMMEDIATE`, taking the
//! database write lock up front (no `SQLITE_BUSY` on a read→write upgrade), so reads inside
//! it are as good as `FOR UPDATE` and change-feed sequence numbers commit in order. Times
//! are stored as fixed-width RFC 3339 text (see [`ts`]) so that text order is time order.

use super::notify::{CAPACITY, Notice, Origin};
use super::sql::*;
use super::*;
use crate::{Clock, OperationKind};
use chrono::SecondsFormat;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Sqlite, Transaction};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    notices: broadcast::Sender<Notice>,
}

/// The one stored time format: `2026-11-27T20:11:48.123456Z`. sqlx's own encoding drops
/// trailing zero digits, which would make text order differ from time order.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl SqliteStore {
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
        SqliteStore {
            pool: options::sqlite_pool_options(opts).connect_lazy_with(conn),
            clock: self.clock.clone(),
            notices: self.notices.clone(),
        }
    }

    /// Wrap an existing pool (e.g. from `#[sqlx::test]`); it should have the options
    /// [`connect`](Self::connect) sets.
    pub fn from_pool(pool: SqlitePool, clock: Arc<dyn Clock>) -> Self {
        let (notices, _) = broadcast::channel(CAPACITY);
        SqliteStore {
            pool,
            clock,
            notices,
        }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Notices of server writes made through this store (see [`notify`](super::notify)).
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub fn backend(&self) -> &'static str {
        "sqlite"
    }

    /// The database file, for the single-controller lock; `None` in memory.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let opts = self.pool.connect_options();
        let path = opts.get_filename();
        let s = path.to_string_lossy();
        (s != ":memory:" && !s.starts_with("file:sqlx-in-memory")).then(|| path.to_path_buf())
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn notify(&self, server_id: ServerId, origin: Origin) {
        // No receiver is fine: notices are hints.
        let _ = self.notices.send(Notice { server_id, origin });
    }

    /// Read, check, change and write one server row (the common shape of most writes).
    /// `change` may return an operation to record with the write.
    async fn modify(
        &self,
        id: ServerId,
        expected_rv: Option<i64>,
        fence: Option<Fence>,
        origin: Origin,
        change: impl FnOnce(&mut Server, DateTime<Utc>) -> Option<Operation>,
    ) -> Result<(Server, Option<Operation>)> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let mut server = load(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        check_fence(lease(&mut tx, id).await?.as_ref(), fence)?;
        if expected_rv.is_some_and(|rv| rv != server.resource_version) {
            return Err(StoreError::Stale);
        }
        let op = change(&mut server, now);
        if let Some(op) = &op {
            insert_operation(&mut tx, op).await?;
        }
        stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, origin);
        Ok((server, op))
    }

    /// `update_spec`, with `enforce_quota` checking standing and quota inside the write
    /// transaction (`BEGIN IMMEDIATE`: no other write can interleave).
    async fn replace_spec(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
        enforce_quota: bool,
    ) -> Result<(Server, Operation)> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let mut server = load(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        if expected_rv.is_some_and(|rv| rv != server.resource_version) {
            return Err(StoreError::Stale);
        }
        if enforce_quota {
            let customer = customer(&mut tx, &server.customer_id, now).await?;
            let live = live_servers(&mut tx, &server.customer_id).await?;
            check_update_quota(&customer, &live, &server, &spec)?;
        }
        server.spec = spec;
        server.generation += 1;
        let op = new_operation(id, server.generation, OperationKind::Update, now);
        insert_operation(&mut tx, &op).await?;
        stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok((server, op))
    }
}

/// Expired idempotency keys, a batch at a time (see `IDEMPOTENCY_PURGE_BATCH`).
const PURGE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE rowid IN \
     (SELECT rowid FROM idempotency_keys WHERE created_at < $1 LIMIT $2)";

async fn load(conn: &mut SqliteConnection, id: ServerId) -> Result<Option<Server>> {
    sqlx::query_as::<_, ServerRow>(SELECT_SERVER)
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .map(Server::try_from)
        .transpose()
}

async fn lease(conn: &mut SqliteConnection, id: ServerId) -> Result<Option<LeaseRow>> {
    Ok(sqlx::query_as::<_, LeaseRow>(SELECT_LEASE)
        .bind(id.0)
        .fetch_optional(conn)
        .await?)
}

/// Append to the change feed; the new seq becomes the row's resource_version.
async fn stamp(
    conn: &mut SqliteConnection,
    s: &mut Server,
    kind: ChangeKind,
    now: DateTime<Utc>,
) -> Result<()> {
    let seq: i64 = sqlx::query_scalar(INSERT_CHANGE)
        .bind(s.id.0)
        .bind(change_kind_str(kind))
        .bind(ts(now))
        .fetch_one(conn)
        .await?;
    s.resource_version = seq;
    s.updated_at = now;
    Ok(())
}

shared::shared_conn_helpers!(SqliteConnection);

impl Store for SqliteStore {
    async fn create_server(&self, new: NewServer) -> Result<Created> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let id = ServerId::new();
        let op = new_operation(id, 1, OperationKind::Create, now);
        let mut live = None;
        if let Some(idem) = &new.idempotency {
            let cutoff = idempotency_cutoff(now, idem.retention);
            sqlx::query(PURGE_IDEMPOTENCY_KEYS)
                .bind(ts(cutoff))
                .bind(IDEMPOTENCY_PURGE_BATCH)
                .execute(&mut *tx)
                .await?;
            let claim = async |tx: &mut SqliteConnection| -> Result<Option<Uuid>> {
                Ok(sqlx::query_scalar(CLAIM_IDEMPOTENCY_KEY)
                    .bind(&new.customer_id)
                    .bind(&idem.key)
                    .bind(&idem.request_hash)
                    .bind(id.0)
                    .bind(op.id.0)
                    .bind(ts(now))
                    .fetch_optional(tx)
                    .await?)
            };
            if claim(&mut tx).await?.is_none() {
                let row = sqlx::query_as::<_, IdempotencyRow>(SELECT_IDEMPOTENCY_KEY)
                    .bind(&new.customer_id)
                    .bind(&idem.key)
                    .fetch_one(&mut *tx)
                    .await?;
                if row.created_at < cutoff {
                    // Expired (the purge batch had not reached it): forget it, claim anew.
                    sqlx::query(DELETE_IDEMPOTENCY_KEY)
                        .bind(&new.customer_id)
                        .bind(&idem.key)
                        .execute(&mut *tx)
                        .await?;
                    if claim(&mut tx).await?.is_none() {
                        return Err(StoreError::Database(err::MISSING_AFTER_WRITE.into()));
                    }
                } else {
                    if row.request_hash != idem.request_hash {
                        return Err(StoreError::IdempotencyConflict);
                    }
                    let server = match load(&mut tx, ServerId(row.server_id)).await? {
                        Some(s) => Some(s),
                        None => archived(&mut tx, row.server_id).await?.map(|a| a.server),
                    };
                    let operation = operation(&mut tx, SELECT_OPERATION, row.operation_id).await?;
                    let (server, operation) = server.zip(operation).ok_or(StoreError::NotFound)?;
                    return Ok(Created {
                        server,
                        operation,
                        created: false,
                    });
                }
            }
        } else {
            let servers = live_servers(&mut tx, &new.customer_id).await?;
            if let Some(busy) = guard_match(&servers, &new.spec) {
                let operation = operation(&mut tx, LATEST_SPEC_OPERATION, busy.id.0)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                if busy.spec != new.spec {
                    return Err(StoreError::InProgress {
                        operation: operation.id,
                    });
                }
                return Ok(Created {
                    server: busy.clone(),
                    operation,
                    created: false,
                });
            }
            live = Some(servers);
        }
        if new.enforce_quota {
            let customer = customer(&mut tx, &new.customer_id, now).await?;
            let live = match live {
                Some(l) => l,
                None => live_servers(&mut tx, &new.customer_id).await?,
            };
            check_quota(&customer, &live, &new.spec)?;
        }
        let mut server = new_server(id, &new.customer_id, new.spec, now);
        stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        save(&mut tx, INSERT_SERVER, &server).await?;
        insert_operation(&mut tx, &op).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok(Created {
            server,
            operation: op,
            created: true,
        })
    }

    async fn request_deletion(&self, id: ServerId) -> Result<(Server, Operation)> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let mut server = load(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        if server.is_deleting() {
            let existing = sqlx::query_as::<_, OperationRow>(LATEST_OPERATION_OF_KIND)
                .bind(id.0)
                .bind(OperationKind::Delete.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(op) = existing {
                return Ok((server, op.try_into()?));
            }
        }
        server.deletion_requested_at.get_or_insert(now);
        let op = new_operation(id, server.generation, OperationKind::Delete, now);
        insert_operation(&mut tx, &op).await?;
        stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok((server, op))
    }

    async fn archive_and_delete(&self, id: ServerId, fence: Option<Fence>) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let Some(mut server) = load(&mut tx, id).await? else {
            return Ok(());
        };
        check_fence(lease(&mut tx, id).await?.as_ref(), fence)?;
        stamp(&mut tx, &mut server, ChangeKind::Delete, now).await?;
        sqlx::query(INSERT_ARCHIVE)
            .bind(id.0)
            .bind(&server.customer_id)
            .bind(Json(&server))
            .bind(ts(now))
            .execute(&mut *tx)
            .await?;
        // Idempotency keys stay: a late retry of this create must still replay it.
        for sql in [
            DELETE_RESERVATION,
            DELETE_LEASE,
            DELETE_STATS,
            DELETE_SERVER,
        ] {
            sqlx::query(sql).bind(id.0).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.notify(id, Origin::Controller);
        Ok(())
    }

    async fn get_archived(&self, id: ServerId) -> Result<Option<Archived>> {
        archived(&mut *self.pool.acquire().await?, id.0).await
    }

    async fn get_operation(&self, id: OperationId) -> Result<Option<Operation>> {
        operation(&mut *self.pool.acquire().await?, SELECT_OPERATION, id.0).await
    }

    async fn reserve_vmid(
        &self,
        id: ServerId,
        range: VmidRange,
        taken: &[u32],
        replace: bool,
    ) -> Result<u32> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let mut server = load(&mut tx, id).await?.ok_or(StoreError::NotFound)?;
        let existing: Option<i64> = sqlx::query_scalar(SELECT_RESERVATION)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        let mut skip: BTreeSet<u32> = taken.iter().copied().collect();
        if let Some(old) = existing.map(|v| v as u32) {
            if !replace && server.reserved_vmid == Some(old) {
                return Ok(old);
            }
            if replace {
                sqlx::query(DELETE_RESERVATION)
                    .bind(id.0)
                    .execute(&mut *tx)
                    .await?;
                skip.insert(old);
            }
        }
        let vmid = match existing {
            Some(old) if !replace => old as u32,
            _ => loop {
                let reserved: Vec<i64> = sqlx::query_scalar(RESERVED_IN_RANGE)
                    .bind(i64::from(range.min))
                    .bind(i64::from(range.max))
                    .fetch_all(&mut *tx)
                    .await?;
                let v = pick_vmid(range, &skip, &reserved)
                    .ok_or_else(|| range_exhausted(server.spec.kind, range))?;
                let won: Option<i64> = sqlx::query_scalar(INSERT_RESERVATION)
                    .bind(i64::from(v))
                    .bind(id.0)
                    .bind(ts(now))
                    .fetch_optional(&mut *tx)
                    .await?;
                if won.is_some() {
                    break v;
                }
                skip.insert(v);
            },
        };
        server.reserved_vmid = Some(vmid);
        stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::Controller);
        Ok(vmid)
    }

    async fn release_vmid(&self, id: ServerId) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        sqlx::query(DELETE_RESERVATION)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        let server = load(&mut tx, id).await?;
        if let Some(mut server) = server.filter(|s| s.reserved_vmid.is_some()) {
            server.reserved_vmid = None;
            stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
            save(&mut tx, UPDATE_SERVER, &server).await?;
            tx.commit().await?;
            self.notify(id, Origin::Controller);
        } else {
            tx.commit().await?;
        }
        Ok(())
    }

    async fn list_reservations(&self) -> Result<Vec<(u32, ServerId)>> {
        reservations(
            sqlx::query_as(LIST_RESERVATIONS)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn append_event(
        &self,
        id: ServerId,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        sqlx::query(UPSERT_EVENT)
            .bind(id.0)
            .bind(type_.as_str())
            .bind(truncate(reason, EVENT_REASON_MAX))
            .bind(truncate(message, EVENT_MESSAGE_MAX))
            .bind(ts(self.clock.now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_events(&self, id: ServerId, limit: u32) -> Result<Vec<Event>> {
        sqlx::query_as::<_, EventRow>(LIST_EVENTS)
            .bind(id.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(Event::try_from)
            .collect()
    }

    async fn claim_lease(
        &self,
        id: ServerId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let now = self.clock.now();
        let expires_at = expiry(now, ttl);
        let mut tx = self.write_tx().await?;
        if load(&mut tx, id).await?.is_none() {
            return Err(StoreError::NotFound);
        }
        let token = match lease(&mut tx, id).await? {
            None => {
                sqlx::query_scalar(INSERT_LEASE)
                    .bind(id.0)
                    .bind(holder)
                    .bind(ts(expires_at))
                    .fetch_one(&mut *tx)
                    .await?
            }
            Some(row) => match claim_decision(&row, holder, now) {
                ClaimDecision::Refuse => return Ok(None),
                ClaimDecision::Renew(token) | ClaimDecision::TakeOver(token) => {
                    sqlx::query(UPDATE_LEASE)
                        .bind(id.0)
                        .bind(holder)
                        .bind(token)
                        .bind(ts(expires_at))
                        .execute(&mut *tx)
                        .await?;
                    token
                }
            },
        };
        tx.commit().await?;
        Ok(Some(lease_of(id, holder, token, expires_at)))
    }

    shared::shared_store_methods!();
}
