-- What Supabase provides, created only where it is missing, so that the same migrations
-- run on Supabase and on plain PostgreSQL (>= 15).
--
-- Roles (cluster-wide, so they may exist already from another database of this cluster):
--   anon, authenticated  the API's request roles; NOLOGIN, subject to row-level security
--   service_role         background services; NOLOGIN, BYPASSRLS
--   authenticator        the API's login role; NOINHERIT, so it holds no privilege of its
--                        own until a request does SET LOCAL ROLE to one of the three above

DO $roles$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator') THEN
    CREATE ROLE authenticator LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
  IF NOT pg_has_role('authenticator', 'anon', 'MEMBER') THEN
    GRANT anon TO authenticator;
  END IF;
  IF NOT pg_has_role('authenticator', 'authenticated', 'MEMBER') THEN
    GRANT authenticated TO authenticator;
  END IF;
  IF NOT pg_has_role('authenticator', 'service_role', 'MEMBER') THEN
    GRANT service_role TO authenticator;
  END IF;
END
$roles$;

-- The auth schema: on Supabase it exists (owned by supabase_auth_admin) and is left alone.
DO $auth$
BEGIN
  IF to_regclass('auth.users') IS NOT NULL THEN
    RETURN;
  END IF;

  CREATE SCHEMA IF NOT EXISTS auth;

  -- A subset of Supabase's auth.users, with the same names and types.
  CREATE TABLE auth.users (
    instance_id uuid,
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    aud varchar(255) DEFAULT 'authenticated',
    role varchar(255) DEFAULT 'authenticated',
    email varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb DEFAULT '{}'::jsonb,
    raw_user_meta_data jsonb DEFAULT '{}'::jsonb,
    is_super_admin boolean,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    banned_until timestamptz,
    deleted_at timestamptz,
    is_anonymous boolean NOT NULL DEFAULT false
  );
  CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email)) WHERE email IS NOT NULL;

  -- Supabase's definitions: the legacy per-claim setting first, then the claims JSON;
  -- an empty string counts as unset.
  CREATE FUNCTION auth.uid() RETURNS uuid
    LANGUAGE sql STABLE
    AS $fn$
      SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $fn$;

  CREATE FUNCTION auth.role() RETURNS text
    LANGUAGE sql STABLE
    AS $fn$
      SELECT coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
      )::text
    $fn$;

  CREATE FUNCTION auth.email() RETURNS text
    LANGUAGE sql STABLE
    AS $fn$
      SELECT coalesce(
        nullif(current_setting('request.jwt.claim.email', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
      )::text
    $fn$;

  CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $fn$
      SELECT coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
      )::jsonb
    $fn$;

  GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
  GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.email(), auth.jwt()
    TO anon, authenticated, service_role;
END
$auth$;
