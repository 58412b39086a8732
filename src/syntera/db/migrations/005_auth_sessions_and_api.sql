-- Sessions and refresh tokens of the built-in GoTrue-compatible auth server (/auth/v1),
-- the indexes of the API's contact search, and CHECK names the API reports.
--
-- The auth tables live in the `syntera` schema, not in `auth`: on Supabase the auth schema belongs to
-- GoTrue and is left alone. Only the auth server touches these tables, as service_role.

CREATE SCHEMA IF NOT EXISTS syntera;

-- One row per sign-in; logout revokes it, and with it every refresh token it issued.
CREATE TABLE syntera.auth_sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  refreshed_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX idx_auth_sessions_user ON syntera.auth_sessions (user_id) WHERE revoked_at IS NULL;

-- Refresh tokens are stored as their SHA-256 digest (a leaked table yields no usable
-- token). Each is used once: using it revokes it and issues its successor; presenting a
-- revoked token again revokes the whole session (reuse detection, as GoTrue does).
CREATE TABLE syntera.refresh_tokens (
  token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
  session_id uuid NOT NULL REFERENCES syntera.auth_sessions (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  revoked boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_refresh_tokens_session ON syntera.refresh_tokens (session_id);
CREATE INDEX idx_refresh_tokens_user ON syntera.refresh_tokens (user_id);

GRANT USAGE ON SCHEMA syntera TO service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON syntera.auth_sessions, syntera.refresh_tokens
  TO service_role;

-- The auth server reads and creates accounts as service_role. On Supabase, auth.users
-- belongs to GoTrue and a migration may not be allowed to grant on it: that is fine,
-- because there GoTrue itself serves /auth/v1.
DO $grants$
BEGIN
  GRANT USAGE ON SCHEMA auth TO service_role;
  GRANT SELECT, INSERT, UPDATE ON auth.users TO service_role;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'auth.users is managed by Supabase Auth; no grant needed';
END
$grants$;

-- Contact search (GET /v1/contacts?q=…): case-insensitive prefix matches on email, names
-- and phone within one company. text_pattern_ops lets LIKE 'prefix%' use the index.
CREATE INDEX idx_contacts_company_email_prefix
  ON public.contacts (company_id, lower(email) text_pattern_ops);
CREATE INDEX idx_contacts_company_first_name_prefix
  ON public.contacts (company_id, lower(first_name) text_pattern_ops);
CREATE INDEX idx_contacts_company_last_name_prefix
  ON public.contacts (company_id, lower(last_name) text_pattern_ops);
CREATE INDEX idx_contacts_company_phone_prefix
  ON public.contacts (company_id, phone text_pattern_ops);

-- Name the CHECKs that compare two columns after the column a client gets wrong, so the
-- API's 422 names it (PostgreSQL calls them <table>_check).
ALTER TABLE public.call_recordings
  RENAME CONSTRAINT call_recordings_check TO call_recordings_ended_at_check;
ALTER TABLE public.call_history
  RENAME CONSTRAINT call_history_check TO call_history_ended_at_check;
ALTER TABLE public.workflow_executions
  RENAME CONSTRAINT workflow_executions_check TO workflow_executions_finished_at_check;
