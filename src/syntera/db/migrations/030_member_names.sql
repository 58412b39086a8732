-- Teammates' display names. A member's name is theirs to choose through Supabase Auth,
-- in their user_metadata (set at sign-up by options.data, changed by PUT /auth/v1/user
-- {"data": {...}}): `full_name`, else `name`, as Supabase's clients write it. The
-- database copies it into public.users.full_name, and public.users.name is what every
-- place that shows a teammate reads: the full name, else the email. Both columns live in
-- public.users, so its policies (one's own row and one's teammates') decide who reads
-- them, as they already do for the email; only the system writes them.

-- The name in a user_metadata document: `full_name`, else `name`, trimmed, at most 120
-- characters; NULL when neither is a non-blank string. A pure function of its argument:
-- callable by anyone, it reveals nothing.
CREATE FUNCTION private.name_in_metadata(metadata jsonb) RETURNS text
  LANGUAGE sql IMMUTABLE
  SET search_path = pg_catalog, pg_temp
  AS $$
    SELECT left(coalesce(
      nullif(btrim(CASE WHEN jsonb_typeof(metadata -> 'full_name') = 'string'
                        THEN metadata ->> 'full_name' END), ''),
      nullif(btrim(CASE WHEN jsonb_typeof(metadata -> 'name') = 'string'
                        THEN metadata ->> 'name' END), '')
    ), 120)
  $$;

ALTER TABLE public.users ADD COLUMN full_name text;
ALTER TABLE public.users
  ADD COLUMN name text GENERATED ALWAYS AS (coalesce(full_name, email)) STORED;
COMMENT ON COLUMN public.users.full_name IS
  'The name the user gave in their Supabase Auth user_metadata (full_name, else name).';
COMMENT ON COLUMN public.users.name IS
  'How the member is shown to their teammates: their full name, else their email.';

INSERT INTO syntera.column_access (table_name, column_name, written_by)
VALUES ('users', 'full_name', 'system'), ('users', 'name', 'system');
SELECT syntera.apply_column_access();

-- Runs after on_auth_user_created (triggers fire in name order), so a new user's
-- public.users row exists when their sign-up metadata is copied.
CREATE FUNCTION private.handle_auth_user_metadata() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  BEGIN
    UPDATE public.users SET full_name = private.name_in_metadata(NEW.raw_user_meta_data)
     WHERE id = NEW.id
       AND full_name IS DISTINCT FROM private.name_in_metadata(NEW.raw_user_meta_data);
    RETURN NEW;
  END
  $$;
REVOKE ALL ON FUNCTION private.handle_auth_user_metadata() FROM PUBLIC;

CREATE TRIGGER on_auth_user_named
  AFTER INSERT OR UPDATE OF raw_user_meta_data ON auth.users
  FOR EACH ROW EXECUTE FUNCTION private.handle_auth_user_metadata();

DO $owner$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'syntera_definer') THEN
    GRANT CREATE ON SCHEMA private TO syntera_definer;
    ALTER FUNCTION private.handle_auth_user_metadata() OWNER TO syntera_definer;
    REVOKE CREATE ON SCHEMA private FROM syntera_definer;
  END IF;
EXCEPTION WHEN insufficient_privilege OR feature_not_supported THEN
  RAISE NOTICE 'handle_auth_user_metadata keeps its owner: %', SQLERRM;
END
$owner$;

UPDATE public.users p SET full_name = private.name_in_metadata(a.raw_user_meta_data)
  FROM auth.users a
 WHERE a.id = p.id AND private.name_in_metadata(a.raw_user_meta_data) IS NOT NULL;
