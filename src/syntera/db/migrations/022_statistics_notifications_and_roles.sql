-- What else a client's own SQL could reach.
--
-- * pg_stat_statements, created in public by 006, is readable by everyone: every request
--   runs as `authenticated`, so one tenant read every tenant's normalised statements.
--   Only the owner's connection (`syntera db stats`, the operator's page) reads it.
-- * Any role may LISTEN on any channel: the purge queue's notifications named the
--   company (020) or the erased contact's company, and the mail queue's the outbox row.
--   They carry nothing now; the workers only need to be woken.
-- * erase_contact() and company_purge() let the system through when the claims said
--   `"role": "service_role"`, claims a transaction can set itself. They now ask the
--   current role, which only SET ROLE changes, and only for a member of that role.

DO $statements$
DECLARE
  fn regprocedure;
BEGIN
  IF to_regclass('public.pg_stat_statements') IS NULL THEN
    RETURN;
  END IF;
  REVOKE ALL ON public.pg_stat_statements FROM PUBLIC, anon, authenticated, service_role;
  IF to_regclass('public.pg_stat_statements_info') IS NOT NULL THEN
    REVOKE ALL ON public.pg_stat_statements_info
      FROM PUBLIC, anon, authenticated, service_role;
  END IF;
  FOR fn IN
    SELECT p.oid::regprocedure FROM pg_proc p
     WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'pg_stat_statements%'
  LOOP
    EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role',
                   fn);
  END LOOP;
END
$statements$;

CREATE OR REPLACE FUNCTION syntera.notify_mail() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $fn$
  BEGIN
    PERFORM pg_notify('syntera_mail', '');
    RETURN NEW;
  END
$fn$;

-- As in 015 (which made erasure reach the workflow runs), authorised on the current role,
-- and notifying without a payload.
CREATE OR REPLACE FUNCTION public.erase_contact(p_company uuid, p_contact uuid) RETURNS uuid
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    v_identifiers jsonb;
    v_events bigint;
    v_recordings bigint;
    v_calls bigint;
    v_workflow_events bigint;
    v_later_events bigint;
    v_executions bigint;
    v_purge uuid;
  BEGIN
    IF NOT private.acts_for(p_company, ARRAY['owner', 'admin']) THEN
      RAISE EXCEPTION 'only the company''s owner or an admin may erase a contact'
        USING ERRCODE = '42501';
    END IF;
    SELECT jsonb_path_query_array(jsonb_build_array(c.id::text, c.email, c.phone),
                                  '$[*] ? (@ != null)')
    INTO v_identifiers
    FROM public.contacts c WHERE c.company_id = p_company AND c.id = p_contact FOR UPDATE;
    IF NOT FOUND THEN
      RETURN NULL;
    END IF;
    DELETE FROM public.analytics_events WHERE company_id = p_company AND contact_id = p_contact;
    GET DIAGNOSTICS v_events = ROW_COUNT;
    DELETE FROM public.call_recordings WHERE company_id = p_company AND contact_id = p_contact;
    GET DIAGNOSTICS v_recordings = ROW_COUNT;
    DELETE FROM public.call_history WHERE company_id = p_company AND contact_id = p_contact;
    GET DIAGNOSTICS v_calls = ROW_COUNT;
    DELETE FROM public.workflow_events
    WHERE company_id = p_company AND private.names_any(data, v_identifiers);
    GET DIAGNOSTICS v_workflow_events = ROW_COUNT;
    UPDATE public.workflow_executions e
    SET trigger_data = '{"erased": true}',
        steps = (
          SELECT coalesce(jsonb_agg(CASE WHEN private.names_any(s.step -> 'result', v_identifiers)
                                         THEN s.step || '{"result": {}}' ELSE s.step END
                                    ORDER BY s.n), '[]')
          FROM jsonb_array_elements(e.steps) WITH ORDINALITY AS s (step, n)
        ),
        status = CASE WHEN e.status IN ('pending', 'running') THEN 'cancelled' ELSE e.status END,
        error = CASE WHEN e.status IN ('pending', 'running') THEN 'the contact was erased'
                     ELSE e.error END,
        finished_at = CASE WHEN e.status IN ('pending', 'running') THEN now()
                           ELSE e.finished_at END,
        frontier = CASE WHEN e.status IN ('pending', 'running') THEN '[]' ELSE e.frontier END,
        lease_token = NULL,
        lease_expires_at = NULL
    WHERE e.company_id = p_company
      AND (private.names_any(e.trigger_data, v_identifiers)
           OR private.names_any(e.steps, v_identifiers));
    GET DIAGNOSTICS v_executions = ROW_COUNT;
    DELETE FROM public.contacts WHERE company_id = p_company AND id = p_contact;
    -- The contact's own deletion queued a workflow event naming them: not run either.
    DELETE FROM public.workflow_events
    WHERE company_id = p_company AND processed_at IS NULL
      AND private.names_any(data, v_identifiers);
    GET DIAGNOSTICS v_later_events = ROW_COUNT;
    INSERT INTO syntera.purges (kind, company_id, contact_id, steps)
    VALUES ('contact', p_company, p_contact, jsonb_build_object('postgres', jsonb_build_object(
      'contacts', 1, 'analytics_events', v_events, 'call_recordings', v_recordings,
      'call_history', v_calls, 'workflow_events', v_workflow_events + v_later_events,
      'workflow_executions', v_executions)))
    RETURNING id INTO v_purge;
    PERFORM pg_notify('syntera_purges', '');
    RETURN v_purge;
  END;
  $$;

-- Called only by erase_contact(), as its owner: pg_temp last there too.
ALTER FUNCTION private.names_any(jsonb, jsonb) SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION public.company_purge(p_company uuid, p_purge uuid)
  RETURNS TABLE (id uuid, kind text, contact_id uuid, status text, steps jsonb,
                 attempts integer, last_error text, created_at timestamptz,
                 finished_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT p.id, p.kind, p.contact_id, p.status, p.steps, p.attempts, p.last_error,
           p.created_at, p.finished_at
    FROM syntera.purges p
    WHERE p.id = p_purge AND p.company_id = p_company AND p.kind = 'contact'
      AND private.acts_for(p_company, ARRAY['owner', 'admin'])
  $$;
