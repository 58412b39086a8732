-- The business tables of DATABASE_ARCHITECTURE.md, with the gaps it leaves closed.
--
-- Conventions (DESIGN.md, "Schema decisions beyond the seed"):
-- * ids come from gen_random_uuid() (built in; uuid-ossp is not always available);
-- * every tenant table carries company_id and UNIQUE (company_id, id), and references
--   between tenant tables are composite, so a row can never point into another tenant;
--   ON DELETE SET NULL (col) clears only the referencing column, never company_id;
-- * timestamps are NOT NULL (keyset pagination orders by them), updated_at by trigger;
-- * every foreign key and every column a policy filters on is indexed (in 003).

CREATE SCHEMA IF NOT EXISTS private;
COMMENT ON SCHEMA private IS
  'Helpers for policies and triggers. API roles may call, never create or change.';
REVOKE ALL ON SCHEMA private FROM PUBLIC;

CREATE FUNCTION private.set_updated_at() RETURNS trigger
  LANGUAGE plpgsql
  SET search_path = ''
  AS $$
  BEGIN
    NEW.updated_at := now();
    RETURN NEW;
  END
  $$;

-- Companies: the tenants. -----------------------------------------------------------------

CREATE TABLE public.companies (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 200),
  owner_id uuid DEFAULT auth.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  subscription_tier text NOT NULL DEFAULT 'starter'
    CHECK (subscription_tier IN ('starter', 'professional', 'enterprise')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Users: one row per auth.users row, the member's company and role. ----------------------

CREATE TABLE public.users (
  id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
  email text NOT NULL UNIQUE,
  company_id uuid REFERENCES public.companies (id) ON DELETE SET NULL,
  role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin', 'owner')),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id)
);

-- Invitations: how a user joins an existing company (the owner or an admin invites an
-- email; the user with that email joins with the invited role).
CREATE TABLE public.invitations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  email text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1),
  role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  invited_by uuid REFERENCES public.users (id) ON DELETE SET NULL,
  accepted_at timestamptz,
  expires_at timestamptz NOT NULL DEFAULT now() + interval '14 days',
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id),
  UNIQUE (company_id, email)
);

-- Agents ----------------------------------------------------------------------------------

CREATE TABLE public.agent_configs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (btrim(name) <> '' AND length(name) <= 200),
  description text,
  system_prompt text NOT NULL,
  model text NOT NULL DEFAULT 'gpt-4o-mini',
  temperature numeric(3, 2) NOT NULL DEFAULT 0.7 CHECK (temperature >= 0 AND temperature <= 2),
  max_tokens integer CHECK (max_tokens > 0 AND max_tokens <= 128000),
  voice_settings jsonb NOT NULL DEFAULT '{}',
  enabled boolean NOT NULL DEFAULT true,
  -- The widget key, stored as its SHA-256 digest; the key itself is shown once.
  -- Unique through the partial index idx_agent_configs_public_api_key.
  public_api_key text,
  avatar_url text,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id)
);

-- CRM -------------------------------------------------------------------------------------

CREATE TABLE public.contacts (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  email text,
  phone text,
  first_name text,
  last_name text,
  tags text[] NOT NULL DEFAULT '{}',
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id)
);

CREATE TABLE public.deals (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  contact_id uuid,
  title text NOT NULL CHECK (btrim(title) <> ''),
  value numeric(12, 2) CHECK (value >= 0),
  stage text NOT NULL DEFAULT 'lead'
    CHECK (stage IN ('lead', 'qualified', 'proposal', 'negotiation', 'closed-won', 'closed-lost')),
  probability integer NOT NULL DEFAULT 0 CHECK (probability >= 0 AND probability <= 100),
  expected_close_date date,
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id),
  FOREIGN KEY (company_id, contact_id)
    REFERENCES public.contacts (company_id, id) ON DELETE SET NULL (contact_id)
);

-- Knowledge base --------------------------------------------------------------------------

CREATE TABLE public.knowledge_base_documents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  agent_id uuid,
  name text NOT NULL CHECK (btrim(name) <> ''),
  file_path text NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'processing', 'completed', 'failed')),
  chunk_count integer NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
  vector_count integer NOT NULL DEFAULT 0 CHECK (vector_count >= 0),
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  processed_at timestamptz,
  UNIQUE (company_id, id),
  FOREIGN KEY (company_id, agent_id)
    REFERENCES public.agent_configs (company_id, id) ON DELETE SET NULL (agent_id)
);

-- Workflows -------------------------------------------------------------------------------

CREATE TABLE public.workflows (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (btrim(name) <> ''),
  description text,
  enabled boolean NOT NULL DEFAULT true,
  trigger_type text NOT NULL CHECK (trigger_type IN (
    'conversation_started', 'conversation_ended', 'message_received', 'purchase_intent',
    'contact_created', 'contact_updated', 'deal_created', 'deal_stage_changed', 'webhook'
  )),
  trigger_config jsonb NOT NULL DEFAULT '{}',
  nodes jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(nodes) = 'array'),
  edges jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(edges) = 'array'),
  created_by uuid REFERENCES public.users (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id)
);

-- The audit trail of workflow runs; written by the system (service_role) only.
CREATE TABLE public.workflow_executions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  workflow_id uuid NOT NULL,
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
  trigger_type text NOT NULL,
  trigger_data jsonb NOT NULL DEFAULT '{}',
  steps jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(steps) = 'array'),
  error text,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz CHECK (finished_at >= started_at),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id),
  FOREIGN KEY (company_id, workflow_id)
    REFERENCES public.workflows (company_id, id) ON DELETE CASCADE
);

-- Calls -----------------------------------------------------------------------------------

CREATE TABLE public.call_recordings (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  agent_id uuid,
  contact_id uuid,
  conversation_id text,  -- a MongoDB conversation id
  recording_url text NOT NULL,
  duration_seconds integer CHECK (duration_seconds >= 0),
  transcript text,
  started_at timestamptz NOT NULL DEFAULT now(),
  ended_at timestamptz CHECK (ended_at >= started_at),
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id),
  FOREIGN KEY (company_id, agent_id)
    REFERENCES public.agent_configs (company_id, id) ON DELETE SET NULL (agent_id),
  FOREIGN KEY (company_id, contact_id)
    REFERENCES public.contacts (company_id, id) ON DELETE SET NULL (contact_id)
);

CREATE TABLE public.call_history (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  agent_id uuid,
  contact_id uuid,
  recording_id uuid,
  conversation_id text,  -- a MongoDB conversation id
  direction text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
  status text NOT NULL DEFAULT 'completed' CHECK (status IN (
    'queued', 'ringing', 'in-progress', 'completed', 'failed', 'busy', 'no-answer', 'canceled'
  )),
  from_number text,
  to_number text,
  duration_seconds integer CHECK (duration_seconds >= 0),
  started_at timestamptz NOT NULL DEFAULT now(),
  ended_at timestamptz CHECK (ended_at >= started_at),
  metadata jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id),
  FOREIGN KEY (company_id, agent_id)
    REFERENCES public.agent_configs (company_id, id) ON DELETE SET NULL (agent_id),
  FOREIGN KEY (company_id, contact_id)
    REFERENCES public.contacts (company_id, id) ON DELETE SET NULL (contact_id),
  FOREIGN KEY (company_id, recording_id)
    REFERENCES public.call_recordings (company_id, id) ON DELETE SET NULL (recording_id)
);

-- Analytics -------------------------------------------------------------------------------

CREATE TABLE public.analytics_events (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  event_type text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.]{0,99}$'),
  agent_id uuid,
  contact_id uuid,
  user_id uuid REFERENCES public.users (id) ON DELETE SET NULL,
  conversation_id text,  -- a MongoDB conversation id
  properties jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id),
  FOREIGN KEY (company_id, agent_id)
    REFERENCES public.agent_configs (company_id, id) ON DELETE SET NULL (agent_id),
  FOREIGN KEY (company_id, contact_id)
    REFERENCES public.contacts (company_id, id) ON DELETE SET NULL (contact_id)
);

-- Notifications: to one user of a company; written by the system only. -------------------

CREATE TABLE public.notifications (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  type text NOT NULL CHECK (btrim(type) <> ''),
  title text NOT NULL,
  body text,
  data jsonb NOT NULL DEFAULT '{}',
  read_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, id)
);

-- updated_at maintenance ------------------------------------------------------------------

DO $triggers$
DECLARE
  table_name text;
BEGIN
  FOREACH table_name IN ARRAY ARRAY[
    'companies', 'users', 'agent_configs', 'contacts', 'deals', 'knowledge_base_documents',
    'workflows', 'call_recordings', 'call_history'
  ] LOOP
    EXECUTE format(
      'CREATE TRIGGER set_updated_at BEFORE UPDATE ON public.%I '
      'FOR EACH ROW EXECUTE FUNCTION private.set_updated_at()',
      table_name
    );
  END LOOP;
END
$triggers$;
