-- Widget keys: issued only by the database, and a digest names exactly one agent.
--
-- agent_configs.public_api_key (the key's SHA-256) was writable by members and, since
-- 010 dropped its unique index for Citus, no longer unique: a plain user of A could give
-- A's agent the digest of B's key (which B's web pages show to everyone), and B's
-- visitors could be served by A's agent. Now the column is the system's (018), a key is
-- made only by public.issue_widget_key(), and the widget finds its agent through
-- syntera.widget_keys, whose primary key is the digest: a reference table (every node has
-- it), so the lookup needs no company and a second agent with the same digest cannot be
-- stored. A trigger keeps it in step with agent_configs, whoever writes the column.

CREATE TABLE syntera.widget_keys (
  digest text PRIMARY KEY CHECK (digest ~ '^[0-9a-f]{64}$'),
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  agent_id uuid NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, agent_id)
);
GRANT SELECT ON syntera.widget_keys TO service_role;

-- Upgrade: the earliest agent keeps a digest that two agents hold; the others lose their
-- key (their owners issue a new one).
INSERT INTO syntera.widget_keys (digest, company_id, agent_id, created_at)
SELECT DISTINCT ON (public_api_key) public_api_key, company_id, id, created_at
  FROM public.agent_configs
 WHERE public_api_key ~ '^[0-9a-f]{64}$'
 ORDER BY public_api_key, created_at, company_id, id;
UPDATE public.agent_configs a SET public_api_key = NULL
 WHERE public_api_key IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM syntera.widget_keys k
                    WHERE k.company_id = a.company_id AND k.agent_id = a.id);

CREATE FUNCTION private.sync_widget_key() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
      DELETE FROM syntera.widget_keys WHERE company_id = OLD.company_id AND agent_id = OLD.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.public_api_key IS NOT NULL THEN
      INSERT INTO syntera.widget_keys (digest, company_id, agent_id)
      VALUES (NEW.public_api_key, NEW.company_id, NEW.id);
    END IF;
    RETURN NULL;
  END
  $$;
REVOKE ALL ON FUNCTION private.sync_widget_key() FROM PUBLIC;

CREATE TRIGGER sync_widget_key
  AFTER INSERT OR DELETE OR UPDATE OF public_api_key ON public.agent_configs
  FOR EACH ROW EXECUTE FUNCTION private.sync_widget_key();

-- A new widget key for an agent of the caller's company (any member; the system for any
-- company): made from 244 random bits here, stored as its SHA-256, returned once. NULL
-- when there is no such agent of that company. The old key stops working at once.
CREATE FUNCTION public.issue_widget_key(p_company uuid, p_agent uuid) RETURNS text
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    v_key text := 'pub_key_' || rtrim(translate(encode(decode(
      replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'),
      'base64'), '+/', '-_'), '=');
  BEGIN
    IF NOT private.acts_for(p_company) THEN
      RETURN NULL;
    END IF;
    UPDATE public.agent_configs
       SET public_api_key = encode(sha256(convert_to(v_key, 'UTF8')), 'hex')
     WHERE company_id = p_company AND id = p_agent;
    IF NOT FOUND THEN
      RETURN NULL;
    END IF;
    RETURN v_key;
  END
  $$;
REVOKE ALL ON FUNCTION public.issue_widget_key(uuid, uuid) FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.issue_widget_key(uuid, uuid) TO authenticated, service_role;
