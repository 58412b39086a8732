-- Tenant isolation, enforced by the database.
--
-- Every request of the API runs as `authenticated` (or `anon`) with the caller's JWT
-- claims in `request.jwt.claims`. The policies below decide what it may touch:
-- * a member sees and changes only the rows of their own company; no company, no rows;
-- * `anon` has no privilege on any business table;
-- * writes only the system makes (workflow executions, notifications) have no policy for
--   `authenticated`: they go through `service_role`, which bypasses RLS.
--
-- Policies call helpers as `(SELECT private.f())`: PostgreSQL then evaluates them once per
-- statement (an InitPlan) instead of once per row, and the comparison with company_id can
-- use an index. The helpers are SECURITY DEFINER with an empty search_path so that they
-- read public.users without recursing into its own policies, and live in a schema the API
-- roles can use but not create in.

-- Who is asking -----------------------------------------------------------------------------
--
-- The caller's company and role come from public.users, read by SECURITY DEFINER lookups
-- (they must not recurse into the policies of public.users). Such a function cannot be
-- inlined and costs more than the indexed query it guards, so the API reads the
-- membership once per transaction into `request.membership` ('<user>:<company>:<role>',
-- see syntera.db.postgres.become) and the policy helpers below, plain inlinable SQL,
-- use that copy when it belongs to the current auth.uid() and names a company. Any other
-- caller (PostgREST, a missing or foreign setting, a user without a company) falls back
-- to the lookup, so the copy is an optimisation only: it is set by the same code that
-- sets request.jwt.claims, and trusts nothing those claims do not already decide.

CREATE FUNCTION private.lookup_company_id() RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$
    SELECT company_id FROM public.users WHERE id = auth.uid()
  $$;

CREATE FUNCTION private.lookup_member_role() RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$
    SELECT role FROM public.users WHERE id = auth.uid() AND company_id IS NOT NULL
  $$;

-- The caller's own membership as '<user>:<company>:<role>' ('' without a user).
CREATE FUNCTION private.membership() RETURNS text
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$
    SELECT coalesce(
      (SELECT id::text || ':' || coalesce(company_id::text, '') || ':' || role
         FROM public.users WHERE id = auth.uid()),
      ''
    )
  $$;

-- The per-transaction copy, if it is the current user's and names a company; else NULL.
CREATE FUNCTION private.membership_copy() RETURNS text
  LANGUAGE sql STABLE
  AS $$
    SELECT CASE
      WHEN split_part(current_setting('request.membership', true), ':', 1) = auth.uid()::text
       AND split_part(current_setting('request.membership', true), ':', 2) <> ''
      THEN current_setting('request.membership', true)
    END
  $$;

CREATE FUNCTION private.current_company_id() RETURNS uuid
  LANGUAGE sql STABLE
  AS $$
    SELECT coalesce(
      split_part(private.membership_copy(), ':', 2)::uuid, private.lookup_company_id()
    )
  $$;

CREATE FUNCTION private.current_member_role() RETURNS text
  LANGUAGE sql STABLE
  AS $$
    SELECT coalesce(split_part(private.membership_copy(), ':', 3), private.lookup_member_role())
  $$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA private FROM PUBLIC;
GRANT USAGE ON SCHEMA private TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION
  private.lookup_company_id(), private.lookup_member_role(), private.membership(),
  private.membership_copy(), private.current_company_id(), private.current_member_role()
  TO anon, authenticated, service_role;

-- Membership rules, kept by triggers ----------------------------------------------------

-- A new auth user gets a public.users row; a pending invitation for their email makes
-- them a member of the inviting company with the invited role.
CREATE FUNCTION private.handle_new_auth_user() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  DECLARE
    invitation public.invitations;
  BEGIN
    IF NEW.email IS NULL THEN
      RETURN NEW;
    END IF;
    SELECT * INTO invitation
      FROM public.invitations
     WHERE email = lower(NEW.email) AND accepted_at IS NULL AND expires_at > now()
     ORDER BY created_at DESC
     LIMIT 1;
    INSERT INTO public.users (id, email, company_id, role)
    VALUES (NEW.id, lower(NEW.email), invitation.company_id, coalesce(invitation.role, 'user'))
    ON CONFLICT (id) DO NOTHING;
    IF invitation.id IS NOT NULL THEN
      UPDATE public.invitations SET accepted_at = now() WHERE id = invitation.id;
    END IF;
    RETURN NEW;
  END
  $$;

CREATE TRIGGER on_auth_user_created
  AFTER INSERT ON auth.users
  FOR EACH ROW EXECUTE FUNCTION private.handle_new_auth_user();

CREATE FUNCTION private.handle_auth_user_email_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  BEGIN
    UPDATE public.users SET email = lower(NEW.email) WHERE id = NEW.id;
    RETURN NEW;
  END
  $$;

CREATE TRIGGER on_auth_user_email_changed
  AFTER UPDATE OF email ON auth.users
  FOR EACH ROW WHEN (NEW.email IS DISTINCT FROM OLD.email AND NEW.email IS NOT NULL)
  EXECUTE FUNCTION private.handle_auth_user_email_change();

-- Inserting a company makes the inserter (its owner_id) the owner, and nobody else.
CREATE FUNCTION private.handle_new_company() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  BEGIN
    IF NEW.owner_id IS NOT NULL THEN
      UPDATE public.users SET company_id = NEW.id, role = 'owner' WHERE id = NEW.owner_id;
    END IF;
    RETURN NEW;
  END
  $$;

CREATE TRIGGER on_company_created
  AFTER INSERT ON public.companies
  FOR EACH ROW EXECUTE FUNCTION private.handle_new_company();

-- What an API user may change in a users row beyond what the policies let them reach:
-- nobody changes their own role; an owner or admin of the company may set a teammate's
-- role to 'user' or 'admin'; the owner's row and the owner role are not changed this way.
-- Membership (company_id) never changes by UPDATE from the API: joining happens through
-- an invitation or by creating a company, leaving through public.remove_team_member().
-- Trusted code (the table owner, service_role, the SECURITY DEFINER functions here) is
-- not restricted by this trigger.
CREATE FUNCTION private.guard_member_changes() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = ''
  AS $$
  BEGIN
    IF current_user NOT IN ('authenticated', 'anon') THEN
      RETURN NEW;
    END IF;
    IF NEW.company_id IS DISTINCT FROM OLD.company_id THEN
      RAISE EXCEPTION 'membership changes only through invitations and remove_team_member()'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.role = OLD.role THEN
      RETURN NEW;
    END IF;
    IF OLD.id = auth.uid() THEN
      RAISE EXCEPTION 'users cannot change their own role'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.role = 'owner' THEN
      RAISE EXCEPTION 'the owner''s role cannot be changed'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.role = 'owner' THEN
      RAISE EXCEPTION 'the owner role cannot be granted'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
  END
  $$;

CREATE TRIGGER guard_member_changes
  BEFORE UPDATE ON public.users
  FOR EACH ROW EXECUTE FUNCTION private.guard_member_changes();

-- An owner or admin removes a teammate (not the owner, not themselves) from the company;
-- the removed user keeps their account, without a company or role.
CREATE FUNCTION public.remove_team_member(member_id uuid) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  DECLARE
    target public.users;
  BEGIN
    IF coalesce(private.current_member_role(), '') NOT IN ('owner', 'admin') THEN
      RAISE EXCEPTION 'only an owner or admin can remove members'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO target FROM public.users
     WHERE id = member_id AND company_id = private.current_company_id();
    IF target.id IS NULL THEN
      RAISE EXCEPTION 'no such member' USING ERRCODE = 'no_data_found';
    END IF;
    IF target.id = auth.uid() OR target.role = 'owner' THEN
      RAISE EXCEPTION 'the owner and oneself cannot be removed'
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    UPDATE public.users SET company_id = NULL, role = 'user' WHERE id = target.id;
  END
  $$;

REVOKE ALL ON FUNCTION public.remove_team_member(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.remove_team_member(uuid) TO authenticated;

-- Privileges: what each role may attempt at all; the policies then pick the rows. -------

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO service_role;

GRANT SELECT, DELETE ON public.companies TO authenticated;
GRANT INSERT (id, name, owner_id) ON public.companies TO authenticated;
GRANT UPDATE (name) ON public.companies TO authenticated;

GRANT SELECT ON public.users TO authenticated;
GRANT UPDATE (role) ON public.users TO authenticated;

GRANT SELECT, INSERT, UPDATE, DELETE ON
  public.invitations,
  public.agent_configs,
  public.contacts,
  public.deals,
  public.knowledge_base_documents,
  public.workflows,
  public.call_recordings,
  public.call_history
  TO authenticated;

GRANT SELECT ON public.workflow_executions TO authenticated;
GRANT SELECT, INSERT ON public.analytics_events TO authenticated;
GRANT SELECT, DELETE ON public.notifications TO authenticated;
GRANT UPDATE (read_at) ON public.notifications TO authenticated;

-- Row-level security: ENABLE, and FORCE so that the table owner is bound too. ----------

ALTER TABLE public.companies ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.companies FORCE ROW LEVEL SECURITY;
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
ALTER TABLE public.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.invitations FORCE ROW LEVEL SECURITY;
ALTER TABLE public.agent_configs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.agent_configs FORCE ROW LEVEL SECURITY;
ALTER TABLE public.contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contacts FORCE ROW LEVEL SECURITY;
ALTER TABLE public.deals ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.deals FORCE ROW LEVEL SECURITY;
ALTER TABLE public.knowledge_base_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.knowledge_base_documents FORCE ROW LEVEL SECURITY;
ALTER TABLE public.workflows ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workflows FORCE ROW LEVEL SECURITY;
ALTER TABLE public.workflow_executions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workflow_executions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.call_recordings ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.call_recordings FORCE ROW LEVEL SECURITY;
ALTER TABLE public.call_history ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.call_history FORCE ROW LEVEL SECURITY;
ALTER TABLE public.analytics_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.analytics_events FORCE ROW LEVEL SECURITY;
ALTER TABLE public.notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notifications FORCE ROW LEVEL SECURITY;

-- companies: members see their company; the owner may also see it before the membership
-- trigger has run (INSERT ... RETURNING). Anyone without a company may create one, as its
-- owner. Owners and admins rename it; only the owner deletes it.

CREATE POLICY companies_select ON public.companies FOR SELECT TO authenticated
  USING (id = (SELECT private.current_company_id()) OR owner_id = (SELECT auth.uid()));
CREATE POLICY companies_insert ON public.companies FOR INSERT TO authenticated
  WITH CHECK (
    owner_id = (SELECT auth.uid()) AND (SELECT private.current_company_id()) IS NULL
  );
CREATE POLICY companies_update ON public.companies FOR UPDATE TO authenticated
  USING (
    id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  )
  WITH CHECK (id = (SELECT private.current_company_id()));
CREATE POLICY companies_delete ON public.companies FOR DELETE TO authenticated
  USING (
    id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) = 'owner'
  );

-- users: one's own row and one's teammates'. Owners and admins may change teammates'
-- roles, within the limits of guard_member_changes.

CREATE POLICY users_select ON public.users FOR SELECT TO authenticated
  USING (id = (SELECT auth.uid()) OR company_id = (SELECT private.current_company_id()));
CREATE POLICY users_update ON public.users FOR UPDATE TO authenticated
  USING (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  )
  WITH CHECK (company_id = (SELECT private.current_company_id()));

-- invitations: managed by owners and admins.

CREATE POLICY invitations_select ON public.invitations FOR SELECT TO authenticated
  USING (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  );
CREATE POLICY invitations_insert ON public.invitations FOR INSERT TO authenticated
  WITH CHECK (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
    AND invited_by = (SELECT auth.uid())
  );
CREATE POLICY invitations_update ON public.invitations FOR UPDATE TO authenticated
  USING (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  )
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY invitations_delete ON public.invitations FOR DELETE TO authenticated
  USING (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  );

-- agent_configs, contacts, deals, knowledge_base_documents, call_recordings, call_history:
-- every member manages their company's rows.

CREATE POLICY agent_configs_select ON public.agent_configs FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY agent_configs_insert ON public.agent_configs FOR INSERT TO authenticated
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY agent_configs_update ON public.agent_configs FOR UPDATE TO authenticated
  USING (company_id = (SELECT private.current_company_id()))
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY agent_configs_delete ON public.agent_configs FOR DELETE TO authenticated
  USING (company_id = (SELECT private.current_company_id()));

CREATE POLICY contacts_select ON public.contacts FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY contacts_insert ON public.contacts FOR INSERT TO authenticated
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY contacts_update ON public.contacts FOR UPDATE TO authenticated
  USING (company_id = (SELECT private.current_company_id()))
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY contacts_delete ON public.contacts FOR DELETE TO authenticated
  USING (company_id = (SELECT private.current_company_id()));

CREATE POLICY deals_select ON public.deals FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY deals_insert ON public.deals FOR INSERT TO authenticated
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY deals_update ON public.deals FOR UPDATE TO authenticated
  USING (company_id = (SELECT private.current_company_id()))
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY deals_delete ON public.deals FOR DELETE TO authenticated
  USING (company_id = (SELECT private.current_company_id()));

CREATE POLICY kb_documents_select ON public.knowledge_base_documents FOR SELECT
  TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY kb_documents_insert ON public.knowledge_base_documents FOR INSERT
  TO authenticated
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY kb_documents_update ON public.knowledge_base_documents FOR UPDATE
  TO authenticated
  USING (company_id = (SELECT private.current_company_id()))
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY kb_documents_delete ON public.knowledge_base_documents FOR DELETE
  TO authenticated
  USING (company_id = (SELECT private.current_company_id()));

CREATE POLICY call_recordings_select ON public.call_recordings FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY call_recordings_insert ON public.call_recordings FOR INSERT TO authenticated
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY call_recordings_update ON public.call_recordings FOR UPDATE TO authenticated
  USING (company_id = (SELECT private.current_company_id()))
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY call_recordings_delete ON public.call_recordings FOR DELETE TO authenticated
  USING (company_id = (SELECT private.current_company_id()));

CREATE POLICY call_history_select ON public.call_history FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY call_history_insert ON public.call_history FOR INSERT TO authenticated
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY call_history_update ON public.call_history FOR UPDATE TO authenticated
  USING (company_id = (SELECT private.current_company_id()))
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY call_history_delete ON public.call_history FOR DELETE TO authenticated
  USING (company_id = (SELECT private.current_company_id()));

-- workflows: members read; only owners and admins create, change and delete (seed).

CREATE POLICY workflows_select ON public.workflows FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY workflows_insert ON public.workflows FOR INSERT TO authenticated
  WITH CHECK (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  );
CREATE POLICY workflows_update ON public.workflows FOR UPDATE TO authenticated
  USING (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  )
  WITH CHECK (company_id = (SELECT private.current_company_id()));
CREATE POLICY workflows_delete ON public.workflows FOR DELETE TO authenticated
  USING (
    company_id = (SELECT private.current_company_id())
    AND (SELECT private.current_member_role()) IN ('owner', 'admin')
  );

-- workflow_executions: members read the audit trail; only the system writes it.

CREATE POLICY workflow_executions_select ON public.workflow_executions FOR SELECT
  TO authenticated
  USING (company_id = (SELECT private.current_company_id()));

-- analytics_events: append-only for members; an event names no user or the caller.

CREATE POLICY analytics_events_select ON public.analytics_events FOR SELECT TO authenticated
  USING (company_id = (SELECT private.current_company_id()));
CREATE POLICY analytics_events_insert ON public.analytics_events FOR INSERT TO authenticated
  WITH CHECK (
    company_id = (SELECT private.current_company_id())
    AND (user_id IS NULL OR user_id = (SELECT auth.uid()))
  );

-- notifications: each user reads, marks read and deletes their own; the system writes.

CREATE POLICY notifications_select ON public.notifications FOR SELECT TO authenticated
  USING (
    company_id = (SELECT private.current_company_id()) AND user_id = (SELECT auth.uid())
  );
CREATE POLICY notifications_update ON public.notifications FOR UPDATE TO authenticated
  USING (
    company_id = (SELECT private.current_company_id()) AND user_id = (SELECT auth.uid())
  )
  WITH CHECK (
    company_id = (SELECT private.current_company_id()) AND user_id = (SELECT auth.uid())
  );
CREATE POLICY notifications_delete ON public.notifications FOR DELETE TO authenticated
  USING (
    company_id = (SELECT private.current_company_id()) AND user_id = (SELECT auth.uid())
  );
