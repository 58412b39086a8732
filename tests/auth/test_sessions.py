"""An ended session's access token changes nothing: after a password change (which ends
the other sessions) or a logout, the ended session's unexpired access token can no
longer change the password, the email, the metadata or the sessions (403
``session_not_found``, as GoTrue); a banned user's cannot either (403 ``user_banned``).
Endpoints that only read keep trusting an access token until it expires."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import jwt

from tests.auth.test_auth_api import PASSWORD, sign_in, sign_up
from tests.conftest import TEST_JWT_SECRET, TEST_SERVICE_KEY

NEW_PASSWORD = "another horse battery"
THIRD_PASSWORD = "a third horse battery"
SERVICE = {"Authorization": f"Bearer {TEST_SERVICE_KEY}"}


def new_email() -> str:
    return f"session-{uuid.uuid4().hex[:12]}@example.com"


def bearer(session: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


async def refresh(client: httpx.AsyncClient, session: dict[str, object]) -> httpx.Response:
    return await client.post(
        "/auth/v1/token", params={"grant_type": "refresh_token"},
        json={"refresh_token": session["refresh_token"]},
    )  # fmt: skip


def assert_session_not_found(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.json()["error_code"] == "session_not_found"


async def assert_changes_nothing(
    client: httpx.AsyncClient, ended: dict[str, object], email: str, password: str
) -> None:
    """``ended``'s access token changes neither credentials nor sessions; the account
    still signs in with ``password`` only."""
    headers = bearer(ended)
    for body in ({"password": THIRD_PASSWORD}, {"email": new_email()}, {"data": {"x": 1}}):
        assert_session_not_found(await client.put("/auth/v1/user", headers=headers, json=body))
    for scope in ("global", "others", "local"):
        assert_session_not_found(
            await client.post("/auth/v1/logout", params={"scope": scope}, headers=headers)
        )
    assert (await sign_in(client, email, THIRD_PASSWORD)).status_code == 400
    assert (await sign_in(client, email, password)).status_code == 200
    # Reading is trusted until the token expires (README, auth).
    assert (await client.get("/auth/v1/user", headers=headers)).status_code == 200


async def test_a_session_ended_by_a_password_change_cannot_change_credentials(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    stolen = await sign_up(client, email)
    owner = (await sign_in(client, email, PASSWORD)).json()
    changed = await client.put(
        "/auth/v1/user", headers=bearer(owner), json={"password": NEW_PASSWORD}
    )
    assert changed.status_code == 200, changed.text
    await assert_changes_nothing(client, stolen, email, NEW_PASSWORD)
    # The owner's session went on, untouched by the refused logouts.
    assert (await refresh(client, owner)).status_code == 200


async def test_a_logged_out_session_cannot_change_credentials(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    local = await sign_up(client, email)
    other = (await sign_in(client, email, PASSWORD)).json()
    logged_out = await client.post(
        "/auth/v1/logout", params={"scope": "local"}, headers=bearer(local)
    )
    assert logged_out.status_code == 204
    await assert_changes_nothing(client, local, email, PASSWORD)
    assert (await refresh(client, other)).status_code == 200  # only the one ended

    everywhere = await client.post("/auth/v1/logout", headers=bearer(other))
    assert everywhere.status_code == 204
    await assert_changes_nothing(client, other, email, PASSWORD)


async def test_a_token_naming_no_session_of_this_server_cannot_change_credentials(
    client: httpx.AsyncClient,
) -> None:
    """A token of a Supabase project with the same secret names a session of that
    project; one without ``session_id`` names none."""
    email = new_email()
    user_id = (await sign_up(client, email))["user"]["id"]  # type: ignore[index]
    now = int(time.time())
    claims = {"sub": user_id, "aud": "authenticated", "role": "authenticated", "exp": now + 600}
    for extra in ({"session_id": str(uuid.uuid4())}, {}):
        token = jwt.encode({**claims, **extra}, TEST_JWT_SECRET, algorithm="HS256")
        headers = {"Authorization": f"Bearer {token}"}
        changed = await client.put(
            "/auth/v1/user", headers=headers, json={"password": NEW_PASSWORD}
        )
        assert_session_not_found(changed)
        assert (await client.get("/auth/v1/user", headers=headers)).status_code == 200
    assert (await sign_in(client, email, PASSWORD)).status_code == 200


async def test_a_banned_users_unexpired_token_cannot_change_their_password(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    session = await sign_up(client, email)
    user_id = session["user"]["id"]  # type: ignore[index]
    banned = await client.put(
        f"/auth/v1/admin/users/{user_id}", headers=SERVICE, json={"ban_duration": "24h"}
    )
    assert banned.status_code == 200, banned.text
    for body in ({"password": NEW_PASSWORD}, {"email": new_email()}, {"data": {"x": 1}}):
        refused = await client.put("/auth/v1/user", headers=bearer(session), json=body)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error_code"] == "user_banned"
    lifted = await client.put(
        f"/auth/v1/admin/users/{user_id}", headers=SERVICE, json={"ban_duration": "none"}
    )
    assert lifted.status_code == 200
    assert (await sign_in(client, email, PASSWORD)).status_code == 200  # unchanged
    changed = await client.put(
        "/auth/v1/user", headers=bearer(session), json={"password": NEW_PASSWORD}
    )
    assert changed.status_code == 200, changed.text


async def test_of_two_sessions_changing_the_password_at_once_the_first_ends_the_other(
    client: httpx.AsyncClient,
) -> None:
    """Both pass the first check, before either has hashed its password; the change
    that commits second finds its session ended by the first (the account is locked
    while a change is made) and is refused, so the first password stands."""
    email = new_email()
    first = await sign_up(client, email)
    second = (await sign_in(client, email, PASSWORD)).json()
    answers = await asyncio.gather(
        client.put("/auth/v1/user", headers=bearer(first), json={"password": NEW_PASSWORD}),
        client.put("/auth/v1/user", headers=bearer(second), json={"password": THIRD_PASSWORD}),
    )
    assert sorted(answer.status_code for answer in answers) == [200, 403], [
        answer.text for answer in answers
    ]
    winner = NEW_PASSWORD if answers[0].status_code == 200 else THIRD_PASSWORD
    loser = THIRD_PASSWORD if winner == NEW_PASSWORD else NEW_PASSWORD
    assert (await sign_in(client, email, winner)).status_code == 200
    assert (await sign_in(client, email, loser)).status_code == 400
