-- Member departures: a member who leaves a company (removed by `DELETE /v1/team/{id}`,
-- by `remove_team_member()` through /rest/v1, or whose account is deleted) leaves the
-- conversations assigned to them, which live in MongoDB. The departure is recorded here by
-- a trigger, in the transaction that changes the membership, whatever path changed it; a
-- worker (syntera.conversations.departures) unassigns the conversations once that has
-- committed (never for a change that rolled back), under a lease, and deletes the row.

CREATE TABLE syntera.member_departures (
  company_id uuid NOT NULL REFERENCES public.companies (id) ON DELETE CASCADE,
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL,  -- no foreign key: a deleted account departs too
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  run_after timestamptz NOT NULL DEFAULT now(),
  lease_token uuid,
  lease_expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (company_id, id)
);
CREATE INDEX member_departures_due ON syntera.member_departures (run_after);

ALTER TABLE syntera.member_departures ENABLE ROW LEVEL SECURITY;
ALTER TABLE syntera.member_departures FORCE ROW LEVEL SECURITY;
CREATE POLICY member_departures_service ON syntera.member_departures
  FOR ALL TO service_role USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON syntera.member_departures TO service_role;

-- A company being deleted sets its members' company_id to NULL: nothing departs from a
-- company that is gone (its conversations are purged with it).
CREATE FUNCTION private.record_departure() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO syntera.member_departures (company_id, user_id)
  SELECT OLD.company_id, OLD.id
  WHERE EXISTS (SELECT 1 FROM public.companies c WHERE c.id = OLD.company_id);
  IF FOUND THEN
    PERFORM pg_notify('syntera_member_departures', '');
  END IF;
  RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION private.record_departure() FROM PUBLIC;
-- Owned by the definer role, as every definer function (migration 023), where it exists.
DO $owner$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_definer') THEN
    GRANT CREATE ON SCHEMA private TO syntera_definer;
    ALTER FUNCTION private.record_departure() OWNER TO syntera_definer;
    REVOKE CREATE ON SCHEMA private FROM syntera_definer;
  END IF;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
  RAISE NOTICE 'private.record_departure keeps its owner: %', SQLERRM;
END
$owner$;

CREATE TRIGGER record_departure
  AFTER UPDATE OF company_id ON public.users
  FOR EACH ROW
  WHEN (OLD.company_id IS NOT NULL AND OLD.company_id IS DISTINCT FROM NEW.company_id)
  EXECUTE FUNCTION private.record_departure();

CREATE TRIGGER record_departure_of_deleted
  AFTER DELETE ON public.users
  FOR EACH ROW
  WHEN (OLD.company_id IS NOT NULL)
  EXECUTE FUNCTION private.record_departure();
