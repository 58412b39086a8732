-- A row names only its own company's users.
--
-- workflows.created_by, invitations.invited_by, notifications.user_id and
-- analytics_events.user_id reference public.users (id) alone (a user may belong to no
-- company, so the reference cannot be composite): a member could name another company's
-- user, and the foreign key's error told which user ids exist. A trigger now refuses,
-- before the foreign key is checked, any user who is not a member of the row's company,
-- with one answer whether that user exists elsewhere or not at all. Whoever writes:
-- members (who also cannot change these columns after the insert, 018) and the system
-- (the service key names a company and a user). A member's row for another company is
-- left to the policies, which refuse it without saying anything about its users.

CREATE FUNCTION private.check_member_reference() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, pg_temp
  AS $$
  DECLARE
    v_user uuid := (to_jsonb(NEW) ->> TG_ARGV[0])::uuid;
  BEGIN
    -- A member writing into another company is refused by the policies, after this
    -- trigger: answering here would tell who belongs to that company.
    IF current_setting('role') IN ('anon', 'authenticated') AND NOT EXISTS (
      SELECT 1 FROM private.caller_membership m WHERE m.company_id = NEW.company_id
    ) THEN
      RETURN NEW;
    END IF;
    IF v_user IS NOT NULL AND NOT EXISTS (
      SELECT 1 FROM public.users u WHERE u.id = v_user AND u.company_id = NEW.company_id
    ) THEN
      RAISE EXCEPTION '% is not a member of the company', TG_ARGV[0]
        USING ERRCODE = 'foreign_key_violation', COLUMN = TG_ARGV[0];
    END IF;
    RETURN NEW;
  END
  $$;
REVOKE ALL ON FUNCTION private.check_member_reference() FROM PUBLIC;

CREATE TRIGGER check_created_by BEFORE INSERT OR UPDATE OF created_by ON public.workflows
  FOR EACH ROW EXECUTE FUNCTION private.check_member_reference('created_by');
CREATE TRIGGER check_invited_by BEFORE INSERT OR UPDATE OF invited_by ON public.invitations
  FOR EACH ROW EXECUTE FUNCTION private.check_member_reference('invited_by');
CREATE TRIGGER check_user_id BEFORE INSERT OR UPDATE OF user_id ON public.notifications
  FOR EACH ROW EXECUTE FUNCTION private.check_member_reference('user_id');
CREATE TRIGGER check_user_id BEFORE INSERT OR UPDATE OF user_id ON public.analytics_events
  FOR EACH ROW EXECUTE FUNCTION private.check_member_reference('user_id');
