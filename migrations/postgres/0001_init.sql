-- zlh schema, PostgreSQL flavour. Ids are UUID, times TIMESTAMPTZ (written by the store from
-- its clock, never now()), JSON is JSONB.

CREATE TABLE customers (
    id             TEXT PRIMARY KEY,
    max_servers    BIGINT NOT NULL,
    max_memory_mib BIGINT NOT NULL,
    standing       TEXT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);

CREATE TABLE servers (
    id                    UUID PRIMARY KEY,
    customer_id           TEXT NOT NULL,
    -- Denormalised from spec/status for filters and quota sums.
    kind                  TEXT NOT NULL,
    memory_mib            BIGINT NOT NULL,
    hostname              TEXT,
    status_vmid           BIGINT,
    spec                  JSONB NOT NULL,
    status                JSONB NOT NULL,
    generation            BIGINT NOT NULL,
    resource_version      BIGINT NOT NULL,
    reserved_vmid         BIGINT,
    deletion_requested_at TIMESTAMPTZ,
    paused                BOOLEAN NOT NULL,
    retry_requested_at    TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL
);
CREATE INDEX servers_customer ON servers (customer_id, id);
CREATE INDEX servers_hostname ON servers (hostname);
CREATE INDEX servers_reserved_vmid ON servers (reserved_vmid);
CREATE INDEX servers_status_vmid ON servers (status_vmid);

CREATE TABLE servers_archive (
    id          UUID PRIMARY KEY,
    customer_id TEXT NOT NULL,
    server      JSONB NOT NULL,
    deleted_at  TIMESTAMPTZ NOT NULL
);

-- Operations outlive their server (they point at the archive afterwards): no foreign key.
CREATE TABLE operations (
    id         UUID PRIMARY KEY,
    server_id  UUID NOT NULL,
    generation BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX operations_server ON operations (server_id, kind, created_at);

-- Inserted before its server row (the UNIQUE key decides who creates), so no foreign key.
CREATE TABLE idempotency_keys (
    customer_id  TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    server_id    UUID NOT NULL,
    operation_id UUID NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_server ON idempotency_keys (server_id);

CREATE TABLE vmid_reservations (
    vmid        BIGINT PRIMARY KEY,
    server_id   UUID NOT NULL UNIQUE REFERENCES servers (id) ON DELETE CASCADE,
    reserved_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE events (
    id         BIGSERIAL PRIMARY KEY,
    server_id  UUID NOT NULL,
    type       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    message    TEXT NOT NULL,
    count      BIGINT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL,
    UNIQUE (server_id, type, reason, message)
);
CREATE INDEX events_server_last_seen ON events (server_id, last_seen);

-- One row per server for its whole life: `token` only grows (fencing), release just marks it.
CREATE TABLE leases (
    server_id  UUID PRIMARY KEY REFERENCES servers (id) ON DELETE CASCADE,
    holder     TEXT NOT NULL,
    token      BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    released   BOOLEAN NOT NULL
);
CREATE INDEX leases_holder ON leases (holder);

CREATE TABLE singletons (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- BIGSERIAL with an advisory lock around allocation (see the store): seqs commit in order.
CREATE TABLE server_changes (
    seq       BIGSERIAL PRIMARY KEY,
    server_id UUID NOT NULL,
    kind      TEXT NOT NULL,
    at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_tokens (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    hash        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    customer_id TEXT,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    last_seen    TIMESTAMPTZ NOT NULL,
    queue_depth  BIGINT NOT NULL,
    workers_busy BIGINT NOT NULL
);

CREATE TABLE orphans (
    vmid       BIGINT PRIMARY KEY,
    node       TEXT NOT NULL,
    marker     TEXT NOT NULL,
    name       TEXT,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL
);
