-- Purges: what deleting a company leaves to do outside PostgreSQL.
--
-- PostgreSQL removes a company's rows by cascade; its conversations (MongoDB), files (disk
-- or S3), vectors (Pinecone) and keys (Redis) are removed by a worker. The purge is
-- recorded by a trigger in the same transaction as the delete, whatever deleted the
-- company (the API, SQL): a rolled-back delete records nothing, a committed one cannot
-- lose its purge. The worker claims purges under a lease, like the document queue, and
-- each step is idempotent, so a worker killed mid-purge is simply taken over.

CREATE TABLE syntera.purges (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind text NOT NULL CHECK (kind IN ('company')),
  company_id uuid NOT NULL,  -- no foreign key: the company is gone
  -- What the worker needs and can no longer read: the company's widget key digests.
  key_digests text[] NOT NULL DEFAULT '{}',
  status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'running', 'completed', 'failed')),
  -- One entry per store done: {"mongodb": {"conversations": n, "messages": n}, …}
  steps jsonb NOT NULL DEFAULT '{}',
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  run_after timestamptz NOT NULL DEFAULT now(),
  lease_token uuid,
  lease_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE INDEX idx_purges_due ON syntera.purges (run_after)
  WHERE status IN ('pending', 'running');
CREATE INDEX idx_purges_company ON syntera.purges (company_id);

GRANT SELECT, INSERT, UPDATE ON syntera.purges TO service_role;

-- BEFORE DELETE: the agents (and their key digests) are still there to be read; the
-- cascade removes them afterwards, in the same statement.
CREATE FUNCTION syntera.record_company_purge() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO syntera.purges (kind, company_id, key_digests)
  SELECT 'company', OLD.id, coalesce(array_agg(a.public_api_key), '{}')
  FROM public.agent_configs a
  WHERE a.company_id = OLD.id AND a.public_api_key IS NOT NULL;
  PERFORM pg_notify('syntera_purges', OLD.id::text);
  RETURN OLD;
END;
$$;
REVOKE ALL ON FUNCTION syntera.record_company_purge() FROM PUBLIC;

CREATE TRIGGER companies_record_purge
  BEFORE DELETE ON public.companies
  FOR EACH ROW EXECUTE FUNCTION syntera.record_company_purge();
