//! The `Store`: one trait, a SQLite and a PostgreSQL implementation, chosen at run time from
//! the database URL (`sqlite:` / `postgres:`). Every method is one atomic transaction.
//!
//! Times come from the store's injected `Clock`. Every write of a server row appends to the
//! change feed; the feed position of that write becomes the row's `resource_version`, so a
//! watcher resumes from a number and optimistic concurrency compares the same number
//! ([`feed`] says why no reader ever skips a change).

use crate::{
    ApiToken, Customer, Event, EventType, Kind, NewEvent, Operation, OperationId, Phase, Quota,
    Role, Server, ServerId, ServerSpec, ServerStatus, Standing,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

mod any;
mod backend;
pub mod feed;
pub mod notify;
mod options;
mod pg;
mod rows;
mod rules;
pub mod schema;
mod sql;
mod sql_store;
mod sqlite;

pub use any::AnyStore;
pub use backend::Backend;
pub use notify::{Notice, Origin};
pub use options::StoreOptions;
pub use pg::PgStore;
pub use schema::{SchemaError, SchemaFit, SchemaRange};
pub use sql_store::SqlStore;
pub use sqlite::SqliteStore;

pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
pub static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Error strings, kept greppable and stable.
pub mod msg {
    pub const NOT_FOUND: &str = "server not found";
    pub const STALE: &str = "the server was modified concurrently (stale resourceVersion)";
    pub const FENCED: &str = "a newer lease holder owns this server (stale fencing token)";
    pub const IDEMPOTENCY_CONFLICT: &str =
        "this Idempotency-Key was already used with a different request";
    pub const IN_PROGRESS: &str = "a different server for this customer is still being provisioned";
    pub const FEED_GONE: &str =
        "the change feed no longer reaches back to this position; re-list and resume";
    pub const RANGE_EXHAUSTED: &str = "no free VMID left in the configured range";
    /// The summed resources of a quota, as named in `QuotaExceeded` messages.
    pub const QUOTA_MEMORY: &str = "memory";
    pub const QUOTA_CORES: &str = "cores";
    pub const QUOTA_DISK: &str = "disk";
    pub const QUOTA_DOES_NOT_FIT: &str = "more does not fit";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}", msg::NOT_FOUND)]
    NotFound,
    #[error("{}", msg::STALE)]
    Stale,
    #[error("{}", msg::FENCED)]
    Fenced,
    #[error("{}", msg::IDEMPOTENCY_CONFLICT)]
    IdempotencyConflict,
    /// No-key launch guard: a different payload while one is in progress.
    #[error("{}", msg::IN_PROGRESS)]
    InProgress { operation: OperationId },
    #[error("{} ({kind}: {min}..={max})", msg::RANGE_EXHAUSTED)]
    RangeExhausted { kind: Kind, min: u32, max: u32 },
    #[error("customer {customer} is {standing:?}")]
    CustomerNotActive {
        customer: String,
        standing: Standing,
    },
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The feed position is older than the oldest change kept (retention): re-read everything.
    #[error("{} (position {after}, pruned through {oldest})", msg::FEED_GONE)]
    FeedGone { after: i64, oldest: i64 },
    /// Unreachable database, broken pool, or an unexpected SQL error.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            other => StoreError::Database(other.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What `create_server` needs. The API fills it after validation.
#[derive(Debug, Clone)]
pub struct NewServer {
    pub customer_id: String,
    pub spec: ServerSpec,
    /// `Idempotency-Key` with the SHA-256 of the canonical request body.
    pub idempotency: Option<Idempotency>,
    /// Apply standing and quota atomically with the insert.
    pub enforce_quota: bool,
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
    /// How long the key replays (or conflicts) after its first use, whatever happens to the
    /// server meanwhile; an older key is forgotten and a create with it is new.
    pub retention: Duration,
}

/// Stripe keeps idempotency keys for 24 h: longer than any client's retry loop, short enough
/// that the table stays small.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone)]
pub struct Created {
    pub server: Server,
    pub operation: Operation,
    /// False when an existing server/operation was returned (idempotent replay).
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ServerFilter {
    pub customer_id: Option<String>,
    pub kind: Option<Kind>,
    /// Derived phase: filtered in Rust after the keyset query (phase is not a column).
    pub phase: Option<Phase>,
    pub hostname: Option<String>,
    pub vmid: Option<u32>,
}

/// Keyset pagination by id (uuid v7 sorts by creation).
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub after: Option<ServerId>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None` at the end.
    pub next: Option<ServerId>,
}

/// Proof of a held lease; status writes carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub token: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub server_id: ServerId,
    pub holder: String,
    pub token: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Upsert,
    Delete,
}

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: i64,
    pub server_id: ServerId,
    pub kind: ChangeKind,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmidRange {
    pub min: u32,
    pub max: u32,
}

/// A replica's heartbeat, for the controller status endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaInfo {
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub queue_depth: i64,
    pub workers_busy: i64,
    /// Filled from the lease table when read.
    #[serde(default)]
    pub leases_held: i64,
}

/// A container carrying our marker that no server owns (reported, never destroyed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Orphan {
    pub vmid: u32,
    pub node: String,
    /// The server id found in the marker.
    pub marker: String,
    pub name: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// One batch of retention pruning ([`Store::prune`]): what goes, oldest first. Ages are
/// measured with the store's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Changes older than this. Readers behind the new horizon get `FeedGone` (re-list).
    ChangeFeed { keep_for: Duration },
    /// Each server's events beyond its newest `keep` (by last seen).
    EventsPerServer { keep: u32 },
    /// Events beyond the newest `keep` of all servers.
    Events { keep: u64 },
    /// Finished operations older than this: their server is gone (archived), or a newer
    /// generation superseded them.
    Operations { keep_for: Duration },
    /// Events of servers deleted (archived) longer ago than this. Driven by the archive, so
    /// a batch reads only deleted servers' rows, never the whole events table.
    EventsOfDeleted { keep_for: Duration },
    /// Operations of servers deleted (archived) longer ago than this (all finished: the
    /// server is gone).
    OperationsOfDeleted { keep_for: Duration },
    /// Archived servers deleted longer ago than this whose events and operations are gone
    /// (so no event or operation outlives the archive row that leads a prune to it).
    Archive { keep_for: Duration },
    /// Audit entries recorded longer ago than this (the log is append-only otherwise).
    Audit { keep_for: Duration },
}

/// An archived (deleted) server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Archived {
    pub server: Server,
    pub deleted_at: DateTime<Utc>,
}

/// Every server matching `filter`, read a page at a time (pages of 500: big enough to keep
/// the query count low, small enough not to hold one long read).
pub async fn list_all(store: &impl Store, filter: &ServerFilter) -> Result<Vec<Server>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_servers(filter, PageRequest { after, limit: 500 })
            .await?;
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Every operation the API and the controller need. Generic (native async fn), wrapped in
/// `AnyStore` to stay non-generic at the edges.
pub trait Store: Send + Sync + 'static {
    // --- servers ---------------------------------------------------------------------
    /// Create a server with its `create` operation and idempotency record, atomically.
    /// Same key + same hash within the key's retention → the existing server/operation
    /// (`created: false`; the archived server's last state once deleted); same key +
    /// different hash → `IdempotencyConflict`. Without a key: an identical spec for the same
    /// customer still in progress → that one; a different one in progress → `InProgress`.
    fn create_server(&self, new: NewServer) -> impl Future<Output = Result<Created>> + Send;
    fn get_server(&self, id: ServerId) -> impl Future<Output = Result<Option<Server>>> + Send;
    fn list_servers(
        &self,
        filter: &ServerFilter,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Server>>> + Send;
    /// Ids of every live server (periodic resync).
    fn all_server_ids(&self) -> impl Future<Output = Result<Vec<ServerId>>> + Send;
    /// Replace the spec; generation + 1; records an `update` operation. `expected_rv` guards
    /// against lost updates when given. No quota applies (operators, tests).
    fn update_spec(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
    ) -> impl Future<Output = Result<(Server, Operation)>> + Send;
    /// `update_spec` that also applies the customer's standing and, for every resource the
    /// change grows, the quota, in the same transaction as the write (so concurrent updates
    /// and creates cannot together exceed it).
    fn update_spec_within_quota(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
    ) -> impl Future<Output = Result<(Server, Operation)>> + Send;
    /// Write status if `resource_version` still equals `expected_rv` (else `Stale`) and, with
    /// a fence, if the fence is the server's newest lease token (else `Fenced`).
    fn write_status(
        &self,
        id: ServerId,
        status: &ServerStatus,
        expected_rv: i64,
        fence: Option<Fence>,
    ) -> impl Future<Output = Result<Server>> + Send {
        self.write_status_with_events(id, status, expected_rv, fence, &[])
    }
    /// `write_status` that appends `events` in the same transaction: a crash never keeps
    /// the status without the events that explain it (a restart recorded as done, say,
    /// without its `GameRestarted`).
    fn write_status_with_events(
        &self,
        id: ServerId,
        status: &ServerStatus,
        expected_rv: i64,
        fence: Option<Fence>,
        events: &[NewEvent],
    ) -> impl Future<Output = Result<Server>> + Send;
    fn set_paused(&self, id: ServerId, paused: bool)
    -> impl Future<Output = Result<Server>> + Send;
    /// Touch the row (change feed + notify); with `retry`, set `retry_requested_at`.
    fn request_reconcile(
        &self,
        id: ServerId,
        retry: bool,
    ) -> impl Future<Output = Result<Server>> + Send;
    /// Idempotent; records a `delete` operation (the existing one on repeats).
    fn request_deletion(
        &self,
        id: ServerId,
    ) -> impl Future<Output = Result<(Server, Operation)>> + Send;
    /// Move the row to the archive and delete it with its reservation and lease (operations
    /// and idempotency keys stay, pointing at the archive). Fenced like a status write.
    fn archive_and_delete(
        &self,
        id: ServerId,
        fence: Option<Fence>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn get_archived(&self, id: ServerId) -> impl Future<Output = Result<Option<Archived>>> + Send;

    // --- operations ------------------------------------------------------------------
    fn get_operation(
        &self,
        id: OperationId,
    ) -> impl Future<Output = Result<Option<Operation>>> + Send;

    // --- VMIDs -----------------------------------------------------------------------
    /// Reserve a VMID for the server in `range`, skipping `taken`, and record it on the server
    /// row in the same transaction. Idempotent: an existing reservation is returned unless
    /// `replace` is set (the reserved VMID turned out to be occupied by an intruder), in which
    /// case the old one is released and a new one reserved, atomically.
    fn reserve_vmid(
        &self,
        id: ServerId,
        range: VmidRange,
        taken: &[u32],
        replace: bool,
    ) -> impl Future<Output = Result<u32>> + Send;
    fn release_vmid(&self, id: ServerId) -> impl Future<Output = Result<()>> + Send;
    /// (vmid, server) for every reservation (invariant checks).
    fn list_reservations(&self) -> impl Future<Output = Result<Vec<(u32, ServerId)>>> + Send;

    // --- events ----------------------------------------------------------------------
    fn append_event(
        &self,
        id: ServerId,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Newest first.
    fn list_events(
        &self,
        id: ServerId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;

    // --- leases ----------------------------------------------------------------------
    /// Claim the server's lease for `holder` if free or expired (or already ours: renew).
    /// A new holder gets a larger fencing token than any before. `None`: held by another.
    fn claim_lease(
        &self,
        id: ServerId,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>>> + Send;
    /// Extend a lease we hold; `Fenced` if it was taken over.
    fn renew_lease(
        &self,
        id: ServerId,
        holder: &str,
        fence: Fence,
        ttl: Duration,
    ) -> impl Future<Output = Result<Lease>> + Send;
    /// Release (expire now) if still ours; a no-op otherwise.
    fn release_lease(
        &self,
        id: ServerId,
        holder: &str,
        fence: Fence,
    ) -> impl Future<Output = Result<()>> + Send;
    fn release_all_leases(&self, holder: &str) -> impl Future<Output = Result<u64>> + Send;

    /// A named fleet-wide singleton (batched resync, orphan scan), held by one replica at a
    /// time with expiry; `true` if `holder` has it now.
    fn try_singleton(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Give up a singleton `holder` has (a no-op otherwise), so another can take it at once.
    fn release_singleton(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    // --- change feed -----------------------------------------------------------------
    /// Final changes with `seq > after`, in position order (a watcher that saw N never later
    /// finds an unseen position below N; see [`feed`]). `FeedGone` when `after` is older
    /// than the oldest change kept (retention): re-read everything.
    fn changes_since(
        &self,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Change>>> + Send;
    fn latest_seq(&self) -> impl Future<Output = Result<i64>> + Send;

    /// Remove up to `batch` rows of what `what` names, in one short transaction; the number
    /// removed (fewer than `batch`: nothing more is due). Never touches a server row.
    fn prune(&self, what: Prune, batch: u32) -> impl Future<Output = Result<u64>> + Send;

    // --- customers and tokens --------------------------------------------------------
    /// The customer, or the defaults (active, default quota) if never set.
    fn get_customer(&self, id: &str) -> impl Future<Output = Result<Customer>> + Send;
    fn upsert_customer(
        &self,
        id: &str,
        quota: Option<Quota>,
        standing: Option<Standing>,
    ) -> impl Future<Output = Result<Customer>> + Send;
    fn create_token(
        &self,
        name: &str,
        hash: &str,
        role: Role,
        customer_id: Option<&str>,
    ) -> impl Future<Output = Result<ApiToken>> + Send;
    fn find_token(&self, hash: &str) -> impl Future<Output = Result<Option<ApiToken>>> + Send;
    /// The token with this id, `None` once revoked (a console session ends with 4401).
    fn get_token(&self, id: uuid::Uuid) -> impl Future<Output = Result<Option<ApiToken>>> + Send;

    // --- controller bookkeeping ------------------------------------------------------
    fn heartbeat(&self, info: &ReplicaInfo) -> impl Future<Output = Result<()>> + Send;
    /// Replicas seen within `alive_within`, with `leases_held` counted from unexpired leases.
    fn list_replicas(
        &self,
        alive_within: Duration,
    ) -> impl Future<Output = Result<Vec<ReplicaInfo>>> + Send;
    /// Replace the orphan report with this scan's findings (keeping `first_seen`).
    fn replace_orphans(&self, found: &[Orphan]) -> impl Future<Output = Result<()>> + Send;
    fn list_orphans(&self) -> impl Future<Output = Result<Vec<Orphan>>> + Send;

    // --- live detail (model/src/stats.rs) ----------------------------------------------
    /// Upsert samples in one transaction (one statement per `STATS_BATCH` servers); each
    /// part a sample carries replaces the stored one, the others stay. Never touches the
    /// server row: no `resource_version`, no change feed.
    fn write_stats(
        &self,
        samples: &[crate::ServerStats],
    ) -> impl Future<Output = Result<()>> + Send;
    /// The stored samples of `ids` (one query per page of ids; servers never sampled are
    /// missing), in no particular order.
    fn list_stats(
        &self,
        ids: &[ServerId],
    ) -> impl Future<Output = Result<Vec<crate::ServerStats>>> + Send;

    /// Readiness (`/readyz`): one small write, so a store that answers but cannot write is
    /// not ready.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    // --- token lifecycle and audit (issue 25) -------------------------------------------
    /// [`Store::create_token`] with an expiry (`None`: never).
    fn create_token_expiring(
        &self,
        name: &str,
        hash: &str,
        role: Role,
        customer_id: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<ApiToken>> + Send;
    /// Every token, revoked and expired ones included, oldest first.
    fn list_tokens(&self) -> impl Future<Output = Result<Vec<ApiToken>>> + Send;
    /// Revoke (idempotent: the first revocation's time stays); `NotFound` if no such token.
    fn revoke_token(&self, id: uuid::Uuid) -> impl Future<Output = Result<ApiToken>> + Send;
    /// Record a use at `at` unless one at or after `not_before` is already recorded (callers
    /// throttle; this keeps racing replicas to one write).
    fn touch_token(
        &self,
        id: uuid::Uuid,
        at: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Append an audit entry, stamped with the store's clock.
    fn record_audit(
        &self,
        entry: &crate::NewAudit,
    ) -> impl Future<Output = Result<crate::AuditEntry>> + Send;
    /// Newest first, at most `limit`.
    fn list_audit(
        &self,
        filter: &crate::AuditFilter,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<crate::AuditEntry>>> + Send;
    /// [`Store::request_reconcile`] for each of `ids`, each with the event `(reason,
    /// message)` (Normal), one short transaction per server (a transaction writes at most
    /// one feed change); servers gone meanwhile are skipped. Answers the ids done, which a
    /// failure part-way leaves as they are.
    fn request_reconcile_many(
        &self,
        ids: &[ServerId],
        retry: bool,
        event: (&str, &str),
    ) -> impl Future<Output = Result<Vec<ServerId>>> + Send;

    // --- Warm pools (docs/pools.md) --------------------------------------------------
    /// Reserve a new pool member (`cloning`) at a VMID of `range` (of the template's `kind`)
    /// not in `taken`, through the same free list as servers' reservations.
    fn reserve_pool_member(
        &self,
        new: &crate::NewPoolMember,
        kind: Kind,
        range: VmidRange,
        taken: &[u32],
    ) -> impl Future<Output = Result<crate::PoolMember>> + Send;
    /// Every member of every pool, by template, oldest first.
    fn list_pool_members(&self) -> impl Future<Output = Result<Vec<crate::PoolMember>>> + Send;
    /// Record the task in flight on a member in `state` (`None`: forget it). False when the
    /// member is gone or in another state.
    fn set_member_task(
        &self,
        vmid: u32,
        state: crate::MemberState,
        upid: Option<&str>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// A `cloning` member is cloned, stopped and tagged: `free`, claimable.
    fn member_ready(&self, vmid: u32) -> impl Future<Output = Result<bool>> + Send;
    /// Mark a member `retiring` (to be destroyed); false if it is gone (claimed) or already
    /// retiring.
    fn retire_member(&self, vmid: u32) -> impl Future<Output = Result<bool>> + Send;
    /// Forget a member whose container is gone; its VMID goes back to the free list.
    fn delete_pool_member(&self, vmid: u32) -> impl Future<Output = Result<bool>> + Send;
    /// Claim the oldest free member of `template`'s pool for server `id`, which has no VMID
    /// yet, in one transaction: the member row goes, its VMID becomes the server's
    /// reservation, and `status.progress.pool_claim` records it until the marker is
    /// rewritten. `None`: no free member (or the server already has a VMID, or is gone).
    fn claim_pool_member(
        &self,
        id: ServerId,
        template: u32,
    ) -> impl Future<Output = Result<Option<u32>>> + Send;
}
