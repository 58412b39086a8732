-- Agent replies: the durable work of answering a visitor.
--
-- A visitor's message (sender "user") to a conversation in an enabled agent's hands
-- records a reply job in the transaction that appends it: a rolled-back append records
-- nothing, a committed one cannot lose its reply. One job per conversation waits at a
-- time: messages that arrive while it waits (or while an earlier one is being written)
-- fold into it, so a visitor gets one answer per turn. A worker claims it under a lease
-- (like the other queues); `reply_id`, chosen at the first claim and kept, is the
-- MongoDB _id of the reply, so a worker killed mid-answer is taken over and the reply
-- is stored once.

CREATE TABLE syntera.agent_replies (
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  conversation_id text NOT NULL,
  agent_id uuid NOT NULL,
  -- The newest visitor message the reply answers, and when the turn's first one came.
  last_message_id text NOT NULL,
  first_message_at timestamptz NOT NULL DEFAULT now(),
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'done', 'failed')),
  reply_id text,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  run_after timestamptz NOT NULL DEFAULT now(),
  lease_token uuid,
  lease_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (company_id, id)
);
-- The one waiting job of a conversation, which later messages fold into.
CREATE UNIQUE INDEX agent_replies_one_pending
  ON syntera.agent_replies (company_id, conversation_id) WHERE status = 'pending';
CREATE INDEX agent_replies_due ON syntera.agent_replies (run_after)
  WHERE status IN ('pending', 'running');
CREATE INDEX agent_replies_running
  ON syntera.agent_replies (company_id, conversation_id) WHERE status = 'running';

ALTER TABLE syntera.agent_replies ENABLE ROW LEVEL SECURITY;
ALTER TABLE syntera.agent_replies FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_replies_service ON syntera.agent_replies
  FOR ALL TO service_role USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON syntera.agent_replies TO service_role;

-- Recorded by whoever appends the visitor's message: a member of the company (checked
-- here) or the system. Nothing is recorded for a disabled agent.
CREATE FUNCTION private.request_agent_reply(
  p_company uuid, p_conversation text, p_agent uuid, p_message text
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- The current role and the caller's own users row decide (migration 018), never a
  -- claim the transaction could set.
  IF NOT private.acts_for(p_company) THEN
    RAISE EXCEPTION 'not a member of this company' USING ERRCODE = '42501';
  END IF;
  INSERT INTO syntera.agent_replies (company_id, conversation_id, agent_id, last_message_id)
  SELECT p_company, p_conversation, p_agent, p_message
  FROM public.agent_configs a
  WHERE a.company_id = p_company AND a.id = p_agent AND a.enabled
  ON CONFLICT (company_id, conversation_id) WHERE status = 'pending'
  DO UPDATE SET last_message_id = EXCLUDED.last_message_id;
  PERFORM pg_notify('syntera_agent_replies', '');
END;
$$;
REVOKE ALL ON FUNCTION private.request_agent_reply(uuid, text, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.request_agent_reply(uuid, text, uuid, text)
  TO authenticated, service_role;
-- Owned by the definer role, as every definer function (migration 023), where it exists.
DO $owner$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_definer') THEN
    GRANT CREATE ON SCHEMA private TO syntera_definer;
    ALTER FUNCTION private.request_agent_reply(uuid, text, uuid, text) OWNER TO syntera_definer;
    REVOKE CREATE ON SCHEMA private FROM syntera_definer;
  END IF;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
  RAISE NOTICE 'private.request_agent_reply keeps its owner: %', SQLERRM;
END
$owner$;

-- The tokens a finished reply used (what the company's monthly budget counts).
ALTER TABLE syntera.agent_replies ADD COLUMN tokens_used bigint NOT NULL DEFAULT 0;
CREATE INDEX agent_replies_finished ON syntera.agent_replies (company_id, finished_at)
  WHERE tokens_used > 0;

-- A company's monthly token budget for its agents (NULL: unlimited); its managers set it.
ALTER TABLE public.companies ADD COLUMN monthly_token_budget bigint
  CHECK (monthly_token_budget >= 0);
INSERT INTO syntera.column_access (table_name, column_name, written_by)
VALUES ('companies', 'monthly_token_budget', 'client_update');
SELECT syntera.apply_column_access();
