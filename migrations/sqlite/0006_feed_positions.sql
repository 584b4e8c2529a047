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
