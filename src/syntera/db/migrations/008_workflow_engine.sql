-- Workflows that run: an event queue filled by triggers in the same transaction as the
-- change, and executions that are both the audit trail and the run queue.
--
-- A change that may start workflows (a contact or deal written, a conversation event
-- recorded in analytics_events, an inbound webhook) adds a row to workflow_events in its
-- own transaction, only when the company has an enabled workflow of that trigger type:
-- nothing is lost if the process dies after commit, and nothing runs for a rolled-back
-- change. NOTIFY (sent at commit) wakes the workers. A worker (service_role) turns each
-- event into one pending execution per matching workflow, then runs executions node by
-- node under a lease; each node's effect and its recorded result commit together.
--
-- Loop guard: an action's transaction sets `syntera.workflow_depth`; events it causes
-- carry depth + 1, and the worker starts nothing from an event deeper than its limit.

CREATE TABLE public.workflow_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  event_type text NOT NULL,
  data jsonb NOT NULL DEFAULT '{}',
  workflow_id uuid,  -- an inbound webhook names its workflow
  depth integer NOT NULL DEFAULT 0 CHECK (depth >= 0),
  caused_by uuid,    -- the execution whose action caused it
  created_at timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz,
  UNIQUE (company_id, id)
);
CREATE INDEX idx_workflow_events_due ON public.workflow_events (id) WHERE processed_at IS NULL;
CREATE INDEX idx_workflow_events_company ON public.workflow_events (company_id, created_at);

ALTER TABLE public.workflow_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.workflow_events FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.workflow_events TO service_role;

-- Executions: 'completed' becomes 'success'; the run's queue state joins the audit trail.
ALTER TABLE public.workflow_executions DROP CONSTRAINT workflow_executions_status_check;
UPDATE public.workflow_executions SET status = 'success' WHERE status = 'completed';
ALTER TABLE public.workflow_executions
  ADD CONSTRAINT workflow_executions_status_check
    CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
  ADD COLUMN triggered_by text NOT NULL DEFAULT 'event'
    CHECK (triggered_by IN ('event', 'webhook', 'test')),
  ADD COLUMN event_id bigint,
  ADD COLUMN depth integer NOT NULL DEFAULT 0,
  ADD COLUMN frontier jsonb NOT NULL DEFAULT '[]',
  ADD COLUMN run_after timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN attempts integer NOT NULL DEFAULT 0,
  ADD COLUMN lease_token uuid,
  ADD COLUMN lease_expires_at timestamptz,
  ADD COLUMN execution_time_ms integer,
  ADD CONSTRAINT workflow_executions_once_per_event UNIQUE (workflow_id, event_id);
CREATE INDEX idx_workflow_executions_due ON public.workflow_executions (run_after)
  WHERE status IN ('pending', 'running');

-- The per-workflow secret: inbound webhooks present it, outbound webhooks are signed with it.
ALTER TABLE public.workflows
  ADD COLUMN secret text NOT NULL
    DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');

-- Enqueue (SECURITY DEFINER: the caller, a member, cannot write the queue directly).
CREATE FUNCTION private.enqueue_workflow_event(
  company uuid, kind text, payload jsonb, workflow uuid DEFAULT NULL
) RETURNS void
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  BEGIN
    IF NOT EXISTS (
      SELECT 1 FROM public.workflows w
      WHERE w.company_id = company AND w.enabled AND w.trigger_type = kind
        AND (workflow IS NULL OR w.id = workflow)
    ) THEN
      RETURN;
    END IF;
    INSERT INTO public.workflow_events (company_id, event_type, data, workflow_id, depth, caused_by)
    VALUES (
      company, kind, payload, workflow,
      coalesce(nullif(current_setting('syntera.workflow_depth', true), '')::int, 0),
      nullif(current_setting('syntera.workflow_execution', true), '')::uuid
    );
    PERFORM pg_notify('syntera_workflow_events', '');
  END
  $$;
-- Only the triggers below (SECURITY DEFINER, called by no one directly) and the system
-- may enqueue: a member calling it could name another company.
REVOKE ALL ON FUNCTION private.enqueue_workflow_event(uuid, text, jsonb, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.enqueue_workflow_event(uuid, text, jsonb, uuid)
  TO service_role;

CREATE FUNCTION private.contact_events() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  DECLARE
    changed text[];
  BEGIN
    IF TG_OP = 'INSERT' THEN
      PERFORM private.enqueue_workflow_event(NEW.company_id, 'contact_created',
        jsonb_build_object('contact_id', NEW.id, 'contact', to_jsonb(NEW)));
    ELSE
      SELECT array_agg(n.key ORDER BY n.key) INTO changed
      FROM jsonb_each(to_jsonb(NEW)) n JOIN jsonb_each(to_jsonb(OLD)) o USING (key)
      WHERE n.value IS DISTINCT FROM o.value AND n.key NOT IN ('updated_at');
      IF changed IS NOT NULL THEN
        PERFORM private.enqueue_workflow_event(NEW.company_id, 'contact_updated',
          jsonb_build_object('contact_id', NEW.id, 'contact', to_jsonb(NEW),
                             'changed', to_jsonb(changed)));
      END IF;
    END IF;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER workflow_events AFTER INSERT OR UPDATE ON public.contacts
  FOR EACH ROW EXECUTE FUNCTION private.contact_events();

CREATE FUNCTION private.deal_events() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  BEGIN
    IF TG_OP = 'INSERT' THEN
      PERFORM private.enqueue_workflow_event(NEW.company_id, 'deal_created',
        jsonb_build_object('deal_id', NEW.id, 'contact_id', NEW.contact_id,
                           'deal', to_jsonb(NEW)));
    ELSIF NEW.stage IS DISTINCT FROM OLD.stage THEN
      PERFORM private.enqueue_workflow_event(NEW.company_id, 'deal_stage_changed',
        jsonb_build_object('deal_id', NEW.id, 'contact_id', NEW.contact_id,
                           'from_stage', OLD.stage, 'to_stage', NEW.stage,
                           'deal', to_jsonb(NEW)));
    END IF;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER workflow_events AFTER INSERT OR UPDATE ON public.deals
  FOR EACH ROW EXECUTE FUNCTION private.deal_events();

-- Conversations live in MongoDB; their events are recorded in analytics_events in the
-- request's PostgreSQL transaction, and start workflows from there.
CREATE FUNCTION private.conversation_events() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  DECLARE
    payload jsonb := jsonb_build_object(
      'conversation_id', NEW.conversation_id, 'contact_id', NEW.contact_id,
      'agent_id', NEW.agent_id, 'properties', NEW.properties);
  BEGIN
    IF NEW.event_type = 'conversation.started' THEN
      PERFORM private.enqueue_workflow_event(NEW.company_id, 'conversation_started', payload);
    ELSIF NEW.event_type = 'conversation.ended' THEN
      PERFORM private.enqueue_workflow_event(NEW.company_id, 'conversation_ended', payload);
    ELSIF NEW.event_type = 'message.received' THEN
      PERFORM private.enqueue_workflow_event(NEW.company_id, 'message_received', payload);
      IF NEW.properties -> 'intent' ->> 'category' = 'purchase' THEN
        PERFORM private.enqueue_workflow_event(NEW.company_id, 'purchase_intent', payload);
      END IF;
    END IF;
    RETURN NULL;
  END
  $$;
CREATE TRIGGER workflow_events AFTER INSERT ON public.analytics_events
  FOR EACH ROW EXECUTE FUNCTION private.conversation_events();
