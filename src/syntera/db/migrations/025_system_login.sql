-- The system's transactions (workers, sign-in, service keys) log in as `syntera_system`,
-- and the API's login `authenticator` is no longer a member of `service_role` (issue 35,
-- cause 2).
--
-- As on Supabase, `authenticator` could become `service_role`: SQL a request runs on its
-- connection (`set_config('role', 'service_role', true)`, `SET ROLE`) escaped row-level
-- security, read the signing keys and the password hashes. The API's pool now serves
-- anon and authenticated only; the system borrows from a pool of its own, as
-- `syntera_system` (LOGIN, NOINHERIT: it holds nothing until a transaction becomes
-- `service_role`).
--
-- Supabase's `authenticator` is the platform's (its PostgREST serves service keys on it):
-- there it keeps its memberships, and the API still uses its own login for the system.

-- Where the migration's role may not create the login or grant service_role (a managed
-- server's), a NOTICE says so; SYNTERA_SYSTEM_DATABASE_URL then names a login that may
-- become service_role (by default the owner's, SYNTERA_DATABASE_URL), and authenticator
-- keeps its membership.
DO $system$
BEGIN
  BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_system') THEN
      CREATE ROLE syntera_system LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT pg_has_role('syntera_system', 'service_role', 'MEMBER') THEN
      GRANT service_role TO syntera_system;
    END IF;
  EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'no syntera_system login: %', SQLERRM;
    RETURN;
  END;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin')
     AND pg_has_role('authenticator', 'service_role', 'MEMBER') THEN
    REVOKE service_role FROM authenticator;
  END IF;
END
$system$;
