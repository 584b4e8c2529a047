-- A newer release's contract step: binaries below schema {next} must no longer run.
UPDATE schema_compat SET min_reader = {next} WHERE id = 1;
