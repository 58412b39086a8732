-- Invitations are accepted explicitly.
--
-- Until now a new account joined whichever company had most recently invited its email,
-- so a second company could pre-empt an invitation by inviting the same address later.
-- From here on, signing up joins no company: the user lists the invitations addressed to
-- their email (public.pending_invitations()) and accepts one (public.accept_invitation()).
--
-- Upgrade path: invitations pending when this runs stay pending and are listed and
-- accepted the new way; members who joined by the old rule stay members.

CREATE OR REPLACE FUNCTION private.handle_new_auth_user() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  BEGIN
    IF NEW.email IS NULL THEN
      RETURN NEW;
    END IF;
    INSERT INTO public.users (id, email) VALUES (NEW.id, lower(NEW.email))
    ON CONFLICT (id) DO NOTHING;
    RETURN NEW;
  END
  $$;

-- The caller's pending, unexpired invitations, newest first, with the inviting company's
-- name (which RLS would otherwise hide from someone who is not yet a member).
CREATE FUNCTION public.pending_invitations()
  RETURNS TABLE (
    id uuid, company_id uuid, company_name text, role text, invited_by uuid,
    expires_at timestamptz, created_at timestamptz
  )
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$
    SELECT i.id, i.company_id, c.name, i.role, i.invited_by, i.expires_at, i.created_at
      FROM public.invitations i
      JOIN public.companies c ON c.id = i.company_id
      JOIN auth.users u ON u.id = auth.uid()
     WHERE i.email = lower(u.email) AND i.accepted_at IS NULL AND i.expires_at > now()
     ORDER BY i.created_at DESC, i.id DESC
     LIMIT 100
  $$;

-- Join the inviting company with the invited role. Only the invitation's addressee may
-- accept it, once, before it expires, and only while they belong to no company; the
-- accepted membership row is returned.
CREATE FUNCTION public.accept_invitation(invitation_id uuid) RETURNS SETOF public.users
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = ''
  AS $$
  DECLARE
    invitation public.invitations;
  BEGIN
    SELECT i.* INTO invitation
      FROM public.invitations i
      JOIN auth.users u ON u.id = auth.uid()
     WHERE i.id = invitation_id AND i.email = lower(u.email)
       AND i.accepted_at IS NULL AND i.expires_at > now()
       FOR UPDATE OF i;
    IF invitation.id IS NULL THEN
      RAISE EXCEPTION 'no pending invitation % for you', invitation_id
        USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (
      SELECT 1 FROM public.users WHERE id = auth.uid() AND company_id IS NOT NULL
    ) THEN
      RAISE EXCEPTION 'you already belong to a company' USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE public.invitations SET accepted_at = now() WHERE id = invitation.id;
    RETURN QUERY
      UPDATE public.users SET company_id = invitation.company_id, role = invitation.role
       WHERE id = auth.uid()
      RETURNING *;
  END
  $$;

REVOKE ALL ON FUNCTION public.pending_invitations() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.accept_invitation(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pending_invitations() TO authenticated;
GRANT EXECUTE ON FUNCTION public.accept_invitation(uuid) TO authenticated;
