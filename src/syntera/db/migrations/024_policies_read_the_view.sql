-- The policies read the caller's membership straight from private.caller_membership.
--
-- Since 016 the helpers private.current_company_id() and current_member_role() read the
-- view; called from a policy as `(SELECT private.f())` each is still a function call in
-- every statement (a SQL function with a FROM clause is not inlined), which made a
-- member's newest-20 page cost 1.6x the same query with an explicit company filter inside
-- PostgreSQL (pg_stat_statements, bench/rls.py). The sub-select on the view itself is
-- planned into the statement: about 1.1x. Every policy of public is rewritten so; what
-- each decides is unchanged. The helpers stay, for SQL that is not a policy.

DO $policies$
DECLARE
  p record;
  company constant text := '( SELECT private.current_company_id() AS current_company_id)';
  company_view constant text := '( SELECT m.company_id FROM private.caller_membership m)';
  role constant text := '( SELECT private.current_member_role() AS current_member_role)';
  role_view constant text :=
    '( SELECT m.role FROM private.caller_membership m WHERE m.company_id IS NOT NULL)';
BEGIN
  FOR p IN
    SELECT policyname, tablename, qual, with_check FROM pg_policies WHERE schemaname = 'public'
  LOOP
    IF p.qual IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON public.%I USING (%s)', p.policyname, p.tablename,
                     replace(replace(p.qual, company, company_view), role, role_view));
    END IF;
    IF p.with_check IS NOT NULL THEN
      EXECUTE format('ALTER POLICY %I ON public.%I WITH CHECK (%s)', p.policyname, p.tablename,
                     replace(replace(p.with_check, company, company_view), role, role_view));
    END IF;
  END LOOP;
END
$policies$;
