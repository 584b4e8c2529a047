-- Idempotency keys outlive their server and expire by age: creates purge them by created_at.
-- Additive (an index): the previous release's queries are unaffected.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
