//! The store chosen at run time from the URL.
use super::*;
use crate::Clock;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Why a URL was refused (never echoes the URL: it may hold a password).
const UNSUPPORTED_URL: &str =
    "unsupported database URL scheme (expected sqlite:, postgres: or postgresql:)";

#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Pg(PgStore),
}

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Pg($s) => $e,
        }
    };
}

impl AnyStore {
    /// Connect by scheme: `sqlite:` or `postgres:`/`postgresql:`, with the default pool.
    /// Does not migrate.
    pub async fn connect(url: &str, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::connect_with(url, clock, &StoreOptions::default()).await
    }

    /// [`connect`](Self::connect) with the pool size and timeouts of `opts`.
    pub async fn connect_with(
        url: &str,
        clock: Arc<dyn Clock>,
        opts: &StoreOptions,
    ) -> Result<Self> {
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("sqlite") => Ok(AnyStore::Sqlite(
                SqliteStore::connect_with(url, clock, opts).await?,
            )),
            Some("postgres" | "postgresql") => {
                Ok(AnyStore::Pg(PgStore::connect_with(url, clock, opts).await?))
            }
            _ => Err(StoreError::Database(UNSUPPORTED_URL.into())),
        }
    }

    /// The same database and notices through a pool of its own of `opts.max_connections`
    /// (opened as needed): in `serve` the API's, so API clients can never hold the
    /// controller's connections. An in-memory SQLite database is one pool's, so it is shared.
    pub fn with_own_pool(&self, opts: &StoreOptions) -> Self {
        match self {
            AnyStore::Sqlite(s) => AnyStore::Sqlite(s.with_own_pool(opts)),
            AnyStore::Pg(s) => AnyStore::Pg(s.with_own_pool(opts)),
        }
    }

    /// Notices of server writes (see [`notify`](super::notify)).
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        dispatch!(self, s => s.subscribe())
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        dispatch!(self, s => s.backend())
    }

    /// The SQLite database file (for the single-controller lock); `None` on Postgres or
    /// in memory.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        dispatch!(self, s => s.sqlite_path())
    }
}

impl Store for AnyStore {
    async fn create_server(&self, new: NewServer) -> Result<Created> {
        dispatch!(self, s => s.create_server(new).await)
    }
    async fn get_server(&self, id: ServerId) -> Result<Option<Server>> {
        dispatch!(self, s => s.get_server(id).await)
    }
    async fn list_servers(&self, filter: &ServerFilter, page: PageRequest) -> Result<Page<Server>> {
        dispatch!(self, s => s.list_servers(filter, page).await)
    }
    async fn all_server_ids(&self) -> Result<Vec<ServerId>> {
        dispatch!(self, s => s.all_server_ids().await)
    }
    async fn update_spec(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
    ) -> Result<(Server, Operation)> {
        dispatch!(self, s => s.update_spec(id, spec, expected_rv).await)
    }
    async fn update_spec_within_quota(
        &self,
        id: ServerId,
        spec: ServerSpec,
        expected_rv: Option<i64>,
    ) -> Result<(Server, Operation)> {
        dispatch!(self, s => s.update_spec_within_quota(id, spec, expected_rv).await)
    }
    async fn write_status_with_events(
        &self,
        id: ServerId,
        status: &ServerStatus,
        expected_rv: i64,
        fence: Option<Fence>,
        events: &[NewEvent],
    ) -> Result<Server> {
        dispatch!(self, s => s.write_status_with_events(id, status, expected_rv, fence, events).await)
    }
    async fn set_paused(&self, id: ServerId, paused: bool) -> Result<Server> {
        dispatch!(self, s => s.set_paused(id, paused).await)
    }
    async fn request_reconcile(&self, id: ServerId, retry: bool) -> Result<Server> {
        dispatch!(self, s => s.request_reconcile(id, retry).await)
    }
    async fn request_deletion(&self, id: ServerId) -> Result<(Server, Operation)> {
        dispatch!(self, s => s.request_deletion(id).await)
    }
    async fn archive_and_delete(&self, id: ServerId, fence: Option<Fence>) -> Result<()> {
        dispatch!(self, s => s.archive_and_delete(id, fence).await)
    }
    async fn get_archived(&self, id: ServerId) -> Result<Option<Archived>> {
        dispatch!(self, s => s.get_archived(id).await)
    }
    async fn get_operation(&self, id: OperationId) -> Result<Option<Operation>> {
        dispatch!(self, s => s.get_operation(id).await)
    }
    async fn reserve_vmid(
        &self,
        id: ServerId,
        range: VmidRange,
        taken: &[u32],
        replace: bool,
    ) -> Result<u32> {
        dispatch!(self, s => s.reserve_vmid(id, range, taken, replace).await)
    }
    async fn release_vmid(&self, id: ServerId) -> Result<()> {
        dispatch!(self, s => s.release_vmid(id).await)
    }
    async fn list_reservations(&self) -> Result<Vec<(u32, ServerId)>> {
        dispatch!(self, s => s.list_reservations().await)
    }
    async fn append_event(
        &self,
        id: ServerId,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<()> {
        dispatch!(self, s => s.append_event(id, type_, reason, message).await)
    }
    async fn list_events(&self, id: ServerId, limit: u32) -> Result<Vec<Event>> {
        dispatch!(self, s => s.list_events(id, limit).await)
    }
    async fn claim_lease(
        &self,
        id: ServerId,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        dispatch!(self, s => s.claim_lease(id, holder, ttl).await)
    }
    async fn renew_lease(
        &self,
        id: ServerId,
        holder: &str,
        fence: Fence,
        ttl: Duration,
    ) -> Result<Lease> {
        dispatch!(self, s => s.renew_lease(id, holder, fence, ttl).await)
    }
    async fn release_lease(&self, id: ServerId, holder: &str, fence: Fence) -> Result<()> {
        dispatch!(self, s => s.release_lease(id, holder, fence).await)
    }
    async fn release_all_leases(&self, holder: &str) -> Result<u64> {
        dispatch!(self, s => s.release_all_leases(holder).await)
    }
    async fn try_singleton(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        dispatch!(self, s => s.try_singleton(name, holder, ttl).await)
    }
    async fn release_singleton(&self, name: &str, holder: &str) -> Result<()> {
        dispatch!(self, s => s.release_singleton(name, holder).await)
    }

    async fn changes_since(&self, after: i64, limit: u32) -> Result<Vec<Change>> {
        dispatch!(self, s => s.changes_since(after, limit).await)
    }
    async fn latest_seq(&self) -> Result<i64> {
        dispatch!(self, s => s.latest_seq().await)
    }
    async fn prune(&self, what: Prune, batch: u32) -> Result<u64> {
        dispatch!(self, s => s.prune(what, batch).await)
    }
    async fn get_customer(&self, id: &str) -> Result<Customer> {
        dispatch!(self, s => s.get_customer(id).await)
    }
    async fn upsert_customer(
        &self,
        id: &str,
        quota: Option<Quota>,
        standing: Option<Standing>,
    ) -> Result<Customer> {
        dispatch!(self, s => s.upsert_customer(id, quota, standing).await)
    }
    async fn create_token(
        &self,
        name: &str,
        hash: &str,
        role: Role,
        customer_id: Option<&str>,
    ) -> Result<ApiToken> {
        dispatch!(self, s => s.create_token(name, hash, role, customer_id).await)
    }
    async fn find_token(&self, hash: &str) -> Result<Option<ApiToken>> {
        dispatch!(self, s => s.find_token(hash).await)
    }
    async fn get_token(&self, id: uuid::Uuid) -> Result<Option<ApiToken>> {
        dispatch!(self, s => s.get_token(id).await)
    }
    async fn heartbeat(&self, info: &ReplicaInfo) -> Result<()> {
        dispatch!(self, s => s.heartbeat(info).await)
    }
    async fn list_replicas(&self, alive_within: Duration) -> Result<Vec<ReplicaInfo>> {
        dispatch!(self, s => s.list_replicas(alive_within).await)
    }
    async fn replace_orphans(&self, found: &[Orphan]) -> Result<()> {
        dispatch!(self, s => s.replace_orphans(found).await)
    }
    async fn list_orphans(&self) -> Result<Vec<Orphan>> {
        dispatch!(self, s => s.list_orphans().await)
    }
    async fn write_stats(&self, samples: &[crate::ServerStats]) -> Result<()> {
        dispatch!(self, s => s.write_stats(samples).await)
    }
    async fn list_stats(&self, ids: &[ServerId]) -> Result<Vec<crate::ServerStats>> {
        dispatch!(self, s => s.list_stats(ids).await)
    }
    async fn ping(&self) -> Result<()> {
        dispatch!(self, s => s.ping().await)
    }
    async fn create_token_expiring(
        &self,
        name: &str,
        hash: &str,
        role: Role,
        customer_id: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<ApiToken> {
        dispatch!(self, s => s.create_token_expiring(name, hash, role, customer_id, expires_at).await)
    }
    async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        dispatch!(self, s => s.list_tokens().await)
    }
    async fn revoke_token(&self, id: uuid::Uuid) -> Result<ApiToken> {
        dispatch!(self, s => s.revoke_token(id).await)
    }
    async fn touch_token(
        &self,
        id: uuid::Uuid,
        at: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Result<()> {
        dispatch!(self, s => s.touch_token(id, at, not_before).await)
    }
    async fn record_audit(&self, entry: &crate::NewAudit) -> Result<crate::AuditEntry> {
        dispatch!(self, s => s.record_audit(entry).await)
    }
    async fn list_audit(
        &self,
        filter: &crate::AuditFilter,
        limit: u32,
    ) -> Result<Vec<crate::AuditEntry>> {
        dispatch!(self, s => s.list_audit(filter, limit).await)
    }
    async fn request_reconcile_many(
        &self,
        ids: &[ServerId],
        retry: bool,
        event: (&str, &str),
    ) -> Result<Vec<ServerId>> {
        dispatch!(self, s => s.request_reconcile_many(ids, retry, event).await)
    }
    async fn reserve_pool_member(
        &self,
        new: &crate::NewPoolMember,
        kind: Kind,
        range: VmidRange,
        taken: &[u32],
    ) -> Result<crate::PoolMember> {
        dispatch!(self, s => s.reserve_pool_member(new, kind, range, taken).await)
    }
    async fn list_pool_members(&self) -> Result<Vec<crate::PoolMember>> {
        dispatch!(self, s => s.list_pool_members().await)
    }
    async fn set_member_task(
        &self,
        vmid: u32,
        state: crate::MemberState,
        upid: Option<&str>,
    ) -> Result<bool> {
        dispatch!(self, s => s.set_member_task(vmid, state, upid).await)
    }
    async fn member_ready(&self, vmid: u32) -> Result<bool> {
        dispatch!(self, s => s.member_ready(vmid).await)
    }
    async fn retire_member(&self, vmid: u32) -> Result<bool> {
        dispatch!(self, s => s.retire_member(vmid).await)
    }
    async fn delete_pool_member(&self, vmid: u32) -> Result<bool> {
        dispatch!(self, s => s.delete_pool_member(vmid).await)
    }
    async fn claim_pool_member(&self, id: ServerId, template: u32) -> Result<Option<u32>> {
        dispatch!(self, s => s.claim_pool_member(id, template).await)
    }
}
