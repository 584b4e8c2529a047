-- Version skew (the upgrade policy in deploy/POSTGRES.md, "Upgrades"). Additive: two new
-- tables, nothing an older release reads or writes changes.
--
-- min_reader: the oldest schema version whose binaries still work on this database. A
-- migration that only adds leaves it alone; one that contracts (drops or renames something a
-- previous release uses) raises it, and binaries below it refuse to start.
CREATE TABLE schema_compat (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    min_reader BIGINT NOT NULL
);
INSERT INTO schema_compat (id, min_reader) VALUES (1, 1);

-- Written by /readyz: a store that cannot write (disk full, read-only, a standby) is not
-- ready.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TIMESTAMPTZ NOT NULL
);
