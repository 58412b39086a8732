-- SECURITY DEFINER functions never see the caller's temporary objects.
--
-- `SET search_path = ''` is not enough: PostgreSQL still looks in pg_temp first for the
-- names of relations and types, and every role could create temporary objects. A domain
-- `pg_temp.uuid` whose CHECK calls the caller's function then ran that function as the
-- definer (the superuser) from inside `private.lookup_company_id()`. Two fixes, each
-- enough on its own:
-- * every SECURITY DEFINER function of ours says where pg_temp goes: last
--   (`pg_catalog, pg_temp`), so a temporary object can never shadow a real one;
-- * PUBLIC may no longer create temporary objects in this database (the API never
--   does; the owner, who runs migrations, keeps the privilege).
-- A later migration that adds a definer function must set the same search_path:
-- tests/db/test_database_guard.py fails for any that does not.

DO $definers$
DECLARE
  fn regprocedure;
BEGIN
  FOR fn IN
    SELECT p.oid::regprocedure
      FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE p.prosecdef
       AND n.nspname IN ('public', 'private', 'syntera')
       AND pg_has_role(current_user, p.proowner, 'USAGE')
       -- an extension's functions are the extension's to configure
       AND NOT EXISTS (SELECT 1 FROM pg_depend d
                        WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                          AND d.deptype = 'e')
  LOOP
    EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, pg_temp', fn);
  END LOOP;
END
$definers$;

DO $temporary$
BEGIN
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
END
$temporary$;
