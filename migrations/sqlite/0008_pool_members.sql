-- Warm pools (issue 26, docs/pools.md). Additive: a new table; the previous release's queries
-- are unaffected (it does not know pool members, so while both run it could refill the free
-- list with a member's VMID; the member's container is in Proxmox's listing by then, which
-- every reservation skips).
-- One row per member from before its clone until it is claimed (the row becomes the
-- server's VMID reservation in the same transaction) or destroyed.
CREATE TABLE pool_members (
    vmid             INTEGER PRIMARY KEY,
    id               BLOB NOT NULL UNIQUE,
    template_vmid    INTEGER NOT NULL,
    node             TEXT NOT NULL,
    state            TEXT NOT NULL,
    upid             TEXT,
    template_digest  TEXT NOT NULL,
    template_version TEXT,
    created_at       TEXT NOT NULL,
    ready_at         TEXT
);
CREATE INDEX pool_members_template ON pool_members (template_vmid, state, created_at);
