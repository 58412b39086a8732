-- Search over every message: a derived index of the messages MongoDB holds.
--
-- The MongoDB-wire server of the embedded default has no text index, so the index lives
-- here, in one table per deployment (production too: see the README). It is derived:
-- MongoDB stays the source of truth, `syntera maintenance reindex-messages` rebuilds it.
-- A message is indexed in the transaction that stores it (with its COMMIT, no round trip
-- of its own), so a rolled-back post leaves no row here.
--
-- Tenancy: company_id leads the key and every index; row-level security lets a member
-- read their company's rows only; only the database's functions and the system write
-- (service_role, which bypasses row-level security).
-- Purges: a deleted company's rows go by the foreign key's cascade, in the deleting
-- transaction; an erased contact's go when the erasure records its purge (the trigger
-- below), and a message of theirs that arrives later is never indexed (index_messages).

CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE public.message_search (
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  id text NOT NULL,               -- the message's ObjectId
  conversation_id text NOT NULL,  -- its conversation's ObjectId
  agent_id uuid,
  contact_id uuid,                -- the conversation's contact, kept when it changes
  channel text NOT NULL,
  sender_type text NOT NULL,
  created_at timestamptz NOT NULL,
  content text NOT NULL,
  -- English stemming and stop words; 'english' is named so the expression is immutable.
  indexed_at timestamptz NOT NULL DEFAULT now(),  -- a rebuild deletes what it did not write
  document tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
  PRIMARY KEY (company_id, id)
);
CREATE INDEX message_search_document ON public.message_search USING gin (document);
-- The newest matches first (a query that matches much), and the date filters.
CREATE INDEX message_search_company_created
  ON public.message_search (company_id, created_at DESC, id DESC);
CREATE INDEX message_search_company_conversation
  ON public.message_search (company_id, conversation_id);
CREATE INDEX message_search_company_contact
  ON public.message_search (company_id, contact_id);

ALTER TABLE public.message_search ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.message_search FORCE ROW LEVEL SECURITY;
CREATE POLICY message_search_select ON public.message_search FOR SELECT TO authenticated
  USING (company_id = (SELECT m.company_id FROM private.caller_membership m));
GRANT SELECT ON public.message_search TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.message_search TO service_role;

-- Every column is the system's: members write through index_messages() only.
INSERT INTO syntera.column_access (table_name, column_name, written_by)
SELECT 'message_search', c.column_name, 'system'
  FROM information_schema.columns c
 WHERE c.table_schema = 'public' AND c.table_name = 'message_search';
SELECT syntera.apply_column_access();

-- Contacts found by a part of their name or email (ILIKE '%…%'), from three characters.
CREATE INDEX contacts_name_email_trigram ON public.contacts USING gin (
  (coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(email, ''))
  gin_trgm_ops
);

-- Index messages (a JSON array of {message_id, conversation_id, agent_id, contact_id,
-- channel, sender_type, created_at, content}) of the caller's company; an indexed message
-- is replaced (an edit, a rebuild). A message of a contact whose erasure was recorded is
-- not indexed: its conversation is about to be purged.
CREATE FUNCTION private.index_messages(p_company uuid, p_messages jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT private.acts_for(p_company) THEN
    RAISE EXCEPTION 'not a member of this company' USING ERRCODE = '42501';
  END IF;
  INSERT INTO public.message_search AS s (company_id, id, conversation_id, agent_id,
                                          contact_id, channel, sender_type, created_at,
                                          content)
  SELECT p_company, m.message_id, m.conversation_id, m.agent_id, m.contact_id, m.channel,
         m.sender_type, m.created_at, m.content
    FROM jsonb_to_recordset(p_messages) AS m (
           message_id text, conversation_id text, agent_id uuid, contact_id uuid,
           channel text, sender_type text, created_at timestamptz, content text)
   WHERE m.contact_id IS NULL
      OR NOT EXISTS (SELECT 1 FROM syntera.purges p
                      WHERE p.company_id = p_company AND p.kind = 'contact'
                        AND p.contact_id = m.contact_id)
  ON CONFLICT (company_id, id) DO UPDATE
    SET content = EXCLUDED.content, contact_id = EXCLUDED.contact_id,
        sender_type = EXCLUDED.sender_type, indexed_at = now();
END;
$$;

-- Remove messages (by id) of the caller's company from the index: a deleted message.
CREATE FUNCTION private.unindex_messages(p_company uuid, p_messages text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT private.acts_for(p_company) THEN
    RAISE EXCEPTION 'not a member of this company' USING ERRCODE = '42501';
  END IF;
  DELETE FROM public.message_search
   WHERE company_id = p_company AND id = ANY (p_messages);
END;
$$;

-- A conversation's contact changed (or its messages must go: p_remove): its rows follow.
CREATE FUNCTION private.reindex_conversation(
  p_company uuid, p_conversation text, p_contact uuid, p_remove boolean
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NOT private.acts_for(p_company) THEN
    RAISE EXCEPTION 'not a member of this company' USING ERRCODE = '42501';
  END IF;
  IF p_remove THEN
    DELETE FROM public.message_search
     WHERE company_id = p_company AND conversation_id = p_conversation;
  ELSE
    UPDATE public.message_search SET contact_id = p_contact
     WHERE company_id = p_company AND conversation_id = p_conversation
       AND contact_id IS DISTINCT FROM p_contact;
  END IF;
END;
$$;

-- The newest p_window messages of the caller's company that match p_query, by the GIN
-- index. A definer function because under row-level security `@@` (not leakproof) may
-- not run before the policy's filter, so a member's own query can never use the GIN
-- index and reads every row of the company instead (1.2 s over 1,000,000 messages). The
-- company is the caller's, checked as everywhere (acts_for); each call is planned with
-- its own values (EXECUTE), as a bitmap scan.
CREATE FUNCTION private.search_messages(
  p_company uuid, p_query text, p_as_of timestamptz, p_window integer, p_channel text,
  p_agent uuid, p_contact uuid, p_since timestamptz, p_until timestamptz
) RETURNS TABLE (message_id text, conversation_id text, contact_id uuid, sender_type text,
                 created_at timestamptz, content text, document tsvector)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp SET enable_indexscan = off SET enable_seqscan = off
AS $$
BEGIN
  IF NOT private.acts_for(p_company) THEN
    RAISE EXCEPTION 'not a member of this company' USING ERRCODE = '42501';
  END IF;
  RETURN QUERY EXECUTE
    'SELECT s.id, s.conversation_id, s.contact_id, s.sender_type, s.created_at, s.content,'
    '       s.document'
    '  FROM public.message_search s'
    ' WHERE s.company_id = $1 AND s.document @@ websearch_to_tsquery(''english'', $2)'
    '   AND s.created_at <= $3'
    '   AND ($5 IS NULL OR s.channel = $5) AND ($6 IS NULL OR s.agent_id = $6)'
    '   AND ($7 IS NULL OR s.contact_id = $7) AND ($8 IS NULL OR s.created_at >= $8)'
    '   AND ($9 IS NULL OR s.created_at < $9)'
    ' ORDER BY s.created_at DESC, s.id DESC LIMIT $4'
    USING p_company, p_query, p_as_of, p_window, p_channel, p_agent, p_contact, p_since,
          p_until;
END;
$$;
REVOKE ALL ON FUNCTION private.search_messages(uuid, text, timestamptz, integer, text, uuid,
  uuid, timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.search_messages(uuid, text, timestamptz, integer, text,
  uuid, uuid, timestamptz, timestamptz) TO authenticated, service_role;

REVOKE ALL ON FUNCTION private.index_messages(uuid, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION private.unindex_messages(uuid, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION private.reindex_conversation(uuid, text, uuid, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.index_messages(uuid, jsonb) TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION private.unindex_messages(uuid, text[])
  TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION private.reindex_conversation(uuid, text, uuid, boolean)
  TO authenticated, service_role;
-- Owned by the definer role, as every definer function (migration 023), where it exists.
DO $owner$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_definer') THEN
    GRANT CREATE ON SCHEMA private TO syntera_definer;
    ALTER FUNCTION private.index_messages(uuid, jsonb) OWNER TO syntera_definer;
    ALTER FUNCTION private.unindex_messages(uuid, text[]) OWNER TO syntera_definer;
    ALTER FUNCTION private.reindex_conversation(uuid, text, uuid, boolean)
      OWNER TO syntera_definer;
    ALTER FUNCTION private.search_messages(uuid, text, timestamptz, integer, text, uuid,
      uuid, timestamptz, timestamptz) OWNER TO syntera_definer;
    REVOKE CREATE ON SCHEMA private FROM syntera_definer;
  END IF;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
  RAISE NOTICE 'the message search functions keep their owner: %', SQLERRM;
END
$owner$;

-- An erased contact's messages leave the index with the erasure, at once (the purge
-- then removes the conversations from MongoDB). Runs inside public.erase_contact.
CREATE FUNCTION syntera.unindex_erased_contact() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM public.message_search
   WHERE company_id = NEW.company_id AND contact_id = NEW.contact_id;
  RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION syntera.unindex_erased_contact() FROM PUBLIC;
CREATE TRIGGER purges_unindex_erased_contact AFTER INSERT ON syntera.purges
  FOR EACH ROW WHEN (NEW.kind = 'contact' AND NEW.contact_id IS NOT NULL)
  EXECUTE FUNCTION syntera.unindex_erased_contact();
