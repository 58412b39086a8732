-- What the policies believe about the caller's membership comes from public.users, never
-- from a setting the transaction can change.
--
-- Until now the policy helpers trusted `request.membership` ('<user>:<company>:<role>'),
-- a copy the API read once per transaction to spare every statement a SECURITY DEFINER
-- lookup. Any SQL a client runs can set it too: `set_config('request.membership',
-- '<own id>:<B>:owner', true)` made the caller an owner of company B. The copy is gone;
-- the helpers read the caller's row through a view instead.
--
-- The view runs as its owner (the migration's role, which bypasses row-level security:
-- a superuser here, `postgres` with BYPASSRLS on Supabase), so reading public.users
-- through it does not recurse into the policies of public.users, and it shows only the
-- row of auth.uid(). Unlike a SECURITY DEFINER function it is expanded into the
-- statement (no function call, no search_path switch); the helpers stay plain SQL, and
-- the policies call them as `(SELECT private.f())`, once per statement (an InitPlan).

CREATE VIEW private.caller_membership WITH (security_barrier) AS
  SELECT u.company_id, u.role FROM public.users u WHERE u.id = auth.uid();

COMMENT ON VIEW private.caller_membership IS
  'The caller''s (auth.uid()) company and role, from public.users; the policies'' source.';

REVOKE ALL ON private.caller_membership FROM PUBLIC;
GRANT SELECT ON private.caller_membership TO anon, authenticated, service_role;

CREATE OR REPLACE FUNCTION private.current_company_id() RETURNS uuid
  LANGUAGE sql STABLE
  AS $$
    SELECT m.company_id FROM private.caller_membership m
  $$;

CREATE OR REPLACE FUNCTION private.current_member_role() RETURNS text
  LANGUAGE sql STABLE
  AS $$
    SELECT m.role FROM private.caller_membership m WHERE m.company_id IS NOT NULL
  $$;

DROP FUNCTION private.membership_copy();
