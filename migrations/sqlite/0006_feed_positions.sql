-- The change feed's bookkeeping (docs/store.md, "The change feed"). SQLite keeps its
-- single-writer positions (AUTOINCREMENT under `BEGIN IMMEDIATE`); `shift` is unused here
-- and stays 0, the table has the same shape on both stores.
CREATE TABLE feed_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    shift          INTEGER NOT NULL,
    -- Every change at or below this position has been pruned (retention); 0: none.
    pruned_through INTEGER NOT NULL
);
INSERT INTO feed_state (id, shift, pruned_through) VALUES (1, 0, 0);

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
