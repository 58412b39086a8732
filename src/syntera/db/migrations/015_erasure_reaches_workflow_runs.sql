-- Erasing a contact also reaches the workflow runs they started: an execution's
-- trigger_data is the triggering row as it was (a contact's name, email, phone, …), kept
-- as the run's audit trail and shown by GET /v1/workflows/{id}/executions, and the queued
-- events (processed ones too) hold the same copy.
--
-- What names the contact: any value in the JSON equal to their id, email or phone (a
-- contact event's copy of them, a deal's contact_id, an inbound webhook's payload that
-- mentions them). Such an event is deleted; such an execution keeps its place in the
-- trail (workflow, status, times, which nodes ran) with its trigger data replaced by
-- {"erased": true} and each step result that names them emptied; one still to run is
-- cancelled (its worker's lease ends: its next write finds the lease gone and stops).

-- Whether ``data`` holds one of ``identifiers`` (a JSON array of strings) as a value,
-- at any depth.
CREATE FUNCTION private.names_any(data jsonb, identifiers jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = '' AS $$
  SELECT jsonb_path_exists(data, '$.** ? (@ == $identifiers[*])',
                           jsonb_build_object('identifiers', identifiers))
$$;
REVOKE ALL ON FUNCTION private.names_any(jsonb, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION public.erase_contact(p_company uuid, p_contact uuid) RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
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
  IF coalesce(current_setting('request.jwt.claims', true)::jsonb ->> 'role', '') <> 'service_role'
     AND NOT EXISTS (
       SELECT 1 FROM public.users u
       WHERE u.id = auth.uid() AND u.company_id = p_company AND u.role IN ('owner', 'admin')
     ) THEN
    RAISE EXCEPTION 'only the company''s owner or an admin may erase a contact'
      USING ERRCODE = '42501';
  END IF;
  SELECT jsonb_path_query_array(jsonb_build_array(c.id::text, c.email, c.phone), '$[*] ? (@ != null)')
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
  PERFORM pg_notify('syntera_purges', p_company::text);
  RETURN v_purge;
END;
$$;
REVOKE ALL ON FUNCTION public.erase_contact(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.erase_contact(uuid, uuid) TO authenticated, service_role;
