-- pg_stat_statements, for `syntera db stats`. The embedded server preloads it; where the
-- server does not (or the extension is not installed), the migration goes on without it
-- and `db stats` says that the figure is not available.
DO $statements$
BEGIN
  CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'pg_stat_statements not available: %', SQLERRM;
END
$statements$;
