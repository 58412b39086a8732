-- Platform operators and the size history they watch.
--
-- An operator is a user marked by `syntera admin grant EMAIL`: auth.users.is_super_admin,
-- the column Supabase Auth has and leaves unused. An operator belongs to no company, so
-- row-level security shows them no company's rows; the operator views of /v1/admin read
-- statistics (sizes, queues, pools) through the owner connection, never business rows.

CREATE FUNCTION private.is_operator() RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$
    SELECT coalesce(
      (SELECT u.is_super_admin FROM auth.users u
        WHERE u.id = auth.uid() AND u.deleted_at IS NULL
          AND (u.banned_until IS NULL OR u.banned_until < now())
          -- never both: an operator who joins a company sees it as a member only
          AND NOT EXISTS (SELECT 1 FROM public.users p
                           WHERE p.id = u.id AND p.company_id IS NOT NULL)),
      false)
  $$;

REVOKE ALL ON FUNCTION private.is_operator() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION private.is_operator() TO authenticated;

-- One row per table or collection and sample: how big each was, so growth can be drawn.
CREATE TABLE syntera.size_samples (
    store text NOT NULL CHECK (store IN ('postgres', 'mongodb')),
    name text NOT NULL,
    sampled_at timestamptz NOT NULL DEFAULT now(),
    bytes bigint NOT NULL CHECK (bytes >= 0),
    rows_estimate bigint NOT NULL CHECK (rows_estimate >= 0),
    PRIMARY KEY (store, name, sampled_at)
);

CREATE INDEX idx_size_samples_sampled_at ON syntera.size_samples (sampled_at);
