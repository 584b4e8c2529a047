//! What both backends share: SQL text (sqlx binds `$N` by number on SQLite too), row types
//! (`FromRow` is generic over the backend) and the pure decisions (launch guard, quota, VMID
//! choice), so the two stores differ only in locking, time encoding and notification.

use super::*;
use crate::{OperationKind, Resources};
use sqlx::types::Json;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Messages of errors we raise ourselves.
pub(crate) mod err {
    pub const CORRUPT: &str = "corrupt row";
    pub const MISSING_AFTER_WRITE: &str = "row vanished inside its own transaction";
}

/// Longest event reason/message kept: events are unique on them and Postgres caps index
/// entries at about 2.7 kB.
pub(crate) const EVENT_REASON_MAX: usize = 128;
pub(crate) const EVENT_MESSAGE_MAX: usize = 1024;

/// Largest page `list_servers` returns.
pub(crate) const PAGE_MAX: u32 = 1000;

macro_rules! server_cols {
    () => {
        "id, customer_id, spec, status, generation, resource_version, reserved_vmid, \
         deletion_requested_at, paused, retry_requested_at, created_at, updated_at"
    };
}

pub(crate) const SELECT_SERVER: &str =
    concat!("SELECT ", server_cols!(), " FROM servers WHERE id = $1");
/// Postgres: lock the row for the rest of the transaction (SQLite's `BEGIN IMMEDIATE`
/// already holds the database write lock).
pub(crate) const SELECT_SERVER_FOR_UPDATE: &str = concat!(
    "SELECT ",
    server_cols!(),
    " FROM servers WHERE id = $1 FOR UPDATE"
);
/// Keyset page; a NULL filter parameter means "any". `$1` is the last id seen (nil uuid for
/// the first page, which sorts before every v7 id).
pub(crate) const LIST_SERVERS: &str = concat!(
    "SELECT ",
    server_cols!(),
    " FROM servers WHERE id > $1 \
       AND (CAST($2 AS TEXT) IS NULL OR customer_id = $2) \
       AND (CAST($3 AS TEXT) IS NULL OR kind = $3) \
       AND (CAST($4 AS TEXT) IS NULL OR hostname = $4) \
       AND (CAST($5 AS BIGINT) IS NULL OR reserved_vmid = $5 OR status_vmid = $5) \
     ORDER BY id LIMIT $6"
);
pub(crate) const CUSTOMER_LIVE_SERVERS: &str = concat!(
    "SELECT ",
    server_cols!(),
    " FROM servers WHERE customer_id = $1 AND deletion_requested_at IS NULL ORDER BY id"
);
pub(crate) const ALL_SERVER_IDS: &str = "SELECT id FROM servers ORDER BY id";
/// Binding order of [`INSERT_SERVER`] and [`UPDATE_SERVER`]: see `ServerParams`.
pub(crate) const INSERT_SERVER: &str = "INSERT INTO servers (id, customer_id, kind, memory_mib, \
     hostname, status_vmid, spec, status, generation, resource_version, reserved_vmid, \
     deletion_requested_at, paused, retry_requested_at, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
pub(crate) const UPDATE_SERVER: &str = "UPDATE servers SET customer_id = $2, kind = $3, \
     memory_mib = $4, hostname = $5, status_vmid = $6, spec = $7, status = $8, generation = $9, \
     resource_version = $10, reserved_vmid = $11, deletion_requested_at = $12, paused = $13, \
     retry_requested_at = $14, created_at = $15, updated_at = $16 WHERE id = $1";
pub(crate) const DELETE_SERVER: &str = "DELETE FROM servers WHERE id = $1";

pub(crate) const INSERT_ARCHIVE: &str =
    "INSERT INTO servers_archive (id, customer_id, server, deleted_at) VALUES ($1, $2, $3, $4)";
pub(crate) const SELECT_ARCHIVE: &str =
    "SELECT server, deleted_at FROM servers_archive WHERE id = $1";

pub(crate) const INSERT_CHANGE: &str =
    "INSERT INTO server_changes (server_id, kind, at) VALUES ($1, $2, $3) RETURNING seq";
pub(crate) const CHANGES_SINCE: &str = "SELECT seq, server_id, kind, at FROM server_changes \
     WHERE seq > $1 ORDER BY seq LIMIT $2";
pub(crate) const LATEST_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM server_changes";

pub(crate) const INSERT_OPERATION: &str = "INSERT INTO operations \
     (id, server_id, generation, kind, created_at) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const SELECT_OPERATION: &str =
    "SELECT id, server_id, generation, kind, created_at FROM operations WHERE id = $1";
/// The newest operation of the given kind for a server.
pub(crate) const LATEST_OPERATION_OF_KIND: &str = "SELECT id, server_id, generation, kind, \
     created_at FROM operations WHERE server_id = $1 AND kind = $2 \
     ORDER BY created_at DESC, id DESC LIMIT 1";
/// The newest create/update operation: the one a launch-guard replay hands back.
pub(crate) const LATEST_SPEC_OPERATION: &str = "SELECT id, server_id, generation, kind, \
     created_at FROM operations WHERE server_id = $1 AND kind <> 'delete' \
     ORDER BY created_at DESC, id DESC LIMIT 1";

/// Claims the key, or does nothing if someone has it (a concurrent claimer waits for the
/// first to commit). The UNIQUE key, not a prior read, decides who creates.
pub(crate) const CLAIM_IDEMPOTENCY_KEY: &str = "INSERT INTO idempotency_keys \
     (customer_id, key, request_hash, server_id, operation_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING server_id";
pub(crate) const SELECT_IDEMPOTENCY_KEY: &str = "SELECT request_hash, server_id, operation_id, \
     created_at FROM idempotency_keys WHERE customer_id = $1 AND key = $2";
/// An expired key found by a claim: it no longer names anything.
pub(crate) const DELETE_IDEMPOTENCY_KEY: &str =
    "DELETE FROM idempotency_keys WHERE customer_id = $1 AND key = $2";
/// Expired keys removed per keyed create (each backend has its own purge statement): bounded
/// work per request, while in steady state fewer than one key expires per create.
pub(crate) const IDEMPOTENCY_PURGE_BATCH: i64 = 100;

pub(crate) const SELECT_CUSTOMER: &str = "SELECT id, max_servers, max_memory_mib, max_cores, \
     max_disk_gib, standing, updated_at FROM customers WHERE id = $1";
pub(crate) const UPSERT_CUSTOMER: &str = "INSERT INTO customers \
     (id, max_servers, max_memory_mib, max_cores, max_disk_gib, standing, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (id) DO UPDATE SET max_servers = excluded.max_servers, \
     max_memory_mib = excluded.max_memory_mib, max_cores = excluded.max_cores, \
     max_disk_gib = excluded.max_disk_gib, standing = excluded.standing, \
     updated_at = excluded.updated_at";

pub(crate) const SELECT_RESERVATION: &str =
    "SELECT vmid FROM vmid_reservations WHERE server_id = $1";
pub(crate) const RESERVED_IN_RANGE: &str =
    "SELECT vmid FROM vmid_reservations WHERE vmid BETWEEN $1 AND $2 ORDER BY vmid";
/// Does nothing when the VMID was taken meanwhile (a concurrent reserver waits for the
/// first to commit, then sees the conflict), so the caller just tries the next one.
pub(crate) const INSERT_RESERVATION: &str = "INSERT INTO vmid_reservations \
     (vmid, server_id, reserved_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING vmid";
pub(crate) const DELETE_RESERVATION: &str = "DELETE FROM vmid_reservations WHERE server_id = $1";
pub(crate) const LIST_RESERVATIONS: &str =
    "SELECT vmid, server_id FROM vmid_reservations ORDER BY vmid";

pub(crate) const UPSERT_EVENT: &str = "INSERT INTO events \
     (server_id, type, reason, message, count, first_seen, last_seen) \
     VALUES ($1, $2, $3, $4, 1, $5, $5) \
     ON CONFLICT (server_id, type, reason, message) \
     DO UPDATE SET count = events.count + 1, last_seen = excluded.last_seen";
pub(crate) const LIST_EVENTS: &str = "SELECT server_id, type, reason, message, count, \
     first_seen, last_seen FROM events WHERE server_id = $1 \
     ORDER BY last_seen DESC, id DESC LIMIT $2";

pub(crate) const SELECT_LEASE: &str =
    "SELECT holder, token, expires_at, released FROM leases WHERE server_id = $1";
/// Postgres: a lease row another claimer is working on is skipped (→ not ours).
pub(crate) const SELECT_LEASE_SKIP_LOCKED: &str = "SELECT holder, token, expires_at, \
     released FROM leases WHERE server_id = $1 FOR UPDATE SKIP LOCKED";
pub(crate) const INSERT_LEASE: &str = "INSERT INTO leases \
     (server_id, holder, token, expires_at, released) VALUES ($1, $2, 1, $3, FALSE) \
     ON CONFLICT DO NOTHING RETURNING token";
pub(crate) const UPDATE_LEASE: &str = "UPDATE leases SET holder = $2, token = $3, \
     expires_at = $4, released = FALSE WHERE server_id = $1";
pub(crate) const RENEW_LEASE: &str = "UPDATE leases SET expires_at = $4 \
     WHERE server_id = $1 AND holder = $2 AND token = $3 AND NOT released";
pub(crate) const RELEASE_LEASE: &str = "UPDATE leases SET released = TRUE, expires_at = $4 \
     WHERE server_id = $1 AND holder = $2 AND token = $3 AND NOT released";
pub(crate) const RELEASE_ALL_LEASES: &str =
    "UPDATE leases SET released = TRUE, expires_at = $2 WHERE holder = $1 AND NOT released";
pub(crate) const DELETE_LEASE: &str = "DELETE FROM leases WHERE server_id = $1";

/// Returns a row only when `holder` has the singleton afterwards.
pub(crate) const TRY_SINGLETON: &str = "INSERT INTO singletons (name, holder, expires_at) \
     VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE \
     SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE singletons.holder = excluded.holder OR singletons.expires_at <= $4 \
     RETURNING holder";

pub(crate) const RELEASE_SINGLETON: &str =
    "UPDATE singletons SET expires_at = $3 WHERE name = $1 AND holder = $2";

pub(crate) const INSERT_TOKEN: &str = "INSERT INTO api_tokens \
     (id, name, hash, role, customer_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const SELECT_TOKEN_BY_HASH: &str = "SELECT id, name, hash, role, customer_id, \
     created_at FROM api_tokens WHERE hash = $1";
pub(crate) const SELECT_TOKEN_BY_ID: &str = "SELECT id, name, hash, role, customer_id, \
     created_at FROM api_tokens WHERE id = $1";

pub(crate) const UPSERT_REPLICA: &str = "INSERT INTO replicas \
     (id, started_at, last_seen, queue_depth, workers_busy) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET started_at = excluded.started_at, \
     last_seen = excluded.last_seen, queue_depth = excluded.queue_depth, \
     workers_busy = excluded.workers_busy";
/// `$1`: seen since; `$2`: now (a lease counts while unexpired and not released).
pub(crate) const LIST_REPLICAS: &str = "SELECT r.id, r.started_at, r.last_seen, r.queue_depth, \
     r.workers_busy, (SELECT COUNT(*) FROM leases l \
        WHERE l.holder = r.id AND NOT l.released AND l.expires_at > $2) AS leases_held \
     FROM replicas r WHERE r.last_seen >= $1 ORDER BY r.id";

pub(crate) const UPSERT_ORPHAN: &str = "INSERT INTO orphans \
     (vmid, node, marker, name, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (vmid) DO UPDATE SET node = excluded.node, marker = excluded.marker, \
     name = excluded.name, last_seen = excluded.last_seen";
pub(crate) const ORPHAN_VMIDS: &str = "SELECT vmid FROM orphans";
pub(crate) const DELETE_ORPHAN: &str = "DELETE FROM orphans WHERE vmid = $1";
pub(crate) const LIST_ORPHANS: &str =
    "SELECT vmid, node, marker, name, first_seen, last_seen FROM orphans ORDER BY vmid";

/// A write, not a `SELECT 1`: a store that answers but cannot write (disk full, read-only,
/// a standby) is not ready.
/// Head of the batched stats upsert: `push_values` adds the rows. Each part is replaced only
/// when the row carries it (a resync without a probe keeps the last players seen).
pub(crate) const UPSERT_STATS_HEAD: &str = "INSERT INTO server_stats (server_id, resources, \
     resources_seen_at, players, players_seen_at, agent, agent_seen_at) ";
pub(crate) const UPSERT_STATS_TAIL: &str = " ON CONFLICT (server_id) DO UPDATE SET \
     resources = COALESCE(excluded.resources, server_stats.resources), \
     resources_seen_at = COALESCE(excluded.resources_seen_at, server_stats.resources_seen_at), \
     players = COALESCE(excluded.players, server_stats.players), \
     players_seen_at = COALESCE(excluded.players_seen_at, server_stats.players_seen_at), \
     agent = COALESCE(excluded.agent, server_stats.agent), \
     agent_seen_at = COALESCE(excluded.agent_seen_at, server_stats.agent_seen_at)";
/// Rows per upsert statement: 7 parameters each stays under SQLite's 32766 and Postgres's
/// 65535 bind limits; a fleet larger than this takes one statement per this many servers.
pub(crate) const STATS_BATCH: usize = 4000;
/// Head of the batched stats read: `separated` adds the ids, then `)`.
pub(crate) const SELECT_STATS_HEAD: &str = "SELECT server_id, resources, resources_seen_at, \
     players, players_seen_at, agent, agent_seen_at FROM server_stats WHERE server_id IN (";
pub(crate) const DELETE_STATS: &str = "DELETE FROM server_stats WHERE server_id = $1";

pub(crate) const PROBE_WRITE: &str = "INSERT INTO store_probe (id, at) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET at = excluded.at";

// --- rows --------------------------------------------------------------------------------

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("{}: {what}", err::CORRUPT))
}

fn vmid(v: i64) -> Result<u32> {
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

pub(crate) fn new_operation(
    server_id: ServerId,
    generation: i64,
    kind: OperationKind,
    now: DateTime<Utc>,
) -> Operation {
    Operation {
        id: OperationId::new(),
        server_id,
        generation,
        kind,
        created_at: now,
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct IdempotencyRow {
    pub request_hash: String,
    pub server_id: Uuid,
    pub operation_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// Keys created before this are expired: they neither replay nor conflict.
pub(crate) fn idempotency_cutoff(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| now.checked_sub_signed(r))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[derive(sqlx::FromRow)]
pub(crate) struct ChangeRow {
    seq: i64,
    server_id: Uuid,
    kind: String,
    at: DateTime<Utc>,
}

pub(crate) fn change_kind_str(k: ChangeKind) -> &'static str {
    match k {
        ChangeKind::Upsert => "upsert",
        ChangeKind::Delete => "delete",
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

/// At most `max` bytes, cut at a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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

/// What `claim_lease` does with the existing lease row.
pub(crate) enum ClaimDecision {
    /// Held by someone else.
    Refuse,
    /// Ours already: extend, same token.
    Renew(i64),
    /// Free or expired: take it over with the next token.
    TakeOver(i64),
}

pub(crate) fn claim_decision(row: &LeaseRow, holder: &str, now: DateTime<Utc>) -> ClaimDecision {
    if row.is_held(now) {
        if row.holder == holder {
            ClaimDecision::Renew(row.token)
        } else {
            ClaimDecision::Refuse
        }
    } else {
        ClaimDecision::TakeOver(row.token + 1)
    }
}

/// A status write or archive with `fence` may proceed only if the fence is the newest token
/// and that lease was not released. An expired but unreleased lease still fences correctly:
/// nobody newer has claimed it (a claim would have bumped the token).
pub(crate) fn check_fence(lease: Option<&LeaseRow>, fence: Option<Fence>) -> Result<()> {
    match fence {
        None => Ok(()),
        Some(f) => match lease {
            Some(l) if l.token == f.token && !l.released => Ok(()),
            _ => Err(StoreError::Fenced),
        },
    }
}

pub(crate) fn lease_of(
    server_id: ServerId,
    holder: &str,
    token: i64,
    expires_at: DateTime<Utc>,
) -> Lease {
    Lease {
        server_id,
        holder: holder.to_owned(),
        token,
        expires_at,
    }
}

pub(crate) fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX / 2)
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

pub(crate) fn default_customer(id: &str, now: DateTime<Utc>) -> Customer {
    Customer {
        id: id.to_owned(),
        quota: Quota::default(),
        standing: Standing::Active,
        updated_at: now,
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

/// Stored orphans not in this scan's findings.
pub(crate) fn vanished_orphans(stored: &[i64], found: &[Orphan]) -> Vec<i64> {
    let found: BTreeSet<i64> = found.iter().map(|o| i64::from(o.vmid)).collect();
    stored
        .iter()
        .copied()
        .filter(|v| !found.contains(v))
        .collect()
}

pub(crate) fn reservations(rows: Vec<(i64, Uuid)>) -> Result<Vec<(u32, ServerId)>> {
    rows.into_iter()
        .map(|(v, id)| Ok((vmid(v)?, ServerId(id))))
        .collect()
}

// --- decisions ---------------------------------------------------------------------------

/// The lowest VMID in `range` that is in neither set.
pub(crate) fn pick_vmid(range: VmidRange, skip: &BTreeSet<u32>, reserved: &[i64]) -> Option<u32> {
    let reserved: BTreeSet<i64> = reserved.iter().copied().collect();
    (range.min..=range.max).find(|v| !skip.contains(v) && !reserved.contains(&i64::from(*v)))
}

pub(crate) fn range_exhausted(kind: Kind, range: VmidRange) -> StoreError {
    StoreError::RangeExhausted {
        kind,
        min: range.min,
        max: range.max,
    }
}

/// "In progress" for the no-key launch guard: not deleting, not Ready, not failed.
pub(crate) fn in_progress(s: &Server) -> bool {
    matches!(
        s.phase().0,
        Phase::Queued | Phase::Provisioning | Phase::Degraded
    )
}

/// The customer's in-progress server the guard applies to: one with an identical spec if
/// any (a replay), else any other (a conflict).
pub(crate) fn guard_match<'a>(live: &'a [Server], spec: &ServerSpec) -> Option<&'a Server> {
    let mut busy = live.iter().filter(|s| in_progress(s));
    let first = busy.clone().next();
    busy.find(|s| &s.spec == spec).or(first)
}

fn check_standing(customer: &Customer) -> Result<()> {
    if customer.standing != Standing::Active {
        return Err(StoreError::CustomerNotActive {
            customer: customer.id.clone(),
            standing: customer.standing,
        });
    }
    Ok(())
}

/// The summed resources a quota bounds: (what, unit, the amount in `r`, the quota's maximum).
fn dimensions(r: &Resources, q: &Quota) -> [(&'static str, &'static str, u64, u64); 3] {
    [
        (
            msg::QUOTA_MEMORY,
            " MiB",
            u64::from(r.memory_mib),
            q.max_memory_mib,
        ),
        (
            msg::QUOTA_CORES,
            "",
            u64::from(r.cores),
            u64::from(q.max_cores),
        ),
        (
            msg::QUOTA_DISK,
            " GiB",
            u64::from(r.disk_gib),
            q.max_disk_gib,
        ),
    ]
}

/// Each summed resource of `others` plus `want` must fit the quota; only the dimensions
/// `check` selects are checked.
fn check_sums(
    customer: &Customer,
    others: &[&Server],
    want: &Resources,
    check: impl Fn(usize) -> bool,
) -> Result<()> {
    let mut used = [0u64; 3];
    for s in others {
        for (i, (.., n, _)) in dimensions(&s.spec.resources, &customer.quota)
            .into_iter()
            .enumerate()
        {
            used[i] += n;
        }
    }
    for (i, (what, unit, want, max)) in dimensions(want, &customer.quota).into_iter().enumerate() {
        if check(i) && used[i] + want > max {
            return Err(StoreError::QuotaExceeded(format!(
                "customer {} uses {}{unit} of {max}{unit} {what}; {want}{unit} {}",
                customer.id,
                used[i],
                msg::QUOTA_DOES_NOT_FIT
            )));
        }
    }
    Ok(())
}

/// Standing and quota for one more server with `spec`, given the customer's live servers.
pub(crate) fn check_quota(customer: &Customer, live: &[Server], spec: &ServerSpec) -> Result<()> {
    check_standing(customer)?;
    let q = customer.quota;
    let count = live.len() as u64;
    if count >= u64::from(q.max_servers) {
        return Err(StoreError::QuotaExceeded(format!(
            "customer {} already has {count} of at most {} servers",
            customer.id, q.max_servers
        )));
    }
    let others: Vec<&Server> = live.iter().collect();
    check_sums(customer, &others, &spec.resources, |_| true)
}

/// Standing and quota for `server`'s spec becoming `spec`, given the customer's live servers
/// (which may include `server`). Only resources that grow are checked: a change that grows
/// nothing (power, restarts, a smaller plan) is never refused, even over a lowered quota.
pub(crate) fn check_update_quota(
    customer: &Customer,
    live: &[Server],
    server: &Server,
    spec: &ServerSpec,
) -> Result<()> {
    check_standing(customer)?;
    let others: Vec<&Server> = live.iter().filter(|s| s.id != server.id).collect();
    let old = dimensions(&server.spec.resources, &customer.quota);
    let new = dimensions(&spec.resources, &customer.quota);
    check_sums(customer, &others, &spec.resources, |i| new[i].2 > old[i].2)
}

/// A fresh server row as `create_server` writes it (resource_version set by the caller).
pub(crate) fn new_server(
    id: ServerId,
    customer_id: &str,
    spec: ServerSpec,
    now: DateTime<Utc>,
) -> Server {
    Server {
        id,
        customer_id: customer_id.to_owned(),
        spec,
        generation: 1,
        resource_version: 0,
        reserved_vmid: None,
        deletion_requested_at: None,
        paused: false,
        retry_requested_at: None,
        created_at: now,
        updated_at: now,
        status: ServerStatus::default(),
    }
}

/// Keyset paging with a phase filter applied in Rust: `fetch(after, n)` returns up to `n`
/// rows after `after`; keep fetching until `limit` matches (plus one, to know whether more
/// exist) or the rows run out.
pub(crate) async fn page_servers<F, Fut>(
    phase: Option<Phase>,
    page: PageRequest,
    mut fetch: F,
) -> Result<Page<Server>>
where
    F: FnMut(Uuid, i64) -> Fut,
    Fut: Future<Output = Result<Vec<Server>>>,
{
    let limit = page.limit.clamp(1, PAGE_MAX) as usize;
    // Without a phase filter one fetch of limit+1 answers; with one, read bigger batches.
    let batch = if phase.is_some() {
        (limit + 1).max(100)
    } else {
        limit + 1
    };
    let mut after = page.after.map_or(Uuid::nil(), |a| a.0);
    let mut items = Vec::with_capacity(limit + 1);
    loop {
        let rows = fetch(after, batch as i64).await?;
        let exhausted = rows.len() < batch;
        if let Some(last) = rows.last() {
            after = last.id.0;
        }
        items.extend(
            rows.into_iter()
                .filter(|s| phase.is_none_or(|p| s.phase().0 == p)),
        );
        if items.len() > limit || exhausted {
            break;
        }
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|s| s.id)
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Hide a URL's password in a message (a connect error may echo its input).
pub(crate) fn scrub(msg: String, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => msg.replace(p, "***"),
        None => msg,
    }
}

pub(crate) fn connect_error(e: sqlx::Error, url: &str) -> StoreError {
    StoreError::Database(scrub(e.to_string(), url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_the_password() {
        let url = "postgres://zlh:s3cret@db.example:5432/zlh";
        assert_eq!(
            scrub(format!("failed: {url}"), url),
            "failed: postgres://zlh:***@db.example:5432/zlh"
        );
        assert_eq!(scrub("plain".into(), "sqlite:zlh.db"), "plain");
    }

    #[test]
    fn pick_vmid_takes_the_lowest_free() {
        let r = VmidRange { min: 100, max: 104 };
        let skip: BTreeSet<u32> = [100].into();
        assert_eq!(pick_vmid(r, &skip, &[101, 103]), Some(102));
        assert_eq!(pick_vmid(r, &skip, &[101, 102, 103, 104]), None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
