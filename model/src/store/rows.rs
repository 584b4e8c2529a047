//! Row types: what a query returns, and its conversion into the domain type (`FromRow` is
//! generic over the backend, so one type serves both).

use super::sql::err;
use super::*;
use crate::OperationKind;
use sqlx::types::Json;
use uuid::Uuid;

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("{}: {what}", err::CORRUPT))
}

pub(crate) fn vmid(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| corrupt(format!("vmid {v}")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct ServerRow {
    id: Uuid,
    customer_id: String,
    spec: Json<ServerSpec>,
    status: Json<ServerStatus>,
    generation: i64,
    resource_version: i64,
    reserved_vmid: Option<i64>,
    deletion_requested_at: Option<DateTime<Utc>>,
    paused: bool,
    retry_requested_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ServerRow> for Server {
    type Error = StoreError;
    fn try_from(r: ServerRow) -> Result<Server> {
        Ok(Server {
            id: ServerId(r.id),
            customer_id: r.customer_id,
            spec: r.spec.0,
            status: r.status.0,
            generation: r.generation,
            resource_version: r.resource_version,
            reserved_vmid: r.reserved_vmid.map(vmid).transpose()?,
            deletion_requested_at: r.deletion_requested_at,
            paused: r.paused,
            retry_requested_at: r.retry_requested_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub(crate) fn servers(rows: Vec<ServerRow>) -> Result<Vec<Server>> {
    rows.into_iter().map(Server::try_from).collect()
}

/// The denormalised columns of a server row, derived from the `Server`.
pub(crate) struct Denorm<'a> {
    pub kind: &'static str,
    pub memory_mib: i64,
    pub hostname: Option<&'a str>,
    pub status_vmid: Option<i64>,
    pub reserved_vmid: Option<i64>,
}

impl<'a> Denorm<'a> {
    pub fn of(s: &'a Server) -> Self {
        Denorm {
            kind: s.spec.kind.as_str(),
            memory_mib: i64::from(s.spec.resources.memory_mib),
            hostname: s.status.hostname.as_deref(),
            status_vmid: s.status.vmid.map(i64::from),
            reserved_vmid: s.reserved_vmid.map(i64::from),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ArchiveRow {
    server: Json<Server>,
    deleted_at: DateTime<Utc>,
}

impl From<ArchiveRow> for Archived {
    fn from(r: ArchiveRow) -> Archived {
        Archived {
            server: r.server.0,
            deleted_at: r.deleted_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OperationRow {
    id: Uuid,
    server_id: Uuid,
    generation: i64,
    kind: String,
    created_at: DateTime<Utc>,
}

pub(crate) fn op_kind(s: &str) -> Result<OperationKind> {
    [
        OperationKind::Create,
        OperationKind::Update,
        OperationKind::Delete,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
    .ok_or_else(|| corrupt(format!("operation kind '{s}'")))
}

impl TryFrom<OperationRow> for Operation {
    type Error = StoreError;
    fn try_from(r: OperationRow) -> Result<Operation> {
        Ok(Operation {
            id: OperationId(r.id),
            server_id: ServerId(r.server_id),
            generation: r.generation,
            kind: op_kind(&r.kind)?,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    pub request_hash: String,
    pub server_id: Uuid,
    pub operation_id: Uuid,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChangeRow {
    seq: i64,
    server_id: Uuid,
    kind: String,
    at: DateTime<Utc>,
    /// No change at a lower position can still commit.
    #[sqlx(rename = "final")]
    pub is_final: bool,
}

pub(crate) fn change_kind_str(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Upsert => "upsert",
        ChangeKind::Delete => "delete",
    }
}

impl ChangeRow {
    pub fn seq(&self) -> i64 {
        self.seq
    }
}

impl TryFrom<ChangeRow> for Change {
    type Error = StoreError;
    fn try_from(r: ChangeRow) -> Result<Change> {
        let kind = match r.kind.as_str() {
            "upsert" => ChangeKind::Upsert,
            "delete" => ChangeKind::Delete,
            o => return Err(corrupt(format!("change kind '{o}'"))),
        };
        Ok(Change {
            seq: r.seq,
            server_id: ServerId(r.server_id),
            kind,
            at: r.at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    server_id: Uuid,
    #[sqlx(rename = "type")]
    type_: String,
    reason: String,
    message: String,
    count: i64,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Event> {
        let type_ = [EventType::Normal, EventType::Warning]
            .into_iter()
            .find(|t| t.as_str() == r.type_)
            .ok_or_else(|| corrupt(format!("event type '{}'", r.type_)))?;
        Ok(Event {
            server_id: ServerId(r.server_id),
            type_,
            reason: r.reason,
            message: r.message,
            count: r.count,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct LeaseRow {
    pub holder: String,
    pub token: i64,
    pub expires_at: DateTime<Utc>,
    pub released: bool,
}

impl LeaseRow {
    /// Someone holds it now: not released and not expired.
    pub fn is_held(&self, now: DateTime<Utc>) -> bool {
        !self.released && self.expires_at > now
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CustomerRow {
    id: String,
    max_servers: i64,
    max_memory_mib: i64,
    /// NULL in rows written before these quotas existed (or by that release): the default.
    max_cores: Option<i64>,
    max_disk_gib: Option<i64>,
    standing: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<CustomerRow> for Customer {
    type Error = StoreError;
    fn try_from(r: CustomerRow) -> Result<Customer> {
        let d = Quota::default();
        Ok(Customer {
            quota: Quota {
                max_servers: u32::try_from(r.max_servers).map_err(corrupt)?,
                max_memory_mib: u64::try_from(r.max_memory_mib).map_err(corrupt)?,
                max_cores: r
                    .max_cores
                    .map_or(Ok(d.max_cores), u32::try_from)
                    .map_err(corrupt)?,
                max_disk_gib: r
                    .max_disk_gib
                    .map_or(Ok(d.max_disk_gib), u64::try_from)
                    .map_err(corrupt)?,
            },
            standing: r.standing.parse().map_err(corrupt)?,
            id: r.id,
            updated_at: r.updated_at,
        })
    }
}

/// Quota columns as stored, in `UPSERT_CUSTOMER` order (BIGINT; a u64 beyond i64 is clamped,
/// it means "unlimited").
pub(crate) fn quota_cols(q: &Quota) -> [i64; 4] {
    [
        i64::from(q.max_servers),
        i64::try_from(q.max_memory_mib).unwrap_or(i64::MAX),
        i64::from(q.max_cores),
        i64::try_from(q.max_disk_gib).unwrap_or(i64::MAX),
    ]
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: Uuid,
    name: String,
    hash: String,
    role: String,
    customer_id: Option<String>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<ApiToken> {
        Ok(ApiToken {
            id: r.id,
            name: r.name,
            hash: r.hash,
            role: r.role.parse().map_err(corrupt)?,
            customer_id: r.customer_id,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ReplicaRow {
    id: String,
    started_at: DateTime<Utc>,
    last_seen: DateTime<Utc>,
    queue_depth: i64,
    workers_busy: i64,
    leases_held: i64,
}

impl From<ReplicaRow> for ReplicaInfo {
    fn from(r: ReplicaRow) -> ReplicaInfo {
        ReplicaInfo {
            id: r.id,
            started_at: r.started_at,
            last_seen: r.last_seen,
            queue_depth: r.queue_depth,
            workers_busy: r.workers_busy,
            leases_held: r.leases_held,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrphanRow {
    vmid: i64,
    node: String,
    marker: String,
    name: Option<String>,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl TryFrom<OrphanRow> for Orphan {
    type Error = StoreError;
    fn try_from(r: OrphanRow) -> Result<Orphan> {
        Ok(Orphan {
            vmid: vmid(r.vmid)?,
            node: r.node,
            marker: r.marker,
            name: r.name,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PoolMemberRow {
    vmid: i64,
    id: Uuid,
    template_vmid: i64,
    node: String,
    state: String,
    upid: Option<String>,
    template_digest: String,
    template_version: Option<String>,
    created_at: DateTime<Utc>,
    ready_at: Option<DateTime<Utc>>,
}

impl TryFrom<PoolMemberRow> for crate::PoolMember {
    type Error = StoreError;
    fn try_from(r: PoolMemberRow) -> Result<crate::PoolMember> {
        let state = crate::MemberState::parse(&r.state)
            .ok_or_else(|| corrupt(format!("pool member state {:?}", r.state)))?;
        Ok(crate::PoolMember {
            vmid: vmid(r.vmid)?,
            template: vmid(r.template_vmid)?,
            node: r.node,
            state,
            id: r.id,
            upid: r.upid,
            template_digest: r.template_digest,
            template_version: r.template_version,
            created_at: r.created_at,
            ready_at: r.ready_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct StatsRow {
    server_id: Uuid,
    resources: Option<Json<crate::ResourceUsage>>,
    resources_seen_at: Option<DateTime<Utc>>,
    players: Option<Json<crate::Players>>,
    players_seen_at: Option<DateTime<Utc>>,
    agent: Option<Json<crate::AgentDetail>>,
    agent_seen_at: Option<DateTime<Utc>>,
}

impl From<StatsRow> for crate::ServerStats {
    fn from(r: StatsRow) -> Self {
        crate::ServerStats {
            server_id: ServerId(r.server_id),
            resources: r.resources.map(|j| j.0),
            resources_seen_at: r.resources_seen_at,
            players: r.players.map(|j| j.0),
            players_seen_at: r.players_seen_at,
            agent: r.agent.map(|j| j.0),
            agent_seen_at: r.agent_seen_at,
        }
    }
}

pub(crate) fn reservations(rows: Vec<(i64, Uuid)>) -> Result<Vec<(u32, ServerId)>> {
    rows.into_iter()
        .map(|(v, id)| Ok((vmid(v)?, ServerId(id))))
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    seq: i64,
    at: DateTime<Utc>,
    actor: String,
    role: String,
    action: String,
    server_id: Option<Uuid>,
    detail: String,
}

impl TryFrom<AuditRow> for crate::AuditEntry {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<crate::AuditEntry> {
        Ok(crate::AuditEntry {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            role: r.role.parse().map_err(corrupt)?,
            action: r.action,
            server_id: r.server_id.map(ServerId),
            detail: r.detail,
        })
    }
}
