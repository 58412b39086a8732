-- SECURITY DEFINER functions run as a role that is not a superuser, where the server
-- lets a migration make one.
--
-- They were owned by the migration's role, a superuser on plain PostgreSQL: a flaw in any
-- of them (cause 1 of issue 35 was one) ran the caller's code with every power of the
-- server, files and programs included. `syntera_definer` can do what they do and no
-- more: read and write the tables of public and syntera, read auth.users, bypass
-- row-level security (the functions decide whose rows), call the helpers of private;
-- it cannot log in, create anything, or read the server's files.
--
-- Creating a role with BYPASSRLS needs a superuser, or (PostgreSQL 16+) a role that has
-- BYPASSRLS and CREATEROLE itself, as Supabase's `postgres` does. Where neither is the
-- case, or a grant is refused, the functions keep their owner and a NOTICE says so.

DO $owner$
DECLARE
  fn regprocedure;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_definer') THEN
    CREATE ROLE syntera_definer NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  -- ALTER ... OWNER needs the migration's role to be able to become the new owner.
  IF NOT pg_has_role(current_user, 'syntera_definer', 'MEMBER') THEN
    EXECUTE format('GRANT syntera_definer TO %I', current_user);
  END IF;

  GRANT USAGE ON SCHEMA public, private, syntera, auth TO syntera_definer;
  GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO syntera_definer;
  GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA syntera TO syntera_definer;
  GRANT SELECT ON ALL TABLES IN SCHEMA private TO syntera_definer;
  GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA private TO syntera_definer;
  GRANT SELECT (id, email) ON auth.users TO syntera_definer;
  -- Tables the migrations add later, likewise.
  ALTER DEFAULT PRIVILEGES IN SCHEMA public, syntera
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO syntera_definer;

  -- The new owner must be allowed to create in the function's schema, for the change only.
  GRANT CREATE ON SCHEMA public, private, syntera TO syntera_definer;
  FOR fn IN
    SELECT p.oid::regprocedure
      FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.prosecdef
       AND n.nspname IN ('public', 'private', 'syntera')
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO syntera_definer', fn);
  END LOOP;
  REVOKE CREATE ON SCHEMA public, private, syntera FROM syntera_definer;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
  RAISE NOTICE 'SECURITY DEFINER functions keep their owner: %', SQLERRM;
END
$owner$;
