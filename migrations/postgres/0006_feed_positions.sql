-- The change feed without a global lock (docs/store.md, "The change feed"). A change's
-- position (`seq`, which is also the row's resource_version) is its writing transaction's id
-- (`pg_current_xact_id()`, 64-bit, never wraps) plus a fixed shift, so positions written
-- before this migration stay below every new one. Readers deliver only positions below the
-- oldest transaction still in progress: those are final. One change per transaction (the
-- primary key says so).
--
-- Additive for the previous release: its inserts name no `seq`, so they take the new default
-- and its advisory lock only orders its own writers.
CREATE TABLE feed_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    -- Added to a transaction id to make a position.
    shift          BIGINT NOT NULL,
    -- Every change at or below this position has been pruned (retention); 0: none.
    pruned_through BIGINT NOT NULL
);
INSERT INTO feed_state (id, shift, pruned_through)
SELECT 1, GREATEST(0, COALESCE(MAX(seq), 0) + 1 - pg_current_xact_id()::text::bigint), 0
FROM server_changes;

CREATE FUNCTION zlh_feed_position() RETURNS BIGINT LANGUAGE sql VOLATILE AS
$$ SELECT pg_current_xact_id()::text::bigint + shift FROM feed_state WHERE id = 1 $$;

ALTER TABLE server_changes ALTER COLUMN seq SET DEFAULT zlh_feed_position();

-- Retention (docs/store.md, "Retention"): the age columns pruning walks.
CREATE INDEX server_changes_at ON server_changes (at);
CREATE INDEX events_last_seen ON events (last_seen);
CREATE INDEX operations_created ON operations (created_at);
CREATE INDEX servers_archive_deleted ON servers_archive (deleted_at);

-- VMID reservation in O(1) reads of the range (docs/store.md, "VMIDs"): the free VMIDs of
-- every range a reservation has used, lowest first by the primary key. Filled when a range
-- is first used (and again when it looks exhausted, which also heals a VMID the previous
-- release freed without listing it here).
CREATE TABLE vmid_ranges (
    min_vmid BIGINT NOT NULL,
    max_vmid BIGINT NOT NULL,
    PRIMARY KEY (min_vmid, max_vmid)
);
CREATE TABLE vmid_free (
    vmid BIGINT PRIMARY KEY
);
