-- Token lifecycle and audit (issue 25, items 3-4). Additive: new nullable columns and a new
-- table; the previous release's queries are unaffected.
-- A token's last use (written at most once a minute per token), expiry and revocation. A
-- revoked or expired token is refused on its next request by every API replica (each request
-- reads the row).
ALTER TABLE api_tokens ADD COLUMN last_used_at TIMESTAMPTZ;
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE api_tokens ADD COLUMN revoked_at TIMESTAMPTZ;

-- Who asked for what: one row per mutating API call. Append-only (rows are never updated;
-- only the retention prune deletes, oldest first).
CREATE TABLE audit_log (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    action     TEXT NOT NULL,
    server_id  UUID,
    detail     TEXT NOT NULL
);
CREATE INDEX audit_log_server ON audit_log (server_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
