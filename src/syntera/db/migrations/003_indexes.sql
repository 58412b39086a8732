-- Indexes: every one DATABASE_ARCHITECTURE.md lists (under its name), then one for every
-- foreign key and every column a policy or a hot list filters on.
--
-- Note: UNIQUE (company_id, id) on each tenant table already gives an index led by
-- company_id; the seed's single-column company_id indexes are kept as the seed asks.

-- The seed's single-column indexes.
CREATE INDEX idx_agent_configs_company_id ON public.agent_configs (company_id);
CREATE INDEX idx_contacts_company_id ON public.contacts (company_id);
CREATE INDEX idx_deals_company_id ON public.deals (company_id);
CREATE INDEX idx_kb_documents_status ON public.knowledge_base_documents (status);
CREATE INDEX idx_workflows_enabled ON public.workflows (enabled);
CREATE INDEX idx_analytics_events_created_at ON public.analytics_events (created_at);
CREATE INDEX idx_call_recordings_started_at ON public.call_recordings (started_at DESC);
CREATE INDEX idx_deals_stage ON public.deals (stage);

-- The seed's compound indexes.
CREATE INDEX idx_kb_documents_company_status
  ON public.knowledge_base_documents (company_id, status);
CREATE INDEX idx_kb_documents_company_created
  ON public.knowledge_base_documents (company_id, created_at DESC);
CREATE INDEX idx_call_history_company_started
  ON public.call_history (company_id, started_at DESC);

-- The seed's partial index, unique: a widget key identifies one agent.
CREATE UNIQUE INDEX idx_agent_configs_public_api_key
  ON public.agent_configs (public_api_key)
  WHERE public_api_key IS NOT NULL;

-- Companies and members.
CREATE INDEX idx_companies_owner_id ON public.companies (owner_id);
CREATE INDEX idx_invitations_pending_email
  ON public.invitations (email) WHERE accepted_at IS NULL;
CREATE INDEX idx_invitations_invited_by ON public.invitations (invited_by);

-- Newest-first lists within a tenant (keyset pagination on (created_at, id)).
CREATE INDEX idx_agent_configs_company_created
  ON public.agent_configs (company_id, created_at DESC, id DESC);
CREATE INDEX idx_contacts_company_created
  ON public.contacts (company_id, created_at DESC, id DESC);
CREATE INDEX idx_deals_company_created
  ON public.deals (company_id, created_at DESC, id DESC);
CREATE INDEX idx_workflows_company_created
  ON public.workflows (company_id, created_at DESC, id DESC);
CREATE INDEX idx_call_recordings_company_started
  ON public.call_recordings (company_id, started_at DESC, id DESC);
CREATE INDEX idx_analytics_events_company_created
  ON public.analytics_events (company_id, created_at DESC, id DESC);
CREATE INDEX idx_analytics_events_company_type_created
  ON public.analytics_events (company_id, event_type, created_at DESC);
CREATE INDEX idx_workflow_executions_workflow_started
  ON public.workflow_executions (company_id, workflow_id, started_at DESC);
CREATE INDEX idx_notifications_user_created
  ON public.notifications (user_id, created_at DESC);
CREATE INDEX idx_notifications_user_unread
  ON public.notifications (user_id) WHERE read_at IS NULL;

-- CRM filters: tags, pipeline by stage, deals of a contact.
CREATE INDEX idx_contacts_tags ON public.contacts USING gin (tags);
CREATE INDEX idx_deals_company_stage ON public.deals (company_id, stage);
CREATE INDEX idx_deals_company_contact ON public.deals (company_id, contact_id);

-- Workflows that fire on an event.
CREATE INDEX idx_workflows_company_trigger
  ON public.workflows (company_id, trigger_type) WHERE enabled;
CREATE INDEX idx_workflows_created_by ON public.workflows (created_by);

-- The remaining composite foreign keys (ON DELETE SET NULL needs to find the rows).
CREATE INDEX idx_kb_documents_company_agent
  ON public.knowledge_base_documents (company_id, agent_id);
CREATE INDEX idx_call_recordings_company_agent ON public.call_recordings (company_id, agent_id);
CREATE INDEX idx_call_recordings_company_contact
  ON public.call_recordings (company_id, contact_id);
CREATE INDEX idx_call_history_company_agent ON public.call_history (company_id, agent_id);
CREATE INDEX idx_call_history_company_contact ON public.call_history (company_id, contact_id);
CREATE INDEX idx_call_history_company_recording
  ON public.call_history (company_id, recording_id);
CREATE INDEX idx_analytics_events_company_agent ON public.analytics_events (company_id, agent_id);
CREATE INDEX idx_analytics_events_company_contact
  ON public.analytics_events (company_id, contact_id);
CREATE INDEX idx_analytics_events_user_id ON public.analytics_events (user_id);
