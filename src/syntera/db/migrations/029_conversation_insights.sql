-- Conversation insights: the durable work of classifying visitors' messages (intent and
-- sentiment) and summarising conversations, and the workflow trigger it feeds.
--
-- A visitor's message records a 'classify' job in the transaction that appends it, and
-- a conversation that ends (or reaches another N messages) records a 'summarize' job in
-- the transaction that ends it: a rolled-back change records nothing, a committed one
-- cannot lose its job. A worker claims jobs under a lease, like the other queues, and
-- never holds up the visitor's request: the model or classifier runs after commit.

CREATE TABLE syntera.insight_jobs (
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind IN ('classify', 'summarize')),
  conversation_id text NOT NULL,
  -- classify: the visitor's message; summarize: NULL.
  message_id text,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'done', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  run_after timestamptz NOT NULL DEFAULT now(),
  lease_token uuid,
  lease_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (company_id, id),
  CHECK ((kind = 'classify') = (message_id IS NOT NULL))
);
-- One classification per message; one waiting summary per conversation (a later
-- request folds into it).
CREATE UNIQUE INDEX insight_jobs_one_classify
  ON syntera.insight_jobs (company_id, conversation_id, message_id) WHERE kind = 'classify';
CREATE UNIQUE INDEX insight_jobs_one_summary
  ON syntera.insight_jobs (company_id, conversation_id)
  WHERE kind = 'summarize' AND status = 'pending';
CREATE INDEX insight_jobs_due ON syntera.insight_jobs (run_after)
  WHERE status IN ('pending', 'running');
CREATE INDEX insight_jobs_finished ON syntera.insight_jobs (company_id, finished_at)
  WHERE status IN ('done', 'failed');

ALTER TABLE syntera.insight_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE syntera.insight_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY insight_jobs_service ON syntera.insight_jobs
  FOR ALL TO service_role USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON syntera.insight_jobs TO service_role;

-- Recorded by whoever appends the message or ends the conversation: a member of the
-- company (checked here) or the system.
CREATE FUNCTION private.request_insight(
  p_company uuid, p_kind text, p_conversation text, p_message text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- The current role and the caller's own users row decide (migration 018), never a
  -- claim the transaction could set.
  IF NOT private.acts_for(p_company) THEN
    RAISE EXCEPTION 'not a member of this company' USING ERRCODE = '42501';
  END IF;
  INSERT INTO syntera.insight_jobs (company_id, kind, conversation_id, message_id)
  VALUES (p_company, p_kind, p_conversation, p_message)
  ON CONFLICT DO NOTHING;
  PERFORM pg_notify('syntera_insights', '');
END;
$$;
REVOKE ALL ON FUNCTION private.request_insight(uuid, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.request_insight(uuid, text, text, text)
  TO authenticated, service_role;
-- Owned by the definer role, as every definer function (migration 023), where it exists.
DO $owner$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_definer') THEN
    GRANT CREATE ON SCHEMA private TO syntera_definer;
    ALTER FUNCTION private.request_insight(uuid, text, text, text) OWNER TO syntera_definer;
    REVOKE CREATE ON SCHEMA private FROM syntera_definer;
  END IF;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
  RAISE NOTICE 'private.request_insight keeps its owner: %', SQLERRM;
END
$owner$;

-- The intents a company's visitors' messages are sorted into (NULL: the defaults,
-- question, complaint, purchase, cancel, human); its managers set them.
ALTER TABLE public.companies ADD COLUMN intent_labels text[]
  CHECK (cardinality(intent_labels) BETWEEN 1 AND 20);
INSERT INTO syntera.column_access (table_name, column_name, written_by)
VALUES ('companies', 'intent_labels', 'client_update');
SELECT syntera.apply_column_access();

-- Workflows started by a classified intent (trigger_config: intent, min_confidence).
ALTER TABLE public.workflows DROP CONSTRAINT workflows_trigger_type_check;
ALTER TABLE public.workflows ADD CONSTRAINT workflows_trigger_type_check
  CHECK (trigger_type IN (
    'conversation_started', 'conversation_ended', 'message_received', 'purchase_intent',
    'message_intent', 'contact_created', 'contact_updated', 'deal_created',
    'deal_stage_changed', 'webhook'
  ));
