-- Erasing a contact (the right to erasure): the PostgreSQL part at once, in the caller's
-- transaction; what MongoDB holds about them (their conversations and messages, and the
-- cached copies) through the purge queue, like a deleted company's data.

ALTER TABLE syntera.purges DROP CONSTRAINT purges_kind_check;
ALTER TABLE syntera.purges
  ADD CONSTRAINT purges_kind_check CHECK (kind IN ('company', 'contact')),
  ADD COLUMN contact_id uuid;

-- Owners and admins of the contact's company (or the service, naming the company) only.
-- Deletes what names the contact — analytics events, call recordings and history, workflow
-- events not yet run — then the contact (its deals keep their history: contact_id becomes
-- NULL by the foreign key), and records the purge with the counts. NULL when the contact
-- is not the caller's company's (the API answers 404, as for a missing one).
CREATE FUNCTION public.erase_contact(p_company uuid, p_contact uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  v_events bigint;
  v_recordings bigint;
  v_calls bigint;
  v_workflow_events bigint;
  v_purge uuid;
BEGIN
  IF coalesce(current_setting('request.jwt.claims', true)::jsonb ->> 'role', '') <> 'service_role'
     AND NOT EXISTS (
       SELECT 1 FROM public.users u
       WHERE u.id = auth.uid() AND u.company_id = p_company AND u.role IN ('owner', 'admin')
     ) THEN
    RAISE EXCEPTION 'only the company''s owner or an admin may erase a contact'
      USING ERRCODE = '42501';
  END IF;
  PERFORM 1 FROM public.contacts WHERE company_id = p_company AND id = p_contact FOR UPDATE;
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
  WHERE company_id = p_company AND processed_at IS NULL
    AND (data ->> 'contact_id' = p_contact::text);
  GET DIAGNOSTICS v_workflow_events = ROW_COUNT;
  DELETE FROM public.contacts WHERE company_id = p_company AND id = p_contact;
  -- The contact's own deletion queued a workflow event naming them: not run either.
  DELETE FROM public.workflow_events
  WHERE company_id = p_company AND processed_at IS NULL
    AND (data ->> 'contact_id' = p_contact::text);
  INSERT INTO syntera.purges (kind, company_id, contact_id, steps)
  VALUES ('contact', p_company, p_contact, jsonb_build_object('postgres', jsonb_build_object(
    'contacts', 1, 'analytics_events', v_events, 'call_recordings', v_recordings,
    'call_history', v_calls, 'workflow_events', v_workflow_events)))
  RETURNING id INTO v_purge;
  PERFORM pg_notify('syntera_purges', p_company::text);
  RETURN v_purge;
END;
$$;
REVOKE ALL ON FUNCTION public.erase_contact(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.erase_contact(uuid, uuid) TO authenticated, service_role;

-- A purge of the caller's company, for GET /v1/purges/{id} (owners and admins).
CREATE FUNCTION public.company_purge(p_company uuid, p_purge uuid)
RETURNS TABLE (id uuid, kind text, contact_id uuid, status text, steps jsonb, attempts integer,
               last_error text, created_at timestamptz, finished_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT p.id, p.kind, p.contact_id, p.status, p.steps, p.attempts, p.last_error,
         p.created_at, p.finished_at
  FROM syntera.purges p
  WHERE p.id = p_purge AND p.company_id = p_company AND p.kind = 'contact'
    AND (coalesce(current_setting('request.jwt.claims', true)::jsonb ->> 'role', '')
           = 'service_role'
         OR EXISTS (SELECT 1 FROM public.users u WHERE u.id = auth.uid()
                    AND u.company_id = p_company AND u.role IN ('owner', 'admin')))
$$;
REVOKE ALL ON FUNCTION public.company_purge(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.company_purge(uuid, uuid) TO authenticated, service_role;
