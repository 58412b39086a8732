-- A deleted company's id is never used again.
--
-- While a company's purge was pending, inserting a company with its id succeeded: the
-- newcomer would have been served the deleted company's documents in the other stores,
-- and the purge would then have deleted the newcomer's. Clients no longer choose a
-- company's id at all (018); this keeps the system (service_role, a tenant import) from
-- reusing one either. Every deleted company leaves its id here, recorded by the same
-- trigger, in the same transaction, as its purge.

CREATE TABLE syntera.deleted_companies (
  id uuid PRIMARY KEY,
  deleted_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO syntera.deleted_companies (id, deleted_at)
SELECT company_id, min(created_at) FROM syntera.purges
 WHERE kind = 'company'
 GROUP BY company_id;

-- As in 011, and the id kept. The notification carries nothing: any role may LISTEN,
-- and the ids of companies being purged are nobody's business (the worker reads the queue).
CREATE OR REPLACE FUNCTION syntera.record_company_purge() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  BEGIN
    INSERT INTO syntera.purges (kind, company_id, key_digests)
    SELECT 'company', OLD.id, coalesce(array_agg(a.public_api_key), '{}')
      FROM public.agent_configs a
     WHERE a.company_id = OLD.id AND a.public_api_key IS NOT NULL;
    INSERT INTO syntera.deleted_companies (id) VALUES (OLD.id) ON CONFLICT (id) DO NOTHING;
    PERFORM pg_notify('syntera_purges', '');
    RETURN OLD;
  END
  $$;

CREATE FUNCTION private.refuse_deleted_company_id() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  BEGIN
    IF EXISTS (SELECT 1 FROM syntera.deleted_companies d WHERE d.id = NEW.id) THEN
      RAISE EXCEPTION 'this company id belonged to a deleted company and is not used again'
        USING ERRCODE = 'unique_violation', COLUMN = 'id';
    END IF;
    RETURN NEW;
  END
  $$;
REVOKE ALL ON FUNCTION private.refuse_deleted_company_id() FROM PUBLIC;

CREATE TRIGGER refuse_deleted_company_id
  BEFORE INSERT OR UPDATE OF id ON public.companies
  FOR EACH ROW EXECUTE FUNCTION private.refuse_deleted_company_id();
