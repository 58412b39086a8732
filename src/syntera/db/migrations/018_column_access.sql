-- Which columns a client may write, table by table: the one map the privileges follow.
--
-- Until now `authenticated` held INSERT and UPDATE on whole tables, so a member could
-- write what only the system should: a document's file_path (the worker then indexed
-- another company's file into the member's chunks), its status and counts, an agent's
-- widget key digest, a workflow's secret, and every row's id (which let one company
-- create rows with another's ids, so that any lookup by id alone saw two rows, and made
-- "duplicate key" an oracle for ids that row-level security hides).
--
-- syntera.column_access names every column of every table of `public` once:
--   client         a member may set it when inserting and change it later
--   client_insert  a member may set it when inserting only (company_id, who created it)
--   client_update  a member may change it, never insert it (a teammate's role, read_at)
--   system         only the system (service_role) and the database's own functions write
--                  it: ids (always generated: clients never choose one), timestamps,
--                  the queues' state, digests, secrets, paths
-- syntera.apply_column_access() turns the map into the privileges of `authenticated` (and
-- takes every write from `anon`), table by table, replacing whatever grant was there:
-- on Supabase the default privileges give both roles ALL on every new table of public,
-- which this also takes back. The policies still decide which rows.
-- A later migration that adds a column or a table adds it here and applies the map again;
-- tests/db/test_database_guard.py fails for a column of public missing from the map, and
-- tries a member's write of every system column.

CREATE TABLE syntera.column_access (
  table_name text NOT NULL,
  column_name text NOT NULL,
  written_by text NOT NULL
    CHECK (written_by IN ('client', 'client_insert', 'client_update', 'system')),
  PRIMARY KEY (table_name, column_name)
);

CREATE FUNCTION syntera.apply_column_access() RETURNS void
  LANGUAGE plpgsql
  SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    t text;
    cols text;
  BEGIN
    FOR t IN SELECT DISTINCT table_name FROM syntera.column_access ORDER BY 1 LOOP
      EXECUTE format('REVOKE INSERT, UPDATE, TRUNCATE, REFERENCES, TRIGGER ON public.%I'
                     ' FROM anon, authenticated', t);
      EXECUTE format('REVOKE ALL ON public.%I FROM anon', t);
      SELECT string_agg(quote_ident(column_name), ', ' ORDER BY column_name) INTO cols
        FROM syntera.column_access
       WHERE table_name = t AND written_by IN ('client', 'client_insert');
      IF cols IS NOT NULL THEN
        EXECUTE format('GRANT INSERT (%s) ON public.%I TO authenticated', cols, t);
      END IF;
      SELECT string_agg(quote_ident(column_name), ', ' ORDER BY column_name) INTO cols
        FROM syntera.column_access
       WHERE table_name = t AND written_by IN ('client', 'client_update');
      IF cols IS NOT NULL THEN
        EXECUTE format('GRANT UPDATE (%s) ON public.%I TO authenticated', cols, t);
      END IF;
    END LOOP;
  END
  $$;
REVOKE ALL ON FUNCTION syntera.apply_column_access() FROM PUBLIC;

-- Every column not listed below is the system's.
INSERT INTO syntera.column_access (table_name, column_name, written_by)
SELECT c.table_name, c.column_name, 'system'
  FROM information_schema.columns c
  JOIN pg_class t ON t.relname = c.table_name AND t.relnamespace = 'public'::regnamespace
 WHERE c.table_schema = 'public' AND t.relkind IN ('r', 'p');

UPDATE syntera.column_access a SET written_by = w.written_by
  FROM (VALUES
    ('companies', 'name', 'client'),
    ('companies', 'owner_id', 'client_insert'),
    ('users', 'role', 'client_update'),
    ('invitations', 'company_id', 'client_insert'),
    ('invitations', 'email', 'client_insert'),
    ('invitations', 'role', 'client'),
    ('invitations', 'invited_by', 'client_insert'),
    ('agent_configs', 'company_id', 'client_insert'),
    ('agent_configs', 'name', 'client'),
    ('agent_configs', 'description', 'client'),
    ('agent_configs', 'system_prompt', 'client'),
    ('agent_configs', 'model', 'client'),
    ('agent_configs', 'temperature', 'client'),
    ('agent_configs', 'max_tokens', 'client'),
    ('agent_configs', 'voice_settings', 'client'),
    ('agent_configs', 'enabled', 'client'),
    ('agent_configs', 'avatar_url', 'client'),
    ('contacts', 'company_id', 'client_insert'),
    ('contacts', 'email', 'client'),
    ('contacts', 'phone', 'client'),
    ('contacts', 'first_name', 'client'),
    ('contacts', 'last_name', 'client'),
    ('contacts', 'tags', 'client'),
    ('contacts', 'metadata', 'client'),
    ('deals', 'company_id', 'client_insert'),
    ('deals', 'contact_id', 'client'),
    ('deals', 'title', 'client'),
    ('deals', 'value', 'client'),
    ('deals', 'stage', 'client'),
    ('deals', 'probability', 'client'),
    ('deals', 'expected_close_date', 'client'),
    ('deals', 'metadata', 'client'),
    -- Documents are created by public.queue_document() (the path is the system's).
    ('knowledge_base_documents', 'name', 'client_update'),
    ('knowledge_base_documents', 'agent_id', 'client_update'),
    ('workflows', 'company_id', 'client_insert'),
    ('workflows', 'name', 'client'),
    ('workflows', 'description', 'client'),
    ('workflows', 'enabled', 'client'),
    ('workflows', 'trigger_type', 'client'),
    ('workflows', 'trigger_config', 'client'),
    ('workflows', 'nodes', 'client'),
    ('workflows', 'edges', 'client'),
    ('workflows', 'created_by', 'client_insert'),
    ('call_recordings', 'company_id', 'client_insert'),
    ('call_recordings', 'agent_id', 'client'),
    ('call_recordings', 'contact_id', 'client'),
    ('call_recordings', 'conversation_id', 'client'),
    ('call_recordings', 'recording_url', 'client'),
    ('call_recordings', 'duration_seconds', 'client'),
    ('call_recordings', 'transcript', 'client'),
    ('call_recordings', 'started_at', 'client'),
    ('call_recordings', 'ended_at', 'client'),
    ('call_recordings', 'metadata', 'client'),
    ('call_history', 'company_id', 'client_insert'),
    ('call_history', 'agent_id', 'client'),
    ('call_history', 'contact_id', 'client'),
    ('call_history', 'recording_id', 'client'),
    ('call_history', 'conversation_id', 'client'),
    ('call_history', 'direction', 'client'),
    ('call_history', 'status', 'client'),
    ('call_history', 'from_number', 'client'),
    ('call_history', 'to_number', 'client'),
    ('call_history', 'duration_seconds', 'client'),
    ('call_history', 'started_at', 'client'),
    ('call_history', 'ended_at', 'client'),
    ('call_history', 'metadata', 'client'),
    ('analytics_events', 'company_id', 'client_insert'),
    ('analytics_events', 'event_type', 'client_insert'),
    ('analytics_events', 'agent_id', 'client_insert'),
    ('analytics_events', 'contact_id', 'client_insert'),
    ('analytics_events', 'user_id', 'client_insert'),
    ('analytics_events', 'conversation_id', 'client_insert'),
    ('analytics_events', 'properties', 'client_insert'),
    ('notifications', 'read_at', 'client_update')
  ) AS w (table_name, column_name, written_by)
 WHERE a.table_name = w.table_name AND a.column_name = w.column_name;

SELECT syntera.apply_column_access();

-- What members do to system columns, through functions that write them as the system. --

-- May the caller act for p_company with one of p_roles (any role when NULL)? The system
-- (the current role service_role, which only SET ROLE by a member of it can name) may act
-- for any company.
CREATE FUNCTION private.acts_for(p_company uuid, p_roles text[] DEFAULT NULL) RETURNS boolean
  LANGUAGE sql STABLE
  AS $$
    SELECT current_setting('role') = 'service_role'
        OR EXISTS (SELECT 1 FROM private.caller_membership m
                    WHERE m.company_id = p_company
                      AND (p_roles IS NULL OR m.role = ANY (p_roles)))
  $$;
REVOKE ALL ON FUNCTION private.acts_for(uuid, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.acts_for(uuid, text[]) TO authenticated, service_role;

-- Queue an uploaded document: the database chooses its id and its path,
-- '<company>/<document>/<file name>', so a document can only name its own company's file.
-- The caller stores the file at the returned path before committing (a worker claims the
-- document only once the transaction has committed).
CREATE FUNCTION public.queue_document(
  p_company uuid, p_name text, p_agent uuid, p_file_name text, p_content_type text,
  p_size_bytes bigint
) RETURNS SETOF public.knowledge_base_documents
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    v_id uuid := gen_random_uuid();
  BEGIN
    IF NOT private.acts_for(p_company) THEN
      RAISE EXCEPTION 'not a member of this company' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_file_name IS NULL OR p_file_name !~ '^[A-Za-z0-9_-][A-Za-z0-9._-]{0,119}$' THEN
      RAISE EXCEPTION 'a file name is letters, digits, ".", "_" and "-" (at most 120)'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY
      INSERT INTO public.knowledge_base_documents
        (id, company_id, name, agent_id, file_path, content_type, size_bytes)
      VALUES (v_id, p_company, p_name, p_agent,
              p_company::text || '/' || v_id::text || '/' || p_file_name,
              p_content_type, p_size_bytes)
      RETURNING *;
  END
  $$;

-- Queue a document again (a worker holding it loses its lease).
CREATE FUNCTION public.reprocess_document(p_company uuid, p_document uuid)
  RETURNS SETOF public.knowledge_base_documents
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  BEGIN
    IF NOT private.acts_for(p_company) THEN
      RETURN;
    END IF;
    RETURN QUERY
      UPDATE public.knowledge_base_documents
         SET status = 'pending', attempts = 0, run_after = now(), lease_token = NULL,
             lease_expires_at = NULL, metadata = metadata - 'error' - 'progress'
       WHERE company_id = p_company AND id = p_document
      RETURNING *;
  END
  $$;

-- A new secret for a workflow (owners and admins): made here, returned once.
CREATE FUNCTION public.rotate_workflow_secret(p_company uuid, p_workflow uuid) RETURNS text
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    v_secret text := encode(sha256(convert_to(
      gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')),
      'hex');
  BEGIN
    IF NOT private.acts_for(p_company, ARRAY['owner', 'admin']) THEN
      RETURN NULL;
    END IF;
    UPDATE public.workflows SET secret = v_secret
     WHERE company_id = p_company AND id = p_workflow;
    IF NOT FOUND THEN
      RETURN NULL;
    END IF;
    RETURN v_secret;
  END
  $$;

-- anon by name too: on Supabase the default privileges grant it EXECUTE on public's
-- new functions.
-- Accepting an invitation marks that invitation accepted, named by its full key (two
-- companies' invitations could share an id while clients chose ids).
CREATE OR REPLACE FUNCTION public.accept_invitation(invitation_id uuid)
  RETURNS SETOF public.users
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    invitation public.invitations;
  BEGIN
    SELECT i.* INTO invitation
      FROM public.invitations i
      JOIN auth.users u ON u.id = auth.uid()
     WHERE i.id = invitation_id AND i.email = lower(u.email)
       AND i.accepted_at IS NULL AND i.expires_at > now()
     ORDER BY i.created_at, i.company_id
     LIMIT 1
       FOR UPDATE OF i;
    IF invitation.id IS NULL THEN
      RAISE EXCEPTION 'no pending invitation % for you', invitation_id
        USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (
      SELECT 1 FROM public.users WHERE id = auth.uid() AND company_id IS NOT NULL
    ) THEN
      RAISE EXCEPTION 'you already belong to a company' USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE public.invitations SET accepted_at = now()
     WHERE company_id = invitation.company_id AND id = invitation.id;
    RETURN QUERY
      UPDATE public.users SET company_id = invitation.company_id, role = invitation.role
       WHERE id = auth.uid()
      RETURNING *;
  END
  $$;

REVOKE ALL ON FUNCTION
  public.queue_document(uuid, text, uuid, text, text, bigint),
  public.reprocess_document(uuid, uuid),
  public.rotate_workflow_secret(uuid, uuid)
  FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION
  public.queue_document(uuid, text, uuid, text, text, bigint),
  public.reprocess_document(uuid, uuid),
  public.rotate_workflow_secret(uuid, uuid)
  TO authenticated, service_role;
