//! The store, written once for both databases: every `Store` method and every helper is
//! generic over the [`Backend`], which supplies only what differs (locking clauses, time
//! binding, notification). The bounds below say what sqlx must provide for the queries here;
//! `Sqlite` and `Postgres` do.

use super::backend::Backend;
use super::feed::{HELD_BACK_TRIES, QUICK_TRIES, held_back_wait};
use super::notify::{CAPACITY, Notice, Origin, Remote};
use super::rows::*;
use super::rules::*;
use super::sql::*;
use super::*;
use crate::{AgentDetail, Clock, OperationKind, Players, ResourceUsage};
use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Who a VMID taken from the free list is for: a server's reservation, or a new pool member
/// (its id and what it is cloned from).
#[derive(Clone, Copy)]
enum VmidHolder<'a> {
    Server(ServerId),
    Pool(Uuid, &'a crate::NewPoolMember),
}

/// A store on database `DB`: [`SqliteStore`] or [`PgStore`].
pub struct SqlStore<DB: Backend> {
    pub(crate) pool: Pool<DB>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) notices: broadcast::Sender<Notice>,
    /// Postgres: the `LISTEN` and `NOTIFY` tasks, stopped with the last clone of the store.
    pub(crate) remote: Option<Arc<Remote>>,
}

impl<DB: Backend> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            notices: self.notices.clone(),
            remote: self.remote.clone(),
        }
    }
}

impl<DB: Backend> SqlStore<DB> {
    pub(crate) fn with_parts(
        pool: Pool<DB>,
        clock: Arc<dyn Clock>,
        notices: Option<broadcast::Sender<Notice>>,
        remote: Option<Arc<Remote>>,
    ) -> Self {
        SqlStore {
            pool,
            clock,
            notices: notices.unwrap_or_else(|| broadcast::channel(CAPACITY).0),
            remote,
        }
    }

    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    /// Notices of server writes (see [`notify`](super::notify)): on SQLite those made through
    /// this store; on Postgres those of any process on the database (writes through this
    /// store may arrive twice).
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        DB::BACKEND
    }

    /// After a commit: wake this process's receivers, and on Postgres the other processes'
    /// (through the `NOTIFY` task, never inside the write: see [`Remote`]).
    fn notify(&self, server_id: ServerId, origin: Origin) {
        let notice = Notice { server_id, origin };
        // No receiver is fine: notices are hints.
        let _ = self.notices.send(notice);
        if let Some(remote) = &self.remote {
            remote.publish(notice);
        }
    }
}

/// Leave a transaction early, rolling back *now*. A dropped transaction rolls back only when
/// its connection is next touched by the pool, a moment later: until then its row locks make
/// a concurrent `FOR UPDATE SKIP LOCKED` claim see a free lease as taken.
async fn leave<DB: Database, T>(tx: Transaction<'static, DB>, r: Result<T>) -> Result<T> {
    let _ = tx.rollback().await;
    r
}

// The row types in the bounds are the store's own (crate-private): the bounds only say that
// sqlx decodes them on `DB`, which it does for both backends.
#[allow(private_bounds)]
impl<DB> SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<DB::Time>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q ServerSpec>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q ServerStatus>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Server>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q ResourceUsage>>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q Players>>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q AgentDetail>>: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (i64, Uuid): FromRow<'r, DB::Row>,
    for<'r> (i64, bool): FromRow<'r, DB::Row>,
    for<'r> ServerRow: FromRow<'r, DB::Row>,
    for<'r> ArchiveRow: FromRow<'r, DB::Row>,
    for<'r> OperationRow: FromRow<'r, DB::Row>,
    for<'r> IdempotencyRow: FromRow<'r, DB::Row>,
    for<'r> ChangeRow: FromRow<'r, DB::Row>,
    for<'r> EventRow: FromRow<'r, DB::Row>,
    for<'r> LeaseRow: FromRow<'r, DB::Row>,
    for<'r> CustomerRow: FromRow<'r, DB::Row>,
    for<'r> TokenRow: FromRow<'r, DB::Row>,
    for<'r> ReplicaRow: FromRow<'r, DB::Row>,
    for<'r> OrphanRow: FromRow<'r, DB::Row>,
    for<'r> PoolMemberRow: FromRow<'r, DB::Row>,
    for<'r> StatsRow: FromRow<'r, DB::Row>,
    for<'r> AuditRow: FromRow<'r, DB::Row>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
{
    async fn write_tx(&self) -> Result<Transaction<'static, DB>> {
        Ok(self.pool.begin_with(DB::BEGIN_WRITE).await?)
    }

    async fn select_server(
        c: &mut DB::Connection,
        sql: &'static str,
        id: ServerId,
    ) -> Result<Option<Server>> {
        sqlx::query_as::<DB, ServerRow>(sql)
            .bind(id.0)
            .fetch_optional(c)
            .await?
            .map(Server::try_from)
            .transpose()
    }

    /// The server row, read.
    async fn load(c: &mut DB::Connection, id: ServerId) -> Result<Option<Server>> {
        Self::select_server(c, SELECT_SERVER, id).await
    }

    /// The server row, read for writing (locked to commit where the database needs it).
    async fn lock(c: &mut DB::Connection, id: ServerId) -> Result<Option<Server>> {
        Self::select_server(c, DB::LOCK_SERVER, id).await
    }

    async fn lease_for_fence(c: &mut DB::Connection, id: ServerId) -> Result<Option<LeaseRow>> {
        Ok(sqlx::query_as::<DB, LeaseRow>(DB::LEASE_FOR_FENCE)
            .bind(id.0)
            .fetch_optional(c)
            .await?)
    }

    /// Serialise a customer's creates and quota-checked updates until the transaction ends.
    async fn lock_customer(c: &mut DB::Connection, customer_id: &str) -> Result<()> {
        if let Some(sql) = DB::LOCK_CUSTOMER {
            sqlx::query::<DB>(sql).bind(customer_id).execute(c).await?;
        }
        Ok(())
    }

    /// Append to the change feed; the new position becomes the row's resource_version. One
    /// per transaction (see [`super::feed`]).
    async fn stamp(
        c: &mut DB::Connection,
        s: &mut Server,
        kind: ChangeKind,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let seq: i64 = sqlx::query_scalar::<DB, i64>(INSERT_CHANGE)
            .bind(s.id.0)
            .bind(change_kind_str(kind))
            .bind(DB::ts(now))
            .fetch_one(c)
            .await?;
        s.resource_version = seq;
        s.updated_at = now;
        Ok(())
    }

    async fn operation(
        c: &mut DB::Connection,
        sql: &'static str,
        id: Uuid,
    ) -> Result<Option<Operation>> {
        sqlx::query_as::<DB, OperationRow>(sql)
            .bind(id)
            .fetch_optional(c)
            .await?
            .map(Operation::try_from)
            .transpose()
    }

    async fn insert_operation(c: &mut DB::Connection, op: &Operation) -> Result<()> {
        sqlx::query::<DB>(INSERT_OPERATION)
            .bind(op.id.0)
            .bind(op.server_id.0)
            .bind(op.generation)
            .bind(op.kind.as_str())
            .bind(DB::ts(op.created_at))
            .execute(c)
            .await?;
        Ok(())
    }

    /// Append an event, folded into its repeats.
    async fn insert_event(
        c: &mut DB::Connection,
        id: ServerId,
        type_: EventType,
        reason: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query::<DB>(UPSERT_EVENT)
            .bind(id.0)
            .bind(type_.as_str())
            .bind(truncate(reason, EVENT_REASON_MAX))
            .bind(truncate(message, EVENT_MESSAGE_MAX))
            .bind(DB::ts(now))
            .execute(c)
            .await?;
        Ok(())
    }

    /// `INSERT_SERVER` or `UPDATE_SERVER` (same parameters).
    async fn save(c: &mut DB::Connection, sql: &'static str, s: &Server) -> Result<()> {
        let d = Denorm::of(s);
        sqlx::query::<DB>(sql)
            .bind(s.id.0)
            .bind(s.customer_id.as_str())
            .bind(d.kind)
            .bind(d.memory_mib)
            .bind(d.hostname)
            .bind(d.status_vmid)
            .bind(Json(&s.spec))
            .bind(Json(&s.status))
            .bind(s.generation)
            .bind(s.resource_version)
            .bind(d.reserved_vmid)
            .bind(s.deletion_requested_at.map(DB::ts))
            .bind(s.paused)
            .bind(s.retry_requested_at.map(DB::ts))
            .bind(DB::ts(s.created_at))
            .bind(DB::ts(s.updated_at))
            .execute(c)
            .await?;
        Ok(())
    }

    async fn customer(c: &mut DB::Connection, id: &str, now: DateTime<Utc>) -> Result<Customer> {
        sqlx::query_as::<DB, CustomerRow>(SELECT_CUSTOMER)
            .bind(id)
            .fetch_optional(c)
            .await?
            .map_or_else(|| Ok(default_customer(id, now)), Customer::try_from)
    }

    async fn archived(c: &mut DB::Connection, id: Uuid) -> Result<Option<Archived>> {
        Ok(sqlx::query_as::<DB, ArchiveRow>(SELECT_ARCHIVE)
            .bind(id)
            .fetch_optional(c)
            .await?
            .map(Archived::from))
    }

    async fn live_servers(c: &mut DB::Connection, customer_id: &str) -> Result<Vec<Server>> {
        servers(
            sqlx::query_as::<DB, ServerRow>(CUSTOMER_LIVE_SERVERS)
                .bind(customer_id)
                .fetch_all(c)
                .await?,
        )
    }

    /// Remove the server's reservation and put its VMID back in the free list.
    async fn release_reservation(c: &mut DB::Connection, id: ServerId) -> Result<()> {
        let vmid: Option<i64> = sqlx::query_scalar::<DB, i64>(RELEASE_RESERVATION)
            .bind(id.0)
            .fetch_optional(&mut *c)
            .await?;
        if let Some(v) = vmid {
            sqlx::query::<DB>(FREE_VMID).bind(v).execute(c).await?;
        }
        Ok(())
    }

    /// Reserve the lowest free VMID of `range` not in `skip` for `id`, reading only the
    /// lowest free ones (an index range scan of the free list: the same cost at 10 as at 900
    /// reserved). `None`: none left.
    ///
    /// Concurrent reservations (Postgres) skip each other's held candidates, then, with
    /// nothing else free, wait for them (one may roll back). The reservation's primary key,
    /// not the free list, decides who wins a VMID: a stale free entry (left by the previous
    /// release) just loses its insert and is dropped. A range that looks exhausted is filled
    /// again once from the reservations (which also heals a VMID freed by the previous
    /// release, which does not list it).
    async fn take_free_vmid(
        c: &mut DB::Connection,
        holder: VmidHolder<'_>,
        range: VmidRange,
        skip: &mut BTreeSet<u32>,
        now: DateTime<Utc>,
    ) -> Result<Option<u32>> {
        let (min, max) = (i64::from(range.min), i64::from(range.max));
        let new_range: Option<i64> = sqlx::query_scalar::<DB, i64>(REGISTER_VMID_RANGE)
            .bind(min)
            .bind(max)
            .fetch_optional(&mut *c)
            .await?;
        let mut refilled = new_range.is_some();
        if refilled {
            Self::fill_free_vmids(c, min, max).await?;
        }
        let (mut wait, mut after) = (false, min - 1);
        loop {
            let sql = if wait {
                DB::FREE_VMIDS_WAIT
            } else {
                DB::FREE_VMIDS
            };
            let free: Vec<i64> = sqlx::query_scalar::<DB, i64>(sql)
                .bind(min)
                .bind(max)
                .bind(after)
                .bind(VMID_PAGE)
                .fetch_all(&mut *c)
                .await?;
            match pick_vmid(&free, skip) {
                VmidPick::Take(v) => {
                    sqlx::query::<DB>(TAKE_FREE_VMID)
                        .bind(i64::from(v))
                        .execute(&mut *c)
                        .await?;
                    let won: Option<i64> = match holder {
                        VmidHolder::Server(id) => {
                            sqlx::query_scalar::<DB, i64>(INSERT_RESERVATION)
                                .bind(i64::from(v))
                                .bind(id.0)
                                .bind(DB::ts(now))
                                .fetch_optional(&mut *c)
                                .await?
                        }
                        VmidHolder::Pool(id, m) => {
                            sqlx::query_scalar::<DB, i64>(INSERT_POOL_MEMBER)
                                .bind(i64::from(v))
                                .bind(id)
                                .bind(i64::from(m.template))
                                .bind(m.node.as_str())
                                .bind(m.template_digest.as_str())
                                .bind(m.template_version.as_deref())
                                .bind(DB::ts(now))
                                .fetch_optional(&mut *c)
                                .await?
                        }
                    };
                    if won.is_some() {
                        return Ok(Some(v));
                    }
                    skip.insert(v);
                    after = i64::from(v);
                }
                VmidPick::ReadOn(last) => after = last,
                VmidPick::Nothing if !wait => (wait, after) = (true, min - 1),
                VmidPick::Nothing if !refilled => {
                    Self::fill_free_vmids(c, min, max).await?;
                    (refilled, after) = (true, min - 1);
                }
                VmidPick::Nothing => return Ok(None),
            }
        }
    }

    async fn fill_free_vmids(c: &mut DB::Connection, min: i64, max: i64) -> Result<()> {
        sqlx::query::<DB>(FILL_FREE_VMIDS)
            .bind(min)
            .bind(max)
            .execute(c)
            .await?;
        Ok(())
    }

    /// Read, check, change and write one server row (the common shape of most writes).
    /// `change` may return an operation to record with the write.
    async fn modify(
        &self,
        id: ServerId,
        expected_rv: Option<i64>,
        fence: Option<Fence>,
        origin: Origin,
        events: &[NewEvent],
        change: impl FnOnce(&mut Server, DateTime<Utc>) -> Option<Operation>,
    ) -> Result<(Server, Option<Operation>)> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let Some(mut server) = Self::lock(&mut tx, id).await? else {
            return leave(tx, Err(StoreError::NotFound)).await;
        };
        if let Err(e) = check_fence(Self::lease_for_fence(&mut tx, id).await?.as_ref(), fence) {
            return leave(tx, Err(e)).await;
        }
        if expected_rv.is_some_and(|rv| rv != server.resource_version) {
            return leave(tx, Err(StoreError::Stale)).await;
        }
        let op = change(&mut server, now);
        if let Some(op) = &op {
            Self::insert_operation(&mut tx, op).await?;
        }
        Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        Self::save(&mut tx, UPDATE_SERVER, &server).await?;
        for e in events {
            Self::insert_event(&mut tx, id, e.type_, e.reason, &e.message, now).await?;
        }
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
        let Some(mut server) = Self::lock(&mut tx, id).await? else {
            return leave(tx, Err(StoreError::NotFound)).await;
        };
        if expected_rv.is_some_and(|rv| rv != server.resource_version) {
            return leave(tx, Err(StoreError::Stale)).await;
        }
        if enforce_quota {
            Self::lock_customer(&mut tx, &server.customer_id).await?;
            let customer = Self::customer(&mut tx, &server.customer_id, now).await?;
            let live = Self::live_servers(&mut tx, &server.customer_id).await?;
            if let Err(e) = check_update_quota(&customer, &live, &server, &spec) {
                return leave(tx, Err(e)).await;
            }
        }
        server.spec = spec;
        server.generation += 1;
        let op = new_operation(id, server.generation, OperationKind::Update, now);
        Self::insert_operation(&mut tx, &op).await?;
        Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        Self::save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok((server, op))
    }

    /// The idempotency answer of a keyed create: `None` when the key is (now) ours, else the
    /// replay or the conflict.
    async fn claim_key(
        c: &mut DB::Connection,
        new: &NewServer,
        idem: &Idempotency,
        id: ServerId,
        op: &Operation,
        now: DateTime<Utc>,
    ) -> Result<Option<Result<Created>>> {
        let cutoff = age_cutoff(now, idem.retention);
        sqlx::query::<DB>(DB::PURGE_IDEMPOTENCY_KEYS)
            .bind(DB::ts(cutoff))
            .bind(IDEMPOTENCY_PURGE_BATCH)
            .execute(&mut *c)
            .await?;
        let claim = async |c: &mut DB::Connection| -> Result<Option<Uuid>> {
            Ok(sqlx::query_scalar::<DB, Uuid>(CLAIM_IDEMPOTENCY_KEY)
                .bind(new.customer_id.as_str())
                .bind(idem.key.as_str())
                .bind(idem.request_hash.as_str())
                .bind(id.0)
                .bind(op.id.0)
                .bind(DB::ts(now))
                .fetch_optional(c)
                .await?)
        };
        if claim(&mut *c).await?.is_some() {
            return Ok(None);
        }
        let row = sqlx::query_as::<DB, IdempotencyRow>(SELECT_IDEMPOTENCY_KEY)
            .bind(new.customer_id.as_str())
            .bind(idem.key.as_str())
            .fetch_one(&mut *c)
            .await?;
        if row.created_at < cutoff {
            // Expired (the purge batch had not reached it): forget it, claim anew. The
            // customer lock (or the write lock) keeps other creates of this key out meanwhile.
            sqlx::query::<DB>(DELETE_IDEMPOTENCY_KEY)
                .bind(new.customer_id.as_str())
                .bind(idem.key.as_str())
                .execute(&mut *c)
                .await?;
            if claim(&mut *c).await?.is_none() {
                let e = StoreError::Database(err::MISSING_AFTER_WRITE.into());
                return Ok(Some(Err(e)));
            }
            return Ok(None);
        }
        if row.request_hash != idem.request_hash {
            return Ok(Some(Err(StoreError::IdempotencyConflict)));
        }
        let server = match Self::load(&mut *c, ServerId(row.server_id)).await? {
            Some(s) => Some(s),
            None => Self::archived(&mut *c, row.server_id)
                .await?
                .map(|a| a.server),
        };
        let operation = Self::operation(&mut *c, SELECT_OPERATION, row.operation_id).await?;
        Ok(Some(server.zip(operation).ok_or(StoreError::NotFound).map(
            |(server, operation)| Created {
                server,
                operation,
                created: false,
            },
        )))
    }
}

#[allow(private_bounds)]
impl<DB> Store for SqlStore<DB>
where
    DB: Backend,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<DB::Time>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q ServerSpec>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q ServerStatus>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Server>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q ResourceUsage>>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q Players>>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q AgentDetail>>: Encode<'q, DB> + Type<DB>,
    for<'r> (i64,): FromRow<'r, DB::Row>,
    for<'r> (Uuid,): FromRow<'r, DB::Row>,
    for<'r> (String,): FromRow<'r, DB::Row>,
    for<'r> (i64, Uuid): FromRow<'r, DB::Row>,
    for<'r> (i64, bool): FromRow<'r, DB::Row>,
    for<'r> ServerRow: FromRow<'r, DB::Row>,
    for<'r> ArchiveRow: FromRow<'r, DB::Row>,
    for<'r> OperationRow: FromRow<'r, DB::Row>,
    for<'r> IdempotencyRow: FromRow<'r, DB::Row>,
    for<'r> ChangeRow: FromRow<'r, DB::Row>,
    for<'r> EventRow: FromRow<'r, DB::Row>,
    for<'r> LeaseRow: FromRow<'r, DB::Row>,
    for<'r> CustomerRow: FromRow<'r, DB::Row>,
    for<'r> TokenRow: FromRow<'r, DB::Row>,
    for<'r> ReplicaRow: FromRow<'r, DB::Row>,
    for<'r> OrphanRow: FromRow<'r, DB::Row>,
    for<'r> PoolMemberRow: FromRow<'r, DB::Row>,
    for<'r> StatsRow: FromRow<'r, DB::Row>,
    for<'r> AuditRow: FromRow<'r, DB::Row>,
    for<'q> Option<Uuid>: Encode<'q, DB> + Type<DB>,
{
    async fn create_server(&self, new: NewServer) -> Result<Created> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        // One create per customer at a time: the launch guard and quota read, then insert.
        Self::lock_customer(&mut tx, &new.customer_id).await?;
        let id = ServerId::new();
        let op = new_operation(id, 1, OperationKind::Create, now);
        let mut live = None;
        if let Some(idem) = &new.idempotency {
            if let Some(answer) = Self::claim_key(&mut tx, &new, idem, id, &op, now).await? {
                return leave(tx, answer).await;
            }
        } else {
            let servers = Self::live_servers(&mut tx, &new.customer_id).await?;
            if let Some(busy) = guard_match(&servers, &new.spec) {
                let operation = Self::operation(&mut tx, LATEST_SPEC_OPERATION, busy.id.0)
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
                return leave(tx, answer).await;
            }
            live = Some(servers);
        }
        if new.enforce_quota {
            let customer = Self::customer(&mut tx, &new.customer_id, now).await?;
            let live = match live {
                Some(l) => l,
                None => Self::live_servers(&mut tx, &new.customer_id).await?,
            };
            if let Err(e) = check_quota(&customer, &live, &new.spec) {
                return leave(tx, Err(e)).await;
            }
        }
        let mut server = new_server(id, &new.customer_id, new.spec, now);
        Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        Self::save(&mut tx, INSERT_SERVER, &server).await?;
        Self::insert_operation(&mut tx, &op).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok(Created {
            server,
            operation: op,
            created: true,
        })
    }

    async fn get_server(&self, id: ServerId) -> Result<Option<Server>> {
        Self::load(&mut *self.pool.acquire().await?, id).await
    }

    async fn list_servers(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>> {
        page_servers(filter.phase, page, |after, n| async move {
            servers(
                sqlx::query_as::<DB, ServerRow>(LIST_SERVERS)
                    .bind(after)
                    .bind(filter.customer_id.as_deref())
                    .bind(filter.kind.map(Kind::as_str))
                    .bind(filter.hostname.as_deref())
                    .bind(filter.vmid.map(i64::from))
                    .bind(n)
                    .fetch_all(&mut *self.pool.acquire().await?)
                    .await?,
            )
        })
        .await
    }

    async fn all_server_ids(&self) -> Result<Vec<ServerId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar::<DB, Uuid>(ALL_SERVER_IDS)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?;
        Ok(ids.into_iter().map(ServerId).collect())
    }

    /// Allowed while deleting (the API refuses that case first); the phase stays Deleting.
    async fn update_spec(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
    ) -> Result<(Server, Operation)> {
        self.replace_spec(id, spec, expected_rv, false).await
    }

    async fn update_spec_within_quota(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
    ) -> Result<(Server, Operation)> {
        self.replace_spec(id, spec, expected_rv, true).await
    }

    async fn write_status_with_events(
        &self,
        id: ServerId,
        status: &ServerStatus,
        expected_rv: i64,
        fence: Option<Fence>,
        events: &[NewEvent],
    ) -> Result<Server> {
        let change = |s: &mut Server, _| {
            s.status = status.clone();
            None
        };
        let (server, _) = self
            .modify(
                id,
                Some(expected_rv),
                fence,
                Origin::Controller,
                events,
                change,
            )
            .await?;
        Ok(server)
    }

    async fn set_paused(&self, id: ServerId, paused: bool) -> Result<Server> {
        let (server, _) = self
            .modify(id, None, None, Origin::User, &[], |s, _| {
                s.paused = paused;
                None
            })
            .await?;
        Ok(server)
    }

    async fn request_reconcile(&self, id: ServerId, retry: bool) -> Result<Server> {
        let (server, _) = self
            .modify(id, None, None, Origin::User, &[], |s, now| {
                if retry {
                    s.retry_requested_at = Some(now);
                }
                None
            })
            .await?;
        Ok(server)
    }

    async fn request_deletion(&self, id: ServerId) -> Result<(Server, Operation)> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let Some(mut server) = Self::lock(&mut tx, id).await? else {
            return leave(tx, Err(StoreError::NotFound)).await;
        };
        if server.is_deleting() {
            let existing = sqlx::query_as::<DB, OperationRow>(LATEST_OPERATION_OF_KIND)
                .bind(id.0)
                .bind(OperationKind::Delete.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(op) = existing {
                return leave(tx, op.try_into().map(|op| (server, op))).await;
            }
        }
        server.deletion_requested_at.get_or_insert(now);
        let op = new_operation(id, server.generation, OperationKind::Delete, now);
        Self::insert_operation(&mut tx, &op).await?;
        Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        Self::save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::User);
        Ok((server, op))
    }

    async fn archive_and_delete(&self, id: ServerId, fence: Option<Fence>) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let Some(mut server) = Self::lock(&mut tx, id).await? else {
            return leave(tx, Ok(())).await;
        };
        if let Err(e) = check_fence(Self::lease_for_fence(&mut tx, id).await?.as_ref(), fence) {
            return leave(tx, Err(e)).await;
        }
        let origin = Origin::Controller;
        Self::stamp(&mut tx, &mut server, ChangeKind::Delete, now).await?;
        sqlx::query::<DB>(INSERT_ARCHIVE)
            .bind(id.0)
            .bind(server.customer_id.as_str())
            .bind(Json(&server))
            .bind(DB::ts(now))
            .execute(&mut *tx)
            .await?;
        // Idempotency keys stay: a late retry of this create must still replay it.
        Self::release_reservation(&mut tx, id).await?;
        for sql in [DELETE_LEASE, DELETE_STATS, DELETE_SERVER] {
            sqlx::query::<DB>(sql).bind(id.0).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.notify(id, origin);
        Ok(())
    }

    async fn get_archived(&self, id: ServerId) -> Result<Option<Archived>> {
        Self::archived(&mut *self.pool.acquire().await?, id.0).await
    }

    async fn get_operation(&self, id: OperationId) -> Result<Option<Operation>> {
        Self::operation(&mut *self.pool.acquire().await?, SELECT_OPERATION, id.0).await
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
        let Some(mut server) = Self::lock(&mut tx, id).await? else {
            return leave(tx, Err(StoreError::NotFound)).await;
        };
        let existing: Option<i64> = sqlx::query_scalar::<DB, i64>(SELECT_RESERVATION)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        let mut skip: BTreeSet<u32> = taken.iter().copied().collect();
        if let Some(old) = existing.map(|v| v as u32) {
            if !replace && server.reserved_vmid == Some(old) {
                return leave(tx, Ok(old)).await;
            }
            if replace {
                Self::release_reservation(&mut tx, id).await?;
                skip.insert(old);
            }
        }
        let vmid = match existing {
            Some(old) if !replace => old as u32,
            _ => match Self::take_free_vmid(&mut tx, VmidHolder::Server(id), range, &mut skip, now)
                .await?
            {
                Some(v) => v,
                None => return leave(tx, Err(range_exhausted(server.spec.kind, range))).await,
            },
        };
        server.reserved_vmid = Some(vmid);
        let origin = Origin::Controller;
        Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        Self::save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, origin);
        Ok(vmid)
    }

    async fn release_vmid(&self, id: ServerId) -> Result<()> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        // The row lock first, as in every write (the feed's per-row order, `super::feed`).
        let server = Self::lock(&mut tx, id).await?;
        Self::release_reservation(&mut tx, id).await?;
        let Some(mut server) = server.filter(|s| s.reserved_vmid.is_some()) else {
            tx.commit().await?;
            return Ok(());
        };
        server.reserved_vmid = None;
        let origin = Origin::Controller;
        Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        Self::save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, origin);
        Ok(())
    }

    async fn list_reservations(&self) -> Result<Vec<(u32, ServerId)>> {
        reservations(
            sqlx::query_as::<DB, (i64, Uuid)>(LIST_RESERVATIONS)
                .fetch_all(&mut *self.pool.acquire().await?)
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
        let mut c = self.pool.acquire().await?;
        Self::insert_event(&mut c, id, type_, reason, message, self.clock.now()).await
    }

    async fn list_events(&self, id: ServerId, limit: u32) -> Result<Vec<Event>> {
        sqlx::query_as::<DB, EventRow>(LIST_EVENTS)
            .bind(id.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.pool.acquire().await?)
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
        if Self::load(&mut tx, id).await?.is_none() {
            return leave(tx, Err(StoreError::NotFound)).await;
        }
        let row = sqlx::query_as::<DB, LeaseRow>(DB::LEASE_FOR_CLAIM)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        let token = match row {
            // No row (or, on Postgres, one locked by a concurrent claimer or writer): try to
            // create it; a conflict means someone else has it.
            None => {
                let token: Option<i64> = sqlx::query_scalar::<DB, i64>(INSERT_LEASE)
                    .bind(id.0)
                    .bind(holder)
                    .bind(DB::ts(expires_at))
                    .fetch_optional(&mut *tx)
                    .await?;
                match token {
                    Some(t) => t,
                    None => return leave(tx, Ok(None)).await,
                }
            }
            Some(row) => match claim_decision(&row, holder, now) {
                ClaimDecision::Refuse => return leave(tx, Ok(None)).await,
                ClaimDecision::Renew(token) | ClaimDecision::TakeOver(token) => {
                    sqlx::query::<DB>(UPDATE_LEASE)
                        .bind(id.0)
                        .bind(holder)
                        .bind(token)
                        .bind(DB::ts(expires_at))
                        .execute(&mut *tx)
                        .await?;
                    token
                }
            },
        };
        tx.commit().await?;
        Ok(Some(lease_of(id, holder, token, expires_at)))
    }

    async fn renew_lease(
        &self,
        id: ServerId,
        holder: &str,
        fence: Fence,
        ttl: Duration,
    ) -> Result<Lease> {
        let expires_at = expiry(self.clock.now(), ttl);
        let done = sqlx::query::<DB>(RENEW_LEASE)
            .bind(id.0)
            .bind(holder)
            .bind(fence.token)
            .bind(DB::ts(expires_at))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        if DB::rows_affected(&done) == 0 {
            return Err(StoreError::Fenced);
        }
        Ok(lease_of(id, holder, fence.token, expires_at))
    }

    async fn release_lease(&self, id: ServerId, holder: &str, fence: Fence) -> Result<()> {
        sqlx::query::<DB>(RELEASE_LEASE)
            .bind(id.0)
            .bind(holder)
            .bind(fence.token)
            .bind(DB::ts(self.clock.now()))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    async fn release_all_leases(&self, holder: &str) -> Result<u64> {
        let done = sqlx::query::<DB>(RELEASE_ALL_LEASES)
            .bind(holder)
            .bind(DB::ts(self.clock.now()))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(DB::rows_affected(&done))
    }

    async fn try_singleton(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = self.clock.now();
        let got: Option<String> = sqlx::query_scalar::<DB, String>(TRY_SINGLETON)
            .bind(name)
            .bind(holder)
            .bind(DB::ts(expiry(now, ttl)))
            .bind(DB::ts(now))
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?;
        Ok(got.is_some())
    }

    async fn release_singleton(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query::<DB>(RELEASE_SINGLETON)
            .bind(name)
            .bind(holder)
            .bind(DB::ts(self.clock.now()))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
        let mut conn = self.pool.acquire().await?;
        // Committed changes held back by an older open transaction: wait (briefly) until
        // those seen at the first read are final; later arrivals do not extend the wait.
        let (mut tries, mut wanted) = (0, None);
        let rows = loop {
            let sql = match tries < QUICK_TRIES {
                true => DB::CHANGES_SINCE_QUICK,
                false => DB::CHANGES_SINCE,
            };
            let mut rows = sqlx::query_as::<DB, ChangeRow>(sql)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *conn)
                .await?;
            let final_prefix = rows.iter().take_while(|r| r.is_final).count();
            let newest = rows.last().map(ChangeRow::seq);
            let wanted = *wanted.get_or_insert(newest);
            let reached = rows[..final_prefix].last().map(ChangeRow::seq);
            tries += 1;
            if final_prefix == rows.len() || reached >= wanted || tries >= HELD_BACK_TRIES {
                rows.truncate(final_prefix);
                break rows;
            }
            tokio::time::sleep(held_back_wait(tries)).await;
        };
        // After the read: a prune that committed meanwhile is seen (see `super::feed`).
        let pruned: i64 = sqlx::query_scalar::<DB, i64>(FEED_PRUNED_THROUGH)
            .fetch_one(&mut *conn)
            .await?;
        if after < pruned {
            return Err(StoreError::FeedGone {
                after,
                oldest: pruned,
            });
        }
        rows.into_iter().map(Change::try_from).collect()
    }

    async fn latest_seq(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        let mut tries = 0;
        loop {
            let sql = match tries < QUICK_TRIES {
                true => DB::LATEST_SEQ_QUICK,
                false => DB::LATEST_SEQ,
            };
            let (latest, held): (i64, bool) = sqlx::query_as::<DB, (i64, bool)>(sql)
                .fetch_one(&mut *conn)
                .await?;
            tries += 1;
            if !held || tries >= HELD_BACK_TRIES {
                return Ok(latest);
            }
            tokio::time::sleep(held_back_wait(tries)).await;
        }
    }

    async fn prune(&self, what: Prune, batch: u32) -> Result<u64> {
        let now = self.clock.now();
        let cutoff = |keep_for: Duration| DB::ts(age_cutoff(now, keep_for));
        let batch = i64::from(batch);
        let mut tx = self.write_tx().await?;
        let removed = match what {
            Prune::ChangeFeed { keep_for } => {
                let gone: Vec<i64> = sqlx::query_scalar::<DB, i64>(PRUNE_CHANGES)
                    .bind(cutoff(keep_for))
                    .bind(batch)
                    .fetch_all(&mut *tx)
                    .await?;
                // In the same transaction: a reader behind what went is told so.
                if let Some(top) = gone.iter().max() {
                    sqlx::query::<DB>(RAISE_PRUNED_THROUGH)
                        .bind(*top)
                        .execute(&mut *tx)
                        .await?;
                }
                gone.len() as u64
            }
            Prune::EventsPerServer { keep } => {
                let done = sqlx::query::<DB>(PRUNE_EVENTS_PER_SERVER)
                    .bind(i64::from(keep))
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                DB::rows_affected(&done)
            }
            Prune::Events { keep } => {
                let done = sqlx::query::<DB>(PRUNE_EVENTS)
                    .bind(i64::try_from(keep).unwrap_or(i64::MAX))
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                DB::rows_affected(&done)
            }
            Prune::Operations { keep_for } => {
                let done = sqlx::query::<DB>(PRUNE_OPERATIONS)
                    .bind(cutoff(keep_for))
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                DB::rows_affected(&done)
            }
            Prune::EventsOfDeleted { keep_for } => {
                let done = sqlx::query::<DB>(PRUNE_EVENTS_OF_DELETED)
                    .bind(cutoff(keep_for))
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                DB::rows_affected(&done)
            }
            Prune::OperationsOfDeleted { keep_for } => {
                let done = sqlx::query::<DB>(PRUNE_OPERATIONS_OF_DELETED)
                    .bind(cutoff(keep_for))
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                DB::rows_affected(&done)
            }
            Prune::Archive { keep_for } => {
                let done = sqlx::query::<DB>(PRUNE_ARCHIVE)
                    .bind(cutoff(keep_for))
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                DB::rows_affected(&done)
            }
            Prune::Audit { keep_for } => {
                let done = sqlx::query::<DB>(PRUNE_AUDIT)
                    .bind(cutoff(keep_for))
                    .bind(batch)
                    .execute(&mut *tx)
                    .await?;
                DB::rows_affected(&done)
            }
        };
        tx.commit().await?;
        Ok(removed)
    }

    async fn get_customer(&self, id: &str) -> Result<Customer> {
        Self::customer(&mut *self.pool.acquire().await?, id, self.clock.now()).await
    }

    async fn upsert_customer(
        &self,
        id: &str,
        quota: Option<Quota>,
        standing: Option<Standing>,
    ) -> Result<Customer> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let mut c = Self::customer(&mut tx, id, now).await?;
        c.quota = quota.unwrap_or(c.quota);
        c.standing = standing.unwrap_or(c.standing);
        c.updated_at = now;
        let [max_servers, max_memory_mib, max_cores, max_disk_gib] = quota_cols(&c.quota);
        sqlx::query::<DB>(UPSERT_CUSTOMER)
            .bind(id)
            .bind(max_servers)
            .bind(max_memory_mib)
            .bind(max_cores)
            .bind(max_disk_gib)
            .bind(c.standing.as_str())
            .bind(DB::ts(now))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(c)
    }

    async fn create_token(
        &self,
        name: &str,
        hash: &str,
        role: Role,
        customer_id: Option<&str>,
    ) -> Result<ApiToken> {
        self.create_token_expiring(name, hash, role, customer_id, None)
            .await
    }

    async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>> {
        sqlx::query_as::<DB, TokenRow>(SELECT_TOKEN_BY_HASH)
            .bind(hash)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?
            .map(ApiToken::try_from)
            .transpose()
    }

    async fn get_token(&self, id: Uuid) -> Result<Option<ApiToken>> {
        sqlx::query_as::<DB, TokenRow>(SELECT_TOKEN_BY_ID)
            .bind(id)
            .fetch_optional(&mut *self.pool.acquire().await?)
            .await?
            .map(ApiToken::try_from)
            .transpose()
    }

    async fn heartbeat(&self, info: &ReplicaInfo) -> Result<()> {
        sqlx::query::<DB>(UPSERT_REPLICA)
            .bind(info.id.as_str())
            .bind(DB::ts(info.started_at))
            .bind(DB::ts(self.clock.now()))
            .bind(info.queue_depth)
            .bind(info.workers_busy)
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    async fn list_replicas(&self, alive_within: Duration) -> Result<Vec<ReplicaInfo>> {
        let now = self.clock.now();
        let since =
            now - chrono::Duration::from_std(alive_within).unwrap_or(chrono::Duration::MAX / 2);
        let rows = sqlx::query_as::<DB, ReplicaRow>(LIST_REPLICAS)
            .bind(DB::ts(since))
            .bind(DB::ts(now))
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?;
        Ok(rows.into_iter().map(ReplicaInfo::from).collect())
    }

    async fn replace_orphans(&self, found: &[Orphan]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let stored: Vec<i64> = sqlx::query_scalar::<DB, i64>(ORPHAN_VMIDS)
            .fetch_all(&mut *tx)
            .await?;
        for vmid in vanished_orphans(&stored, found) {
            sqlx::query::<DB>(DELETE_ORPHAN)
                .bind(vmid)
                .execute(&mut *tx)
                .await?;
        }
        for o in found {
            sqlx::query::<DB>(UPSERT_ORPHAN)
                .bind(i64::from(o.vmid))
                .bind(o.node.as_str())
                .bind(o.marker.as_str())
                .bind(o.name.as_deref())
                .bind(DB::ts(o.first_seen))
                .bind(DB::ts(o.last_seen))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_orphans(&self) -> Result<Vec<Orphan>> {
        sqlx::query_as::<DB, OrphanRow>(LIST_ORPHANS)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .into_iter()
            .map(Orphan::try_from)
            .collect()
    }

    async fn write_stats(&self, samples: &[crate::ServerStats]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for chunk in samples.chunks(STATS_BATCH) {
            let mut q = sqlx::QueryBuilder::<DB>::new(UPSERT_STATS_HEAD);
            q.push_values(chunk, |mut row, s| {
                row.push_bind(s.server_id.0)
                    .push_bind(s.resources.as_ref().map(Json))
                    .push_bind(s.resources.as_ref().and(s.resources_seen_at).map(DB::ts))
                    .push_bind(s.players.as_ref().map(Json))
                    .push_bind(s.players.as_ref().and(s.players_seen_at).map(DB::ts))
                    .push_bind(s.agent.as_ref().map(Json))
                    .push_bind(s.agent.as_ref().and(s.agent_seen_at).map(DB::ts));
            });
            q.push(UPSERT_STATS_TAIL);
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_stats(&self, ids: &[ServerId]) -> Result<Vec<crate::ServerStats>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let mut out = Vec::with_capacity(ids.len());
        let mut conn = self.pool.acquire().await?;
        for chunk in ids.chunks(STATS_BATCH) {
            let mut q = sqlx::QueryBuilder::<DB>::new(SELECT_STATS_HEAD);
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id.0);
            }
            q.push(")");
            let rows: Vec<StatsRow> = q.build_query_as().fetch_all(&mut *conn).await?;
            out.extend(rows.into_iter().map(crate::ServerStats::from));
        }
        Ok(out)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query::<DB>(PROBE_WRITE)
            .bind(DB::ts(self.clock.now()))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    // --- token lifecycle and audit (issue 25) -------------------------------------------

    async fn create_token_expiring(
        &self,
        name: &str,
        hash: &str,
        role: Role,
        customer_id: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ApiToken> {
        let token = ApiToken {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            hash: hash.to_owned(),
            role,
            customer_id: customer_id.map(str::to_owned),
            created_at: self.clock.now(),
            last_used_at: None,
            expires_at,
            revoked_at: None,
        };
        sqlx::query::<DB>(INSERT_TOKEN)
            .bind(token.id)
            .bind(token.name.as_str())
            .bind(token.hash.as_str())
            .bind(role.as_str())
            .bind(customer_id)
            .bind(DB::ts(token.created_at))
            .bind(expires_at.map(DB::ts))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(token)
    }

    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        sqlx::query_as::<DB, TokenRow>(LIST_TOKENS)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .into_iter()
            .map(ApiToken::try_from)
            .collect()
    }

    async fn revoke_token(&self, id: Uuid) -> Result<ApiToken> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query::<DB>(REVOKE_TOKEN)
            .bind(id)
            .bind(DB::ts(self.clock.now()))
            .execute(&mut *tx)
            .await?;
        if DB::rows_affected(&done) == 0 {
            return leave(tx, Err(StoreError::NotFound)).await;
        }
        let token = sqlx::query_as::<DB, TokenRow>(SELECT_TOKEN_BY_ID)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        ApiToken::try_from(token)
    }

    async fn touch_token(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query::<DB>(TOUCH_TOKEN)
            .bind(id)
            .bind(DB::ts(at))
            .bind(DB::ts(not_before))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(())
    }

    async fn record_audit(&self, entry: &crate::NewAudit) -> Result<crate::AuditEntry> {
        let at = self.clock.now();
        let seq = sqlx::query_scalar::<DB, i64>(INSERT_AUDIT)
            .bind(DB::ts(at))
            .bind(entry.actor.as_str())
            .bind(entry.role.as_str())
            .bind(entry.action.as_str())
            .bind(entry.server_id.map(|s| s.0))
            .bind(entry.detail.as_str())
            .fetch_one(&mut *self.pool.acquire().await?)
            .await?;
        Ok(crate::AuditEntry {
            seq,
            at,
            actor: entry.actor.clone(),
            role: entry.role,
            action: entry.action.clone(),
            server_id: entry.server_id,
            detail: entry.detail.clone(),
        })
    }

    async fn list_audit(
        &self,
        filter: &crate::AuditFilter,
        limit: u32,
    ) -> Result<Vec<crate::AuditEntry>> {
        sqlx::query_as::<DB, AuditRow>(LIST_AUDIT)
            .bind(filter.server_id.is_none())
            .bind(filter.server_id.map(|s| s.0))
            .bind(filter.actor.as_deref())
            .bind(filter.action.as_deref())
            .bind(filter.before)
            .bind(i64::from(limit))
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .into_iter()
            .map(crate::AuditEntry::try_from)
            .collect()
    }

    async fn request_reconcile_many(
        &self,
        ids: &[ServerId],
        retry: bool,
        (reason, message): (&str, &str),
    ) -> Result<Vec<ServerId>> {
        let now = self.clock.now();
        let mut done = Vec::with_capacity(ids.len());
        // One transaction per server: a feed position is its transaction's id, so a
        // transaction writes at most one change (docs/store.md, "The change feed").
        for &id in ids {
            let mut tx = self.write_tx().await?;
            let Some(mut server) = Self::lock(&mut tx, id).await? else {
                continue;
            };
            if retry {
                server.retry_requested_at = Some(now);
            }
            Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
            Self::save(&mut tx, UPDATE_SERVER, &server).await?;
            Self::insert_event(&mut tx, id, EventType::Normal, reason, message, now).await?;
            tx.commit().await?;
            self.notify(id, Origin::User);
            done.push(id);
        }
        Ok(done)
    }

    async fn reserve_pool_member(
        &self,
        new: &crate::NewPoolMember,
        kind: Kind,
        range: VmidRange,
        taken: &[u32],
    ) -> Result<crate::PoolMember> {
        let now = self.clock.now();
        let id = Uuid::now_v7();
        let mut tx = self.write_tx().await?;
        let mut skip: BTreeSet<u32> = taken.iter().copied().collect();
        let holder = VmidHolder::Pool(id, new);
        let Some(vmid) = Self::take_free_vmid(&mut tx, holder, range, &mut skip, now).await? else {
            return leave(tx, Err(range_exhausted(kind, range))).await;
        };
        tx.commit().await?;
        Ok(crate::PoolMember {
            vmid,
            template: new.template,
            node: new.node.clone(),
            state: crate::MemberState::Cloning,
            id,
            upid: None,
            template_digest: new.template_digest.clone(),
            template_version: new.template_version.clone(),
            created_at: now,
            ready_at: None,
        })
    }

    async fn list_pool_members(&self) -> Result<Vec<crate::PoolMember>> {
        sqlx::query_as::<DB, PoolMemberRow>(LIST_POOL_MEMBERS)
            .fetch_all(&mut *self.pool.acquire().await?)
            .await?
            .into_iter()
            .map(crate::PoolMember::try_from)
            .collect()
    }

    async fn set_member_task(
        &self,
        vmid: u32,
        state: crate::MemberState,
        upid: Option<&str>,
    ) -> Result<bool> {
        let r = sqlx::query::<DB>(SET_MEMBER_TASK)
            .bind(i64::from(vmid))
            .bind(upid)
            .bind(state.as_str())
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    async fn member_ready(&self, vmid: u32) -> Result<bool> {
        let r = sqlx::query::<DB>(MEMBER_READY)
            .bind(i64::from(vmid))
            .bind(DB::ts(self.clock.now()))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    async fn retire_member(&self, vmid: u32) -> Result<bool> {
        let r = sqlx::query::<DB>(RETIRE_MEMBER)
            .bind(i64::from(vmid))
            .execute(&mut *self.pool.acquire().await?)
            .await?;
        Ok(DB::rows_affected(&r) == 1)
    }

    async fn delete_pool_member(&self, vmid: u32) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let gone: Option<i64> = sqlx::query_scalar::<DB, i64>(DELETE_POOL_MEMBER)
            .bind(i64::from(vmid))
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(v) = gone {
            sqlx::query::<DB>(FREE_VMID)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(gone.is_some())
    }

    async fn claim_pool_member(&self, id: ServerId, template: u32) -> Result<Option<u32>> {
        let now = self.clock.now();
        let mut tx = self.write_tx().await?;
        let Some(mut server) = Self::lock(&mut tx, id).await? else {
            return leave(tx, Ok(None)).await;
        };
        let existing: Option<i64> = sqlx::query_scalar::<DB, i64>(SELECT_RESERVATION)
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        if existing.is_some() || server.reserved_vmid.is_some() || server.is_deleting() {
            return leave(tx, Ok(None)).await;
        }
        let Some(vmid) = sqlx::query_scalar::<DB, i64>(DB::FREE_POOL_MEMBER)
            .bind(i64::from(template))
            .fetch_optional(&mut *tx)
            .await?
        else {
            return leave(tx, Ok(None)).await;
        };
        // The member row goes first, so the reservation's guard against members passes.
        sqlx::query::<DB>(DELETE_POOL_MEMBER)
            .bind(vmid)
            .execute(&mut *tx)
            .await?;
        let won: Option<i64> = sqlx::query_scalar::<DB, i64>(INSERT_RESERVATION)
            .bind(vmid)
            .bind(id.0)
            .bind(DB::ts(now))
            .fetch_optional(&mut *tx)
            .await?;
        if won.is_none() {
            // Reserved for a server meanwhile (cannot happen while members and reservations
            // exclude each other): leave the member as it was.
            return leave(tx, Ok(None)).await;
        }
        let vmid = super::rows::vmid(vmid)?;
        server.reserved_vmid = Some(vmid);
        server.status.progress.pool_claim = Some(vmid);
        Self::stamp(&mut tx, &mut server, ChangeKind::Upsert, now).await?;
        Self::save(&mut tx, UPDATE_SERVER, &server).await?;
        tx.commit().await?;
        self.notify(id, Origin::Controller);
        Ok(Some(vmid))
    }
}
