-- Quotas for cores and disk. Additive: NULL means the default quota's value, so rows that the
-- previous release writes (it names only the old columns) read as the default, and its
-- queries, which name their columns, are unaffected.
ALTER TABLE customers ADD COLUMN max_cores BIGINT;
ALTER TABLE customers ADD COLUMN max_disk_gib BIGINT;
