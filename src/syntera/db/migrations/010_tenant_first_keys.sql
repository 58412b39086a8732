-- Tenant-first keys, so the schema can be distributed by company_id (Citus) unchanged.
--
-- Citus's rules for a table distributed by company_id: its primary key and every unique
-- constraint contain company_id, and a foreign key to another distributed table includes
-- company_id on both sides (foreign keys to reference tables are fine). Every table below
-- already references its tenant's rows through (company_id, id); this makes (company_id,
-- id) the primary key, in place of the (company_id, id) unique constraint that served the
-- references, and gives the remaining unique constraints their company. The plan that
-- `syntera db distribution-plan` prints, and tests/db/test_distribution.py, say which
-- tables are distributed, which are reference tables and which stay local.
--
-- Lookups by id alone (the queues' workers, inbound webhooks) keep a plain index on id:
-- ids come from gen_random_uuid() (or a sequence), so they stay unique without the
-- database having to prove it across shards.

CREATE FUNCTION pg_temp.tenant_first(tbl text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  fk record;
  fks text[] := '{}';
  definition text;
BEGIN
  -- The foreign keys that rely on the (company_id, id) unique constraint go first, and
  -- come back (same names, same rules) once the primary key can serve them.
  FOR fk IN
    SELECT c.conrelid::regclass AS owner, c.conname, pg_get_constraintdef(c.oid) AS def
      FROM pg_constraint c
     WHERE c.contype = 'f' AND c.confrelid = format('public.%I', tbl)::regclass
  LOOP
    fks := fks || format('ALTER TABLE %s ADD CONSTRAINT %I %s', fk.owner, fk.conname, fk.def);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', fk.owner, fk.conname);
  END LOOP;
  EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', tbl, tbl || '_company_id_id_key');
  EXECUTE format('ALTER TABLE public.%I DROP CONSTRAINT %I', tbl, tbl || '_pkey');
  EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I PRIMARY KEY (company_id, id)',
                 tbl, tbl || '_pkey');
  FOREACH definition IN ARRAY fks LOOP
    EXECUTE definition;
  END LOOP;
END
$$;

SELECT pg_temp.tenant_first(tbl) FROM unnest(ARRAY[
  'invitations', 'agent_configs', 'contacts', 'deals', 'knowledge_base_documents',
  'knowledge_base_chunks', 'workflows', 'workflow_executions', 'workflow_events',
  'call_recordings', 'call_history', 'analytics_events', 'notifications'
]) AS tbl;

-- Unique constraints that lacked their company.
ALTER TABLE public.workflow_executions
  DROP CONSTRAINT workflow_executions_once_per_event,
  ADD CONSTRAINT workflow_executions_once_per_event UNIQUE (company_id, workflow_id, event_id);
ALTER TABLE public.knowledge_base_chunks
  DROP CONSTRAINT knowledge_base_chunks_document_id_chunk_index_key,
  ADD CONSTRAINT knowledge_base_chunks_document_id_chunk_index_key
    UNIQUE (company_id, document_id, chunk_index);

-- A widget key is looked up before its company is known, so its index cannot start with
-- company_id; it is no longer unique in the database's eyes: keys are 192 random bits
-- (stored as their SHA-256), so two agents never hold the same one.
DROP INDEX public.idx_agent_configs_public_api_key;
CREATE INDEX idx_agent_configs_public_api_key
  ON public.agent_configs (public_api_key) WHERE public_api_key IS NOT NULL;

-- Lookups by id alone.
CREATE INDEX idx_knowledge_base_documents_id ON public.knowledge_base_documents (id);
CREATE INDEX idx_workflows_id ON public.workflows (id);
CREATE INDEX idx_workflow_executions_id ON public.workflow_executions (id);
CREATE INDEX idx_workflow_events_id ON public.workflow_events (id);
