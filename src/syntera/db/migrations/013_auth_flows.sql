-- The rest of Supabase Auth: one-time tokens (recovery, magic links and codes, email
-- confirmation and change), the mail they travel in, and asymmetric signing keys.
-- Like the sessions (005), these live in the `syntera` schema and only the auth server
-- touches them, as service_role.

-- One row per token sent. A mail carries a link token and a six-digit code for the same
-- row; both are stored as SHA-256 digests, and the first use of either spends the row.
CREATE TABLE syntera.auth_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  kind text NOT NULL
    CHECK (kind IN ('recovery', 'magiclink', 'signup', 'invite', 'email_change')),
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  email text NOT NULL,           -- where it was sent (the new address for email_change)
  link_hash bytea NOT NULL UNIQUE CHECK (length(link_hash) = 32),
  code_hash bytea NOT NULL CHECK (length(code_hash) = 32),
  redirect_to text,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX idx_auth_tokens_code ON syntera.auth_tokens (lower(email), code_hash)
  WHERE used_at IS NULL;
CREATE INDEX idx_auth_tokens_user ON syntera.auth_tokens (user_id) WHERE used_at IS NULL;

-- Mail asked for, written in the transaction that asked. A request records only what was
-- asked (the kind and the address): the mail worker finds the account, issues the token
-- and sends the mail, or drops the request when there is no such account. So a request
-- does the same work whether or not the address has an account, and its answer and its
-- timing cannot tell. Delivery (SMTP, or the embedded default's local outbox) is retried
-- with backoff under a lease; no link is ever stored here.
CREATE TABLE syntera.mail_outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('recovery', 'magiclink', 'signup', 'email_change')),
  email text NOT NULL,           -- the address asked about (email_change: see user_id)
  user_id uuid REFERENCES auth.users (id) ON DELETE CASCADE,  -- set: email is the new address
  redirect_to text NOT NULL,
  base_url text NOT NULL,        -- this API's public URL, for the link
  created_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0,
  leased_until timestamptz,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  done_at timestamptz,
  outcome text CHECK (outcome IN ('sent', 'no_account')),
  last_error text
);
CREATE INDEX idx_mail_outbox_pending ON syntera.mail_outbox (next_attempt_at)
  WHERE done_at IS NULL;

CREATE FUNCTION syntera.notify_mail() RETURNS trigger
  LANGUAGE plpgsql AS $fn$
  BEGIN
    PERFORM pg_notify('syntera_mail', NEW.id::text);
    RETURN NEW;
  END
$fn$;
CREATE TRIGGER on_mail_queued AFTER INSERT ON syntera.mail_outbox
  FOR EACH ROW EXECUTE FUNCTION syntera.notify_mail();

-- Access-token signing keys (ES256), as Supabase's JWT signing keys: the newest key
-- whose signing_from has passed signs; every key not retired verifies. A key starts
-- signing a while after it is added, so that every API process knows it first.
CREATE TABLE syntera.signing_keys (
  kid text PRIMARY KEY,
  algorithm text NOT NULL DEFAULT 'ES256' CHECK (algorithm IN ('ES256')),
  private_key text NOT NULL,     -- PKCS#8 PEM
  public_jwk jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  signing_from timestamptz NOT NULL DEFAULT now(),
  retired_at timestamptz
);

GRANT SELECT, INSERT, UPDATE, DELETE ON syntera.auth_tokens, syntera.mail_outbox,
  syntera.signing_keys TO service_role;

-- The admin API deletes accounts.
DO $grants$
BEGIN
  GRANT DELETE ON auth.users TO service_role;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'auth.users is managed by Supabase Auth; no grant needed';
END
$grants$;
