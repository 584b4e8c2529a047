//! The SQL text both backends run (sqlx binds `$N` by number on SQLite too). What differs
//! per database (locking clauses, the feed's position, purges) is in each [`Backend`]
//! (`super::backend`) implementation.

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
// --- retention (`Store::prune`; `$1` the cutoff or the number kept, `$2` the batch) ------

/// The oldest changes before the cutoff; their positions come back to raise the horizon.
pub(crate) const PRUNE_CHANGES: &str = "DELETE FROM server_changes WHERE seq IN \
     (SELECT seq FROM server_changes WHERE at < $1 ORDER BY seq LIMIT $2) RETURNING seq";
pub(crate) const RAISE_PRUNED_THROUGH: &str =
    "UPDATE feed_state SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1";
pub(crate) const PRUNE_EVENTS_PER_SERVER: &str = "DELETE FROM events WHERE id IN \
     (SELECT id FROM (SELECT id, ROW_NUMBER() OVER \
        (PARTITION BY server_id ORDER BY last_seen DESC, id DESC) AS n FROM events) r \
      WHERE r.n > $1 LIMIT $2)";
pub(crate) const PRUNE_EVENTS: &str = "DELETE FROM events WHERE id IN \
     (SELECT id FROM events ORDER BY last_seen DESC, id DESC LIMIT $2 OFFSET $1)";
/// Finished: the server is gone, or a newer generation superseded the operation. (An
/// operation of the current generation may still be in progress: it stays.)
pub(crate) const PRUNE_OPERATIONS: &str = "DELETE FROM operations WHERE id IN \
     (SELECT o.id FROM operations o LEFT JOIN servers s ON s.id = o.server_id \
      WHERE o.created_at < $1 AND (s.id IS NULL OR o.generation < s.generation) \
      ORDER BY o.created_at LIMIT $2)";
/// Led by the archive (`servers_archive_deleted`, then `events_server_last_seen` per
/// server): the cost is the deleted servers' rows, not the size of `events`.
pub(crate) const PRUNE_EVENTS_OF_DELETED: &str = "DELETE FROM events WHERE id IN \
     (SELECT e.id FROM servers_archive a JOIN events e ON e.server_id = a.id \
      WHERE a.deleted_at < $1 LIMIT $2)";
pub(crate) const PRUNE_OPERATIONS_OF_DELETED: &str = "DELETE FROM operations WHERE id IN \
     (SELECT o.id FROM servers_archive a JOIN operations o ON o.server_id = a.id \
      WHERE a.deleted_at < $1 LIMIT $2)";
/// An archive row goes only once its events and operations have gone: it is what leads the
/// two prunes above to them.
pub(crate) const PRUNE_ARCHIVE: &str = "DELETE FROM servers_archive WHERE id IN \
     (SELECT a.id FROM servers_archive a WHERE a.deleted_at < $1 \
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.server_id = a.id) \
      AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.server_id = a.id) \
      ORDER BY a.deleted_at LIMIT $2)";

/// Every change at or below this position was pruned.
pub(crate) const FEED_PRUNED_THROUGH: &str = "SELECT pruned_through FROM feed_state WHERE id = 1";

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
/// Registers a range; a row back means it is new and its free VMIDs need filling.
pub(crate) const REGISTER_VMID_RANGE: &str = "INSERT INTO vmid_ranges (min_vmid, max_vmid) \
     VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING min_vmid";
/// Every VMID of `$1..=$2` not reserved, into the free list (once per range; again when it
/// looks exhausted).
pub(crate) const FILL_FREE_VMIDS: &str = "WITH RECURSIVE r(v) AS \
     (SELECT CAST($1 AS BIGINT) UNION ALL SELECT v + 1 FROM r WHERE v < $2) \
     INSERT INTO vmid_free (vmid) SELECT v FROM r \
     WHERE NOT EXISTS (SELECT 1 FROM vmid_reservations x WHERE x.vmid = r.v) \
     AND NOT EXISTS (SELECT 1 FROM pool_members p WHERE p.vmid = r.v) \
     ON CONFLICT DO NOTHING";
pub(crate) const TAKE_FREE_VMID: &str = "DELETE FROM vmid_free WHERE vmid = $1";
/// A released VMID goes back to the free list if a registered range holds it.
pub(crate) const FREE_VMID: &str = "INSERT INTO vmid_free (vmid) SELECT CAST($1 AS BIGINT) \
     WHERE EXISTS (SELECT 1 FROM vmid_ranges WHERE $1 BETWEEN min_vmid AND max_vmid) \
     ON CONFLICT DO NOTHING";
/// The server's reservation, removed; its VMID back.
pub(crate) const RELEASE_RESERVATION: &str =
    "DELETE FROM vmid_reservations WHERE server_id = $1 RETURNING vmid";
/// Does nothing when the VMID was taken meanwhile (a concurrent reserver waits for the
/// first to commit, then sees the conflict), so the caller just tries the next one.
/// A pool member's VMID is never reserved for a server (a stale free entry loses).
pub(crate) const INSERT_RESERVATION: &str = "INSERT INTO vmid_reservations \
     (vmid, server_id, reserved_at) SELECT CAST($1 AS BIGINT), $2, $3 \
     WHERE NOT EXISTS (SELECT 1 FROM pool_members p WHERE p.vmid = $1) \
     ON CONFLICT DO NOTHING RETURNING vmid";

// Warm pools (docs/pools.md).
/// A new member, `cloning`; loses to a server's reservation of the VMID like a reservation
/// loses to a member.
pub(crate) const INSERT_POOL_MEMBER: &str = "INSERT INTO pool_members \
     (vmid, id, template_vmid, node, state, upid, template_digest, template_version, \
     created_at, ready_at) \
     SELECT CAST($1 AS BIGINT), $2, $3, $4, 'cloning', NULL, $5, $6, $7, NULL \
     WHERE NOT EXISTS (SELECT 1 FROM vmid_reservations x WHERE x.vmid = $1) \
     ON CONFLICT DO NOTHING RETURNING vmid";
pub(crate) const LIST_POOL_MEMBERS: &str = "SELECT vmid, id, template_vmid, node, state, \
     upid, template_digest, template_version, created_at, ready_at \
     FROM pool_members ORDER BY template_vmid, created_at, vmid";
pub(crate) const SET_MEMBER_TASK: &str =
    "UPDATE pool_members SET upid = $2 WHERE vmid = $1 AND state = $3";
pub(crate) const MEMBER_READY: &str = "UPDATE pool_members SET state = 'free', upid = NULL, \
     ready_at = $2 WHERE vmid = $1 AND state = 'cloning'";
/// Only a member not yet claimed (a claim deletes the row, so it cannot race this).
pub(crate) const RETIRE_MEMBER: &str = "UPDATE pool_members SET state = 'retiring', upid = NULL \
     WHERE vmid = $1 AND state <> 'retiring'";
pub(crate) const DELETE_POOL_MEMBER: &str =
    "DELETE FROM pool_members WHERE vmid = $1 RETURNING vmid";
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
     (id, name, hash, role, customer_id, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
macro_rules! token_cols {
    () => {
        "id, name, hash, role, customer_id, created_at, last_used_at, expires_at, revoked_at"
    };
}
pub(crate) const SELECT_TOKEN_BY_HASH: &str =
    concat!("SELECT ", token_cols!(), " FROM api_tokens WHERE hash = $1");
pub(crate) const SELECT_TOKEN_BY_ID: &str =
    concat!("SELECT ", token_cols!(), " FROM api_tokens WHERE id = $1");

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

// --- token lifecycle and audit (issue 25) ----------------------------------------------------
pub(crate) const LIST_TOKENS: &str = concat!(
    "SELECT ",
    token_cols!(),
    " FROM api_tokens ORDER BY created_at, id"
);
/// The first revocation's time stays.
pub(crate) const REVOKE_TOKEN: &str =
    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1";
/// `$3`: written only if the stored last use is older (replicas racing write once).
pub(crate) const TOUCH_TOKEN: &str = "UPDATE api_tokens SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)";
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log \
     (at, actor, role, action, server_id, detail) VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq";
/// `$1`: no server filter; `$2` the server; `$3` actor; `$4` action; `$5` before; `$6` limit.
pub(crate) const LIST_AUDIT: &str = "SELECT seq, at, actor, role, action, server_id, detail \
     FROM audit_log WHERE ($1 OR server_id = $2) \
       AND (CAST($3 AS TEXT) IS NULL OR actor = $3) \
       AND (CAST($4 AS TEXT) IS NULL OR action = $4) \
       AND (CAST($5 AS BIGINT) IS NULL OR seq < $5) \
     ORDER BY seq DESC LIMIT $6";
/// Oldest first, at most `$2` rows recorded before `$1`.
pub(crate) const PRUNE_AUDIT: &str = "DELETE FROM audit_log WHERE seq IN \
     (SELECT seq FROM audit_log WHERE at < $1 ORDER BY seq LIMIT $2)";
