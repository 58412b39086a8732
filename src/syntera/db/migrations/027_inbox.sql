-- The team's inbox (issue 33): saved replies, and the company's choice to assign
-- conversations handed to people automatically.
--
-- Conversations, their assignee, rating and private notes live in MongoDB beside the
-- messages (conversations/store.py); what is here is the company's own configuration.

-- Handed to people, a conversation goes to the online member with the fewest open
-- conversations (else it waits in "needs a person" and every member is told).
ALTER TABLE public.companies ADD COLUMN auto_assign_handoffs boolean NOT NULL DEFAULT false;
INSERT INTO syntera.column_access (table_name, column_name, written_by)
VALUES ('companies', 'auto_assign_handoffs', 'client_update');

-- Saved replies: text a member inserts by typing "/" and its shortcut.
CREATE TABLE public.saved_replies (
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  shortcut text NOT NULL CHECK (shortcut ~ '^[a-z0-9_-]{1,32}$'),
  content text NOT NULL CHECK (length(content) BETWEEN 1 AND 10000),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (company_id, id),
  -- One shortcut per company; also the list's lookup by shortcut.
  CONSTRAINT saved_replies_shortcut_key UNIQUE (company_id, shortcut)
);
CREATE INDEX idx_saved_replies_company_created
  ON public.saved_replies (company_id, created_at DESC, id DESC);
CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.saved_replies
  FOR EACH ROW EXECUTE FUNCTION private.set_updated_at();

-- FORCE: the table owner must not bypass tenant isolation either.
ALTER TABLE public.saved_replies ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.saved_replies FORCE ROW LEVEL SECURITY;
-- Every member manages their company's saved replies (the policies read the membership
-- view, planned into the statement: migration 024).
CREATE POLICY saved_replies_select ON public.saved_replies FOR SELECT TO authenticated
  USING (company_id = (SELECT m.company_id FROM private.caller_membership m));
CREATE POLICY saved_replies_insert ON public.saved_replies FOR INSERT TO authenticated
  WITH CHECK (company_id = (SELECT m.company_id FROM private.caller_membership m));
CREATE POLICY saved_replies_update ON public.saved_replies FOR UPDATE TO authenticated
  USING (company_id = (SELECT m.company_id FROM private.caller_membership m))
  WITH CHECK (company_id = (SELECT m.company_id FROM private.caller_membership m));
CREATE POLICY saved_replies_delete ON public.saved_replies FOR DELETE TO authenticated
  USING (company_id = (SELECT m.company_id FROM private.caller_membership m));
GRANT SELECT, DELETE ON public.saved_replies TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.saved_replies TO service_role;

INSERT INTO syntera.column_access (table_name, column_name, written_by) VALUES
  ('saved_replies', 'company_id', 'client_insert'),
  ('saved_replies', 'id', 'system'),
  ('saved_replies', 'shortcut', 'client'),
  ('saved_replies', 'content', 'client'),
  ('saved_replies', 'created_at', 'system'),
  ('saved_replies', 'updated_at', 'system');
SELECT syntera.apply_column_access();

-- A member who assigns a conversation notifies the assignee. Members write no
-- notification themselves (the system's: migration 018), so this writes one, of one fixed
-- kind, to a member of the caller's own company and no one else.
CREATE FUNCTION private.notify_assignment(
  p_company uuid, p_assignee uuid, p_conversation text
) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_count integer;
BEGIN
  -- The current role and the caller's own users row decide (migration 018).
  IF NOT private.acts_for(p_company) THEN
    RAISE EXCEPTION 'not a member of this company' USING ERRCODE = '42501';
  END IF;
  INSERT INTO public.notifications (company_id, user_id, type, title, body, data)
  SELECT u.company_id, u.id, 'conversation.assigned', 'A conversation was assigned to you',
         NULL, jsonb_build_object('conversation_id', p_conversation)
    FROM public.users u
   WHERE u.company_id = p_company AND u.id = p_assignee;
  GET DIAGNOSTICS v_count = ROW_COUNT;
  RETURN v_count;
END;
$$;
REVOKE ALL ON FUNCTION private.notify_assignment(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.notify_assignment(uuid, uuid, text)
  TO authenticated, service_role;
-- Owned by the definer role, as every definer function (migration 023), where it exists.
DO $owner$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_definer') THEN
    GRANT CREATE ON SCHEMA private TO syntera_definer;
    ALTER FUNCTION private.notify_assignment(uuid, uuid, text) OWNER TO syntera_definer;
    REVOKE CREATE ON SCHEMA private FROM syntera_definer;
  END IF;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
  RAISE NOTICE 'private.notify_assignment keeps its owner: %', SQLERRM;
END
$owner$;
