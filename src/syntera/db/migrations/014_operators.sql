-- Platform operators and the size history they watch.
--
-- An operator is a user marked by `syntera admin grant EMAIL`, listed here (a table of our
-- own: auth.users is Supabase Auth's, and its columns are not ours to use). An operator
-- belongs to no company, so row-level security shows them no company's rows; the
-- operator views of /v1/admin read statistics (sizes, queues, pools) through the owner
-- connection, never business rows.
CREATE TABLE syntera.operators (
    user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    granted_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION private.is_operator() RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$
    SELECT EXISTS (
      SELECT 1 FROM syntera.operators o
       WHERE o.user_id = auth.uid()
         -- never both: an operator who joins a company sees it as a member only
         AND NOT EXISTS (SELECT 1 FROM public.users p
                          WHERE p.id = o.user_id AND p.company_id IS NOT NULL))
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
