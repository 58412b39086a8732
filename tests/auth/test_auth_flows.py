"""The rest of Supabase Auth through the real ``supabase-auth`` client: password and email
change, recovery, magic links and codes, email confirmation, the links read from the
local outbox, and the reuse, expiry and throttling of every kind of token."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import psycopg
import pytest
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import StatementLog
from tests.auth.conftest import ALLOWED, PASSWORD, SITE, AuthServer, new_email
from tests.conftest import TEST_JWT_SECRET, TEST_SERVICE_KEY, StackDatabase

NEW_PASSWORD = "another horse battery"


def signed_up(server: AuthServer, email: str) -> str:
    """A new account (autoconfirm); its id."""
    answer = server.client().sign_up({"email": email, "password": PASSWORD})
    assert answer.user is not None
    return answer.user.id


def follow(link: str) -> dict[str, list[str]]:
    """GET a verification link as a browser would; the fragment of where it redirects."""
    answer = httpx.get(link, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    location = urlsplit(answer.headers["Location"])
    return parse_qs(location.fragment) | {"_to": [f"{location.scheme}://{location.netloc}"]}


def test_a_password_change_ends_the_other_sessions_and_the_old_password(
    auth_server: AuthServer,
) -> None:
    email = new_email()
    signed_up(auth_server, email)
    here, elsewhere = auth_server.client(), auth_server.client()
    here.sign_in_with_password({"email": email, "password": PASSWORD})
    other = elsewhere.sign_in_with_password({"email": email, "password": PASSWORD}).session
    assert other is not None

    with pytest.raises(AuthWeakPasswordError) as weak:
        here.update_user({"password": "short"})
    assert (weak.value.status, weak.value.reasons) == (422, ["length"])
    with pytest.raises(AuthApiError) as same:
        here.update_user({"password": PASSWORD})
    assert (same.value.status, same.value.code) == (422, "same_password")

    changed = here.update_user({"password": NEW_PASSWORD, "data": {"plan": "pro"}})
    assert changed.user.user_metadata == {"plan": "pro"}
    with pytest.raises(AuthApiError):  # the other session has ended
        elsewhere.refresh_session(other.refresh_token)
    assert here.refresh_session().session is not None  # this one goes on
    with pytest.raises(AuthApiError) as old:
        auth_server.client().sign_in_with_password({"email": email, "password": PASSWORD})
    assert old.value.code == "invalid_credentials"
    again = auth_server.client().sign_in_with_password({"email": email, "password": NEW_PASSWORD})
    assert again.session is not None


def test_recovery_by_link_then_by_code_and_neither_twice(auth_server: AuthServer) -> None:
    email = new_email()
    user_id = signed_up(auth_server, email)
    client = auth_server.client()
    client.reset_password_for_email(email, {"redirect_to": f"{SITE}/reset"})
    mail = auth_server.outbox.wait_for(email)
    assert mail.subject == "Reset your password"
    landed = follow(mail.link)
    assert landed["_to"] == [SITE]
    assert landed["type"] == ["recovery"]
    access = landed["access_token"][0]
    user = client.get_user(access)
    assert user is not None
    assert user.user.id == user_id
    again = follow(mail.link)  # the link is spent
    assert again["error_code"] == ["otp_expired"]
    assert "access_token" not in again

    time.sleep(1.1)  # one mail per address a second (the test server's limit)
    client.reset_password_for_email(email)
    code = auth_server.outbox.wait_for(email, count=2).code
    session = client.verify_otp({"email": email, "token": code, "type": "recovery"}).session
    assert session is not None
    client.update_user({"password": NEW_PASSWORD})
    with pytest.raises(AuthApiError) as reused:
        auth_server.client().verify_otp({"email": email, "token": code, "type": "recovery"})
    assert (reused.value.status, reused.value.code) == (403, "otp_expired")
    signed_in = auth_server.client().sign_in_with_password(
        {"email": email, "password": NEW_PASSWORD}
    )
    assert signed_in.session is not None


def test_recovery_answers_the_same_for_an_unknown_address_and_sends_nothing(
    auth_server: AuthServer,
) -> None:
    known, unknown = new_email(), new_email()
    signed_up(auth_server, known)
    answers = [
        httpx.post(f"{auth_server.url}/auth/v1/recover", json={"email": address})
        for address in (known, unknown)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json() == {}
    auth_server.outbox.wait_for(known)
    assert auth_server.outbox.all_to(unknown) == []
    # Asking again at once is refused for both alike, telling nothing either.
    again = [
        httpx.post(f"{auth_server.url}/auth/v1/recover", json={"email": address})
        for address in (known, unknown)
    ]
    assert [a.status_code for a in again] == [429, 429]
    assert {a.json()["error_code"] for a in again} == {"over_email_send_rate_limit"}


def test_a_magic_link_code_signs_in_and_creates_the_user_only_when_asked(
    auth_server: AuthServer, database: StackDatabase
) -> None:
    email = new_email()
    client = auth_server.client()
    client.sign_in_with_otp({"email": email, "options": {"data": {"name": "Ada"}}})
    mail = auth_server.outbox.wait_for(email)
    assert mail.subject == "Your sign-in link"
    session = client.verify_otp({"email": email, "token": mail.code, "type": "email"}).session
    assert session is not None
    assert session.user is not None
    assert session.user.email_confirmed_at is not None  # following it confirms the address
    assert session.user.user_metadata == {"name": "Ada"}
    with pytest.raises(AuthApiError) as reused:
        client.verify_otp({"email": email, "token": mail.code, "type": "email"})
    assert reused.value.code == "otp_expired"

    stranger = new_email()
    client.sign_in_with_otp({"email": stranger, "options": {"should_create_user": False}})
    time.sleep(0.5)
    assert auth_server.outbox.all_to(stranger) == []
    with psycopg.connect(database.owner_url) as conn:
        found = conn.execute("SELECT count(*) FROM auth.users WHERE email = %s", (stranger,))
        assert found.fetchone() == (0,)


@pytest.mark.parametrize(
    ("link_type", "verify_type"),
    [("signup", "signup"), ("invite", "invite"), ("magiclink", "magiclink"),
     ("recovery", "recovery"), ("email_change_new", "email_change")],
)  # fmt: skip
def test_every_kind_of_token_works_once_and_not_after_it_expires(
    auth_server: AuthServer, database: StackDatabase, link_type: str, verify_type: str
) -> None:
    admin = auth_server.admin()

    def generated() -> str:
        """A new token of the kind, for a new address (an account first, where the
        kind needs one)."""
        email = new_email()
        if link_type not in ("signup", "invite"):
            signed_up(auth_server, email)
        params: dict[str, object] = {"type": link_type, "email": email}
        if link_type == "signup":
            params["password"] = PASSWORD
        if link_type == "email_change_new":
            params["new_email"] = new_email()
        return admin.generate_link(params).properties.hashed_token  # type: ignore[arg-type]

    token = generated()
    client = auth_server.client()
    session = client.verify_otp({"token_hash": token, "type": verify_type}).session  # type: ignore[typeddict-item]
    assert session is not None
    with pytest.raises(AuthApiError) as reused:
        client.verify_otp({"token_hash": token, "type": verify_type})  # type: ignore[typeddict-item]
    assert (reused.value.status, reused.value.code) == (403, "otp_expired")

    fresh = generated()
    with psycopg.connect(database.owner_url) as conn:
        conn.execute(
            "UPDATE syntera.auth_tokens SET expires_at = now() - interval '1 second'"
            " WHERE used_at IS NULL AND created_at > now() - interval '1 minute'"
            " AND kind = %s",
            (verify_type,),
        )
    with pytest.raises(AuthApiError) as expired:
        client.verify_otp({"token_hash": fresh, "type": verify_type})  # type: ignore[typeddict-item]
    assert (expired.value.status, expired.value.code) == (403, "otp_expired")


def test_an_email_change_takes_effect_when_the_new_address_confirms(
    auth_server: AuthServer, database: StackDatabase
) -> None:
    old, new = new_email(), new_email()
    user_id = signed_up(auth_server, old)
    client = auth_server.client()
    client.sign_in_with_password({"email": old, "password": PASSWORD})
    pending = client.update_user({"email": new})
    assert pending.user.email == old  # not yet
    assert pending.user.new_email == new
    mail = auth_server.outbox.wait_for(new)
    assert mail.subject == "Confirm your new email"
    client.verify_otp({"email": new, "token": mail.code, "type": "email_change"})
    user = client.get_user()
    assert user is not None
    assert user.user.email == new
    with psycopg.connect(database.owner_url) as conn:
        row = conn.execute("SELECT email FROM public.users WHERE id = %s", (user_id,))
        assert row.fetchone() == (new,)
    assert auth_server.client().sign_in_with_password(
        {"email": new, "password": PASSWORD}
    ).session is not None  # fmt: skip

    taken = new_email()
    signed_up(auth_server, taken)
    with pytest.raises(AuthApiError) as refused:
        client.update_user({"email": taken})
    assert (refused.value.status, refused.value.code) == (422, "email_exists")


def test_redirects_outside_the_allow_list_are_refused(auth_server: AuthServer) -> None:
    email = new_email()
    signed_up(auth_server, email)
    client = auth_server.client()
    with pytest.raises(AuthApiError) as refused:
        client.reset_password_for_email(email, {"redirect_to": "https://evil.example/"})
    assert (refused.value.status, refused.value.code) == (400, "validation_failed")
    # A * does not cross a dot or a slash: this is not a subdomain of app.example.com.
    sneaky = "https://app.example.com.evil.example/x"
    with pytest.raises(AuthApiError):
        client.reset_password_for_email(email, {"redirect_to": sneaky})
    assert ALLOWED.endswith("/**")
    client.reset_password_for_email(email, {"redirect_to": "https://app.example.com/a/b"})
    mail = auth_server.outbox.wait_for(email)
    assert follow(mail.link)["_to"] == ["https://app.example.com"]
    token = parse_qs(urlsplit(mail.link).query)["token"][0]
    open_redirect = httpx.get(
        f"{auth_server.url}/auth/v1/verify",
        params={"token": token, "type": "recovery", "redirect_to": "https://evil.example/"},
    )
    assert open_redirect.status_code == 400


@pytest.mark.parametrize("redirect_to", ["http://[", "https://[::1/x", "http://[evil]/"])
async def test_a_redirect_that_does_not_parse_is_refused_as_any_other(
    client: httpx.AsyncClient, redirect_to: str
) -> None:
    email = new_email()
    signed = await client.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})
    assert signed.status_code == 200, signed.text
    user = {"Authorization": f"Bearer {signed.json()['access_token']}"}
    service = {"Authorization": f"Bearer {TEST_SERVICE_KEY}"}
    query = {"redirect_to": redirect_to}
    link = {"type": "magiclink", "email": email}
    answers = {
        "recover": await client.post("/auth/v1/recover", params=query, json={"email": email}),
        "otp": await client.post("/auth/v1/otp", params=query, json={"email": email}),
        "resend": await client.post(
            "/auth/v1/resend", params=query, json={"email": email, "type": "signup"}
        ),
        "verify": await client.get(
            "/auth/v1/verify", params={**query, "token": "x" * 40, "type": "magiclink"}
        ),
        "user": await client.put("/auth/v1/user", params=query, headers=user, json={}),
        "generate_link": await client.post(
            "/auth/v1/admin/generate_link", params=query, headers=service, json=link
        ),
        "generate_link body": await client.post(
            "/auth/v1/admin/generate_link", headers=service, json={**link, **query}
        ),
    }
    for endpoint, answer in answers.items():
        assert answer.status_code == 400, (endpoint, answer.text)
        assert answer.json()["error_code"] == "validation_failed", endpoint
        assert "redirect_to" in answer.json()["msg"], endpoint


def test_wrong_codes_are_throttled(auth_server: AuthServer) -> None:
    email = new_email()
    signed_up(auth_server, email)
    client = auth_server.client()
    client.reset_password_for_email(email)
    code = auth_server.outbox.wait_for(email).code
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    statuses = []
    for _ in range(auth_server.settings.auth_verify_max_failures + 1):
        try:
            client.verify_otp({"email": email, "token": wrong, "type": "recovery"})
        except AuthApiError as error:
            statuses.append(error.status)
    assert statuses[:-1] == [403] * auth_server.settings.auth_verify_max_failures
    assert statuses[-1] == 429
    with pytest.raises(AuthApiError) as throttled:  # even the right code, for now
        client.verify_otp({"email": email, "token": code, "type": "recovery"})
    assert throttled.value.status == 429


def test_with_confirmation_on_sign_up_waits_for_the_link(confirming_server: AuthServer) -> None:
    email = new_email()
    client = confirming_server.client()
    answer = client.sign_up({"email": email, "password": PASSWORD})
    assert answer.session is None
    assert answer.user is not None
    assert answer.user.email_confirmed_at is None
    with pytest.raises(AuthApiError) as unconfirmed:
        client.sign_in_with_password({"email": email, "password": PASSWORD})
    assert (unconfirmed.value.status, unconfirmed.value.code) == (400, "email_not_confirmed")
    first = confirming_server.outbox.wait_for(email)
    assert first.subject == "Confirm your email"

    time.sleep(1.1)
    client.resend({"type": "signup", "email": email})
    second = confirming_server.outbox.wait_for(email, count=2)
    assert follow(first.link)["error_code"] == ["otp_expired"]  # the resend replaced it
    assert "access_token" in follow(second.link)
    assert client.sign_in_with_password({"email": email, "password": PASSWORD}).session

    # A taken address gets the same shape of answer as a new one (and no session).
    time.sleep(1.1)
    again = confirming_server.client().sign_up({"email": email, "password": PASSWORD})
    assert again.session is None
    assert again.user is not None
    assert again.user.id != answer.user.id


def test_settings_and_health_answer_as_gotrue(
    auth_server: AuthServer, confirming_server: AuthServer
) -> None:
    settings = httpx.get(f"{auth_server.url}/auth/v1/settings").json()
    assert settings["external"]["email"] is True
    assert settings["external"]["google"] is False
    assert settings["mailer_autoconfirm"] is True
    confirming = httpx.get(f"{confirming_server.url}/auth/v1/settings").json()
    assert confirming["mailer_autoconfirm"] is False
    health = httpx.get(f"{auth_server.url}/auth/v1/health").json()
    assert health["name"] == "GoTrue"
    assert health["version"]


async def test_recovery_and_magic_links_do_the_same_work_for_unknown_addresses(
    client: httpx.AsyncClient, statements: StatementLog
) -> None:
    """Not only the answer: the statements sent (and so the time taken) are the same
    whether or not the address has an account."""
    for path, body in (("/auth/v1/recover", {}), ("/auth/v1/otp", {"create_user": False}),
                       ("/auth/v1/resend", {"type": "signup"})):  # fmt: skip
        known = new_email()  # one mail per address a minute: an address per path
        signed = await client.post("/auth/v1/signup", json={"email": known, "password": PASSWORD})
        assert signed.status_code == 200
        sent = []
        for address in (known, new_email()):
            statements.clear()
            answer = await client.post(path, json={"email": address, **body})
            assert answer.status_code == 200, answer.text
            # Without the signing keys' reload, which runs beside on its own schedule.
            sent.append([line for line in statements if "signing_keys" not in line])
        assert sent[0] == sent[1], path
        assert any("mail_outbox" in statement for statement in sent[0])


async def test_hs256_signing_stays_available(settings: Settings, api_urls: StackUrls) -> None:
    legacy = create_app(settings.model_copy(update={"jwt_signing": "HS256"}), api_urls)
    async with legacy.router.lifespan_context(legacy):
        transport = httpx.ASGITransport(app=legacy)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            answer = await http.post(
                "/auth/v1/signup", json={"email": new_email(), "password": PASSWORD}
            )
    token = answer.json()["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["role"] == "authenticated"
