-- Token lifecycle and audit (issue 25, items 3-4). Additive: new nullable columns and a new
-- table; the previous release's queries are unaffected.
-- A token's last use (written at most once a minute per token), expiry and revocation. A
-- revoked or expired token is refused on its next request by every API replica (each request
-- reads the row).
ALTER TABLE api_tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;
ALTER TABLE api_tokens ADD COLUMN revoked_at TEXT;

-- Who asked for what: one row per mutating API call. Append-only (rows are never updated;
-- only the retention prune deletes, oldest first).
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    server_id  BLOB,
    detail     TEXT NOT NULL
);
CREATE INDEX audit_log_server ON audit_log (server_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
