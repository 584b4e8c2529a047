-- zlh schema, SQLite flavour. Ids are uuid v7 as 16-byte BLOBs; times are RFC 3339 TEXT in one
-- fixed-width form (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, written by the store from its clock), so
-- string comparison is time order. JSON is TEXT.

CREATE TABLE customers (
    id             TEXT PRIMARY KEY,
    max_servers    INTEGER NOT NULL,
    max_memory_mib INTEGER NOT NULL,
    standing       TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE servers (
    id                    BLOB PRIMARY KEY,
    customer_id           TEXT NOT NULL,
    -- Denormalised from spec/status for filters and quota sums.
    kind                  TEXT NOT NULL,
    memory_mib            INTEGER NOT NULL,
    hostname              TEXT,
    status_vmid           INTEGER,
    spec                  TEXT NOT NULL,
    status                TEXT NOT NULL,
    generation            INTEGER NOT NULL,
    resource_version      INTEGER NOT NULL,
    reserved_vmid         INTEGER,
    deletion_requested_at TEXT,
    paused                BOOLEAN NOT NULL,
    retry_requested_at    TEXT,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);
CREATE INDEX servers_customer ON servers (customer_id, id);
CREATE INDEX servers_hostname ON servers (hostname);
CREATE INDEX servers_reserved_vmid ON servers (reserved_vmid);
CREATE INDEX servers_status_vmid ON servers (status_vmid);

CREATE TABLE servers_archive (
    id          BLOB PRIMARY KEY,
    customer_id TEXT NOT NULL,
    server      TEXT NOT NULL,
    deleted_at  TEXT NOT NULL
);

-- Operations outlive their server (they point at the archive afterwards): no foreign key.
CREATE TABLE operations (
    id         BLOB PRIMARY KEY,
    server_id  BLOB NOT NULL,
    generation INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX operations_server ON operations (server_id, kind, created_at);

-- Inserted before its server row (the UNIQUE key decides who creates), so no foreign key.
CREATE TABLE idempotency_keys (
    customer_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    server_id    BLOB NOT NULL,
    operation_id BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_server ON idempotency_keys (server_id);

CREATE TABLE vmid_reservations (
    vmid        INTEGER PRIMARY KEY,
    server_id   BLOB NOT NULL UNIQUE REFERENCES servers (id) ON DELETE CASCADE,
    reserved_at TEXT NOT NULL
);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id  BLOB NOT NULL,
    type       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    message    TEXT NOT NULL,
    count      INTEGER NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    UNIQUE (server_id, type, reason, message)
);
CREATE INDEX events_server_last_seen ON events (server_id, last_seen);

-- One row per server for its whole life: `token` only grows (fencing), release just marks it.
CREATE TABLE leases (
    server_id  BLOB PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    holder     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    released   BOOLEAN NOT NULL
);
CREATE INDEX leases_holder ON leases (holder);

CREATE TABLE singletons (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- AUTOINCREMENT: a sequence number is never reused, even after the newest row is deleted.
CREATE TABLE server_changes (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    server_id BLOB NOT NULL,
    kind      TEXT NOT NULL,
    at        TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    customer_id TEXT,
    created_at  TEXT NOT NULL
);

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    queue_depth  INTEGER NOT NULL,
    workers_busy INTEGER NOT NULL
);

CREATE TABLE orphans (
    vmid       INTEGER PRIMARY KEY,
    node       TEXT NOT NULL,
    marker     TEXT NOT NULL,
    name       TEXT,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL
);
