//! PostgreSQL: the backend for several controller replicas.
//!
//! Server writes lock their row (`SELECT ... FOR UPDATE`) and share-lock the lease row they
//! check the fence against, so a lease claim cannot slip between the check and the write.
//! Change-feed sequence numbers are allocated under a transaction-level advisory lock, held
//! to commit, so they become visible in order. Creates serialise per customer (another
//! advisory lock) for the launch guard and quota. Every server write `NOTIFY`s
//! [`PG_CHANNEL`]; a `LISTEN` task feeds the notices of other processes into
//! [`subscribe`](PgStore::subscribe).

use super::notify::{CAPACITY, Notice, Origin, PG_CHANNEL};
use super::sql::*;
use super::*;
use crate::{Clock, OperationKind};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

/// Pause between `LISTEN` reconnection attempts.
const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// How long a constructor waits for `LISTEN` to be in place before returning anyway.
const LISTEN_READY_WAIT: Duration = Duration::from_secs(5);

/// Advisory lock (single bigint key space) serialising change-feed seq allocation.
const SEQ_LOCK: i64 = 0x7a6c_6873_6571; // "zlhseq"
/// Advisory lock namespace (two-int key space, disjoint from the bigint one) for customers.
const CUSTOMER_LOCK_NS: i32 = 0x7a6c_6863; // "zlhc"

const LOCK_SEQ: &str = "SELECT pg_advisory_xact_lock($1)";
const LOCK_CUSTOMER: &str = "SELECT pg_advisory_xact_lock($1, hashtext($2))";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";
const SELECT_LEASE_FOR_SHARE: &str = "SELECT holder, token, expires_at, released \
     FROM leases WHERE server_id = $1 FOR SHARE";

/// Leave a transaction early, rolling back *now*. A dropped transaction rolls back only when
/// its connection is next touched by the pool, a moment later: until then its row locks make
/// a concurrent `FOR UPDATE SKIP LOCKED` claim see a free lease as taken.
async fn rollback<T>(tx: Transaction<'static, Postgres>, r: Result<T>) -> Result<T> {
    let _ = tx.rollback().await;
    r
}

/// Load and lock `id`, or leave the transaction with `NotFound`.
macro_rules! lock_or_leave {
    ($tx:ident, $id:expr) => {
        match lock(&mut $tx, $id).await? {
            Some(s) => s,
            None => return rollback($tx, Err(StoreError::NotFound)).await,
        }
    };
}

/// Check the fence on `id`'s lease, or leave the transaction with `Fenced`.
macro_rules! fence_or_leave {
    ($tx:ident, $id:expr, $fence:expr) => {
        if let Err(e) = check_fence(lease_for_share(&mut $tx, $id).await?.as_ref(), $fence) {
            return rollback($tx, Err(e)).await;
        }
    };
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    notices: broadcast::Sender<Notice>,
    /// Dropped with the last clone of the store, which stops the `LISTEN` task.
    _listener: Arc<oneshot::Sender<()>>,
}

/// Times bind as TIMESTAMPTZ directly (the SQLite store formats them itself).
fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t
}

impl PgStore {
    /// Connect to a `postgres://` URL. Does not migrate. Errors never contain the URL's
    /// password.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, &StoreOptions::default()).await
    }

    /// [`connect`](Self::connect) with the pool size and timeouts of `opts`.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        opts: &StoreOptions,
    ) -> Result<Self> {
        let conn: PgConnectOptions = url.parse().map_err(|e| connect_error(e, url))?;
        let pool = options::pool_options(opts)
            .connect_with(conn)
            .await
            .map_err(|e| connect_error(e, url))?;
        Ok(Self::from_pool(pool, clock).await)
    }

    /// The same database and notices through a pool of its own (see
    /// [`AnyStore::with_own_pool`]); the `LISTEN` stays on this store's pool.
    pub fn with_own_pool(&self, opts: &StoreOptions) -> Self {
        let conn = (*self.pool.connect_options()).clone();
        PgStore {
            pool: options::pool_options(opts).connect_lazy_with(conn),
            clock: self.clock.clone(),
            notices: self.notices.clone(),
            _listener: self._listener.clone(),
        }
    }

    /// Wrap an existing pool (e.g. from `#[sqlx::test]`). Starts the `LISTEN` task, which
    /// keeps one connection of the pool, and waits (briefly) until it listens.
    pub async fn from_pool(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        let (notices, _) = broadcast::channel(CAPACITY);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(listen(pool.clone(), notices.clone(), stop_rx, ready_tx));
        if tokio::time::timeout(LISTEN_READY_WAIT, ready_rx)
            .await
            .is_err()
        {
            tracing::warn!(
                channel = PG_CHANNEL,
                "LISTEN not ready yet; continuing, it keeps retrying"
            );
        }
        PgStore {
            pool,
            clock,
            notices,
            _listener: Arc::new(stop_tx),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Notices of server writes by any process on this database (see
    /// [`notify`](super::notify)); writes through this store may arrive twice.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub fn backend(&self) -> &'static str {
        "postgres"
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        None
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
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
        let mut server = lock_or_leave!(tx, id);
        fence_or_leave!(tx, id, fence);
        if expected_rv.is_some_and(|rv| rv != server.resource_version) {
            return rollback(tx, Err(StoreError::Stale)).await;
        }
        let op = change(&mut server, now);
        if let Some(op) = &op {
            insert_operation(&mut tx, op).await?;
        }
        stamp(&mut tx, &mut server, ChangeKind::Upsert, origin, now).await?;
        save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, origin);
        Ok((server, op))
    }

    /// `update_spec`, with `enforce_quota` checking standing and quota inside the write
    /// transaction under the customer's lock, which creates take too: two updates (or an
    /// update and a create) of one customer cannot both pass on the same sums.
    async fn replace_spec(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
        enforce_quota: bool,
    ) -> Result<(Server, Operation)> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let mut server = lock_or_leave!(tx, id);
        if expected_rv.is_some_and(|rv| rv != server.resource_version) {
            return rollback(tx, Err(StoreError::Stale)).await;
        }
        if enforce_quota {
            // After the row lock: no transaction takes a row lock while holding this one.
            lock_customer(&mut tx, &server.customer_id).await?;
            let customer = customer(&mut tx, &server.customer_id, now).await?;
            let live = live_servers(&mut tx, &server.customer_id).await?;
            if let Err(e) = check_update_quota(&customer, &live, &server, &spec) {
                return rollback(tx, Err(e)).await;
            }
        }
        server.spec = spec;
        server.generation += 1;
        let op = new_operation(id, server.generation, OperationKind::Update, now);
        insert_operation(&mut tx, &op).await?;
        stamp(&mut tx, &mut server, ChangeKind::Upsert, Origin::User, now).await?;
        save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok((server, op))
    }
}

/// Serialise a customer's creates and quota-checked updates until the transaction ends.
async fn lock_customer(conn: &mut PgConnection, customer_id: &str) -> Result<()> {
    sqlx::query(LOCK_CUSTOMER)
        .bind(CUSTOMER_LOCK_NS)
        .bind(customer_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Expired idempotency keys, a batch at a time (see `IDEMPOTENCY_PURGE_BATCH`), skipping rows
/// another purge holds: housekeeping never waits or deadlocks.
const PURGE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE ctid IN \
     (SELECT ctid FROM idempotency_keys WHERE created_at < $1 LIMIT $2 \
      FOR UPDATE SKIP LOCKED)";

async fn load(conn: &mut PgConnection, id: ServerId) -> Result<Option<Server>> {
    select_server(conn, SELECT_SERVER, id).await
}

/// Load and lock the row until the transaction ends.
async fn lock(conn: &mut PgConnection, id: ServerId) -> Result<Option<Server>> {
    select_server(conn, SELECT_SERVER_FOR_UPDATE, id).await
}

async fn select_server(
    conn: &mut PgConnection,
    sql: &'static str,
    id: ServerId,
) -> Result<Option<Server>> {
    sqlx::query_as::<_, ServerRow>(sql)
        .bind(id.0)
        .fetch_optional(conn)
        .await?
        .map(Server::try_from)
        .transpose()
}

/// The lease row, share-locked: a claimer (`FOR UPDATE SKIP LOCKED`) backs off until we
/// commit, and we wait for a claimer that got there first, then see its new token.
async fn lease_for_share(conn: &mut PgConnection, id: ServerId) -> Result<Option<LeaseRow>> {
    Ok(sqlx::query_as::<_, LeaseRow>(SELECT_LEASE_FOR_SHARE)
        .bind(id.0)
        .fetch_optional(conn)
        .await?)
}

/// Append to the change feed; the new seq becomes the row's resource_version. Takes the seq
/// lock (held to commit, so call it after the row locks, last thing before saving) and
/// queues the `NOTIFY` (sent on commit).
async fn stamp(
    conn: &mut PgConnection,
    s: &mut Server,
    kind: ChangeKind,
    origin: Origin,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(LOCK_SEQ)
        .bind(SEQ_LOCK)
        .execute(&mut *conn)
        .await?;
    let notice = Notice {
        server_id: s.id,
        origin,
    };
    sqlx::query(NOTIFY)
        .bind(PG_CHANNEL)
        .bind(notice.to_payload())
        .execute(&mut *conn)
        .await?;
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

shared::shared_conn_helpers!(PgConnection);

impl Store for PgStore {
    async fn create_server(&self, new: NewServer) -> Result<Created> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        // One create per customer at a time: the launch guard and quota read, then insert.
        lock_customer(&mut tx, &new.customer_id).await?;
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
            let claim = async |tx: &mut PgConnection| -> Result<Option<Uuid>> {
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
                    // The customer lock keeps other creates of this key out meanwhile.
                    sqlx::query(DELETE_IDEMPOTENCY_KEY)
                        .bind(&new.customer_id)
                        .bind(&idem.key)
                        .execute(&mut *tx)
                        .await?;
                    if claim(&mut tx).await?.is_none() {
                        let e = StoreError::Database(err::MISSING_AFTER_WRITE.into());
                        return rollback(tx, Err(e)).await;
                    }
                } else {
                    if row.request_hash != idem.request_hash {
                        return rollback(tx, Err(StoreError::IdempotencyConflict)).await;
                    }
                    let server = match load(&mut tx, ServerId(row.server_id)).await? {
                        Some(s) => Some(s),
                        None => archived(&mut tx, row.server_id).await?.map(|a| a.server),
                    };
                    let operation = operation(&mut tx, SELECT_OPERATION, row.operation_id).await?;
                    let replay = server.zip(operation).ok_or(StoreError::NotFound);
                    return rollback(
                        tx,
                        replay.map(|(server, operation)| Created {
                            server,
                            operation,
                            created: false,
                        }),
                    )
                    .await;
                }
            }
        } else {
            let servers = live_servers(&mut tx, &new.customer_id).await?;
            if let Some(busy) = guard_match(&servers, &new.spec) {
                let operation = operation(&mut tx, LATEST_SPEC_OPERATION, busy.id.0)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let answer = if busy.spec != new.spec {
                    Err(StoreError::InProgress {
                        operation: operation.id,
                    })
                } else {
                    Ok(Created {
                        server: busy.clone(),
                        operation,
                        created: false,
                    })
                };
                return rollback(tx, answer).await;
            }
            live = Some(servers);
        }
        if new.enforce_quota {
            let customer = customer(&mut tx, &new.customer_id, now).await?;
            let live = match live {
                Some(l) => l,
                None => live_servers(&mut tx, &new.customer_id).await?,
            };
            if let Err(e) = check_quota(&customer, &live, &new.spec) {
                return rollback(tx, Err(e)).await;
            }
        }
        let mut server = new_server(id, &new.customer_id, new.spec, now);
        stamp(&mut tx, &mut server, ChangeKind::Upsert, Origin::User, now).await?;
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
        let mut server = lock_or_leave!(tx, id);
        if server.is_deleting() {
            let existing = sqlx::query_as::<_, OperationRow>(LATEST_OPERATION_OF_KIND)
                .bind(id.0)
                .bind(OperationKind::Delete.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(op) = existing {
                return rollback(tx, op.try_into().map(|op| (server, op))).await;
            }
        }
        server.deletion_requested_at.get_or_insert(now);
        let op = new_operation(id, server.generation, OperationKind::Delete, now);
        insert_operation(&mut tx, &op).await?;
        stamp(&mut tx, &mut server, ChangeKind::Upsert, Origin::User, now).await?;
        save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok((server, op))
    }

    async fn archive_and_delete(&self, id: ServerId, fence: Option<Fence>) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let Some(mut server) = lock(&mut tx, id).await? else {
            return rollback(tx, Ok(())).await;
        };
        fence_or_leave!(tx, id, fence);
        stamp(
            &mut tx,
            &mut server,
            ChangeKind::Delete,
            Origin::Controller,
            now,
        )
        .await?;
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
        let mut server = lock_or_leave!(tx, id);
        let existing: Option<i64> = sqlx::query_scalar(SELECT_RESERVATION)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        let mut skip: BTreeSet<u32> = taken.iter().copied().collect();
        if let Some(old) = existing.map(|v| v as u32) {
            if !replace && server.reserved_vmid == Some(old) {
                return rollback(tx, Ok(old)).await;
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
                let Some(v) = pick_vmid(range, &skip, &reserved) else {
                    return rollback(tx, Err(range_exhausted(server.spec.kind, range))).await;
                };
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
        stamp(
            &mut tx,
            &mut server,
            ChangeKind::Upsert,
            Origin::Controller,
            now,
        )
        .await?;
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
        let server = lock(&mut tx, id).await?;
        if let Some(mut server) = server.filter(|s| s.reserved_vmid.is_some()) {
            server.reserved_vmid = None;
            stamp(
                &mut tx,
                &mut server,
                ChangeKind::Upsert,
                Origin::Controller,
                now,
            )
            .await?;
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
            return rollback(tx, Err(StoreError::NotFound)).await;
        }
        let row = sqlx::query_as::<_, LeaseRow>(SELECT_LEASE_SKIP_LOCKED)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        let token = match row {
            // No row, or one locked by a concurrent claimer/writer: try to create it; a
            // conflict means someone else has it.
            None => {
                let token: Option<i64> = sqlx::query_scalar(INSERT_LEASE)
                    .bind(id.0)
                    .bind(holder)
                    .bind(ts(expires_at))
                    .fetch_optional(&mut *tx)
                    .await?;
                match token {
                    Some(t) => t,
                    None => return rollback(tx, Ok(None)).await,
                }
            }
            Some(row) => match claim_decision(&row, holder, now) {
                ClaimDecision::Refuse => return rollback(tx, Ok(None)).await,
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

/// Feed `NOTIFY`s from other processes into the broadcast, reconnecting after errors, until
/// the store is dropped (`stop`) or its pool is closed.
async fn listen(
    pool: PgPool,
    notices: broadcast::Sender<Notice>,
    mut stop: oneshot::Receiver<()>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            e = listen_once(&pool, &notices, &mut ready) => {
                if pool.is_closed() {
                    return;
                }
                tracing::warn!(channel = PG_CHANNEL, error = %e, "LISTEN failed; reconnecting");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

/// Listen until an error (which it returns). `PgListener` itself reconnects after a lost
/// connection and re-listens; anything else comes back here.
async fn listen_once(
    pool: &PgPool,
    notices: &broadcast::Sender<Notice>,
    ready: &mut Option<oneshot::Sender<()>>,
) -> sqlx::Error {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    if let Err(e) = listener.listen(PG_CHANNEL).await {
        return e;
    }
    if let Some(r) = ready.take() {
        let _ = r.send(());
    }
    loop {
        match listener.recv().await {
            Ok(n) => match Notice::from_payload(n.payload()) {
                Some(notice) => {
                    let _ = notices.send(notice);
                }
                None => tracing::warn!(payload = n.payload(), "ignoring malformed notification"),
            },
            Err(e) => return e,
        }
    }
}
