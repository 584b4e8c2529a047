-- Live detail (issue 20, item 4; model/src/stats.rs). Additive: a new table, written by the
-- resync in one batched statement and by reconciles that ask an Agent; a write never touches
-- `servers` (no resource_version bump, no change feed). Each part (JSON) with its time; a
-- write leaves the parts it does not carry as they were.
CREATE TABLE server_stats (
    server_id         UUID PRIMARY KEY,
    resources         JSONB,
    resources_seen_at TIMESTAMPTZ,
    players           JSONB,
    players_seen_at   TIMESTAMPTZ,
    agent             JSONB,
    agent_seen_at     TIMESTAMPTZ
);
