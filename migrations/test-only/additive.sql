-- A newer release's expand step: a column with a default and a table, nothing else.
ALTER TABLE servers ADD COLUMN future_note TEXT NOT NULL DEFAULT '';
CREATE TABLE future_things (
    id   BIGINT PRIMARY KEY,
    note TEXT NOT NULL
);
