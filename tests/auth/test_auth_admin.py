"""/auth/v1/admin through the real ``supabase-auth`` admin client: users listed, created,
changed, banned and deleted; refused to members; a company's owner is not deleted from
under it."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest
from supabase_auth.errors import AuthApiError

from tests.api_fixtures import AuthHeaders
from tests.auth.conftest import PASSWORD, AuthServer, new_email
from tests.conftest import TEST_SERVICE_KEY, StackDatabase
from tests.factories import SeededCompany


def test_the_admin_client_creates_lists_changes_and_deletes_users(
    auth_server: AuthServer,
) -> None:
    admin = auth_server.admin()
    email = new_email()
    created = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True,
                                 "user_metadata": {"team": "blue"}}).user  # fmt: skip
    assert created.email == email
    assert created.email_confirmed_at is not None
    assert created.user_metadata == {"team": "blue"}
    with pytest.raises(AuthApiError) as taken:
        admin.create_user({"email": email, "password": PASSWORD})
    assert (taken.value.status, taken.value.code) == (422, "email_exists")
    unconfirmed = admin.create_user({"email": new_email()}).user  # no password, no mail
    assert unconfirmed.email_confirmed_at is None

    assert admin.get_user_by_id(created.id).user.email == email
    with pytest.raises(AuthApiError) as missing:
        admin.get_user_by_id(str(uuid.uuid4()))
    assert (missing.value.status, missing.value.code) == (404, "user_not_found")

    # Without arguments the client sends page=&per_page= (empty): GoTrue's defaults.
    first_page = admin.list_users()
    assert 1 <= len(first_page) <= 50
    service = {"Authorization": f"Bearer {TEST_SERVICE_KEY}"}
    not_a_number = httpx.get(f"{auth_server.url}/auth/v1/admin/users", params={"page": "x"},
                             headers=service)  # fmt: skip
    assert (not_a_number.status_code, not_a_number.json()["error_code"]) == (
        400, "validation_failed",
    )  # fmt: skip
    seen: set[str] = set()
    page = 1
    while batch := admin.list_users(page=page, per_page=2):
        assert len(batch) <= 2
        seen |= {user.id for user in batch}
        page += 1
    assert {created.id, unconfirmed.id} <= seen
    listed = httpx.get(f"{auth_server.url}/auth/v1/admin/users", params={"per_page": 1},
                       headers={"Authorization": f"Bearer {TEST_SERVICE_KEY}"})  # fmt: skip
    assert int(listed.headers["X-Total-Count"]) >= 2
    assert 'rel="next"' in listed.headers["Link"]

    changed = admin.update_user_by_id(created.id, {"user_metadata": {"plan": "pro"}}).user
    assert changed.user_metadata == {"team": "blue", "plan": "pro"}
    admin.update_user_by_id(created.id, {"password": "a brand new password"})
    client = auth_server.client()
    assert client.sign_in_with_password(
        {"email": email, "password": "a brand new password"}
    ).session is not None  # fmt: skip

    admin.delete_user(created.id)
    with pytest.raises(AuthApiError):
        admin.get_user_by_id(created.id)
    with pytest.raises(AuthApiError):  # the session went with the user
        client.refresh_session()


def test_a_banned_user_cannot_sign_in_or_refresh_until_the_ban_is_lifted(
    auth_server: AuthServer,
) -> None:
    admin = auth_server.admin()
    email = new_email()
    user = admin.create_user({"email": email, "password": PASSWORD, "email_confirm": True}).user
    client = auth_server.client()
    session = client.sign_in_with_password({"email": email, "password": PASSWORD}).session
    assert session is not None
    banned = admin.update_user_by_id(user.id, {"ban_duration": "24h"}).user
    assert banned.banned_until is not None
    with pytest.raises(AuthApiError):
        client.refresh_session(session.refresh_token)
    with pytest.raises(AuthApiError):
        auth_server.client().sign_in_with_password({"email": email, "password": PASSWORD})
    with pytest.raises(AuthApiError) as bad:
        admin.update_user_by_id(user.id, {"ban_duration": "forever"})
    assert (bad.value.status, bad.value.code) == (400, "validation_failed")
    with pytest.raises(AuthApiError) as huge:  # past year 9999: refused, not a 500
        admin.update_user_by_id(user.id, {"ban_duration": "9" * 20 + "h"})
    assert (huge.value.status, huge.value.code) == (400, "validation_failed")
    admin.update_user_by_id(user.id, {"ban_duration": "none"})
    assert auth_server.client().sign_in_with_password(
        {"email": email, "password": PASSWORD}
    ).session is not None  # fmt: skip


async def test_members_are_refused_the_admin_api(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    for who in (tenant.owner, tenant.member):
        headers = auth(who)
        for method, path in (("GET", "/auth/v1/admin/users"),
                             ("GET", f"/auth/v1/admin/users/{tenant.member.user_id}"),
                             ("PUT", f"/auth/v1/admin/users/{tenant.member.user_id}"),
                             ("DELETE", f"/auth/v1/admin/users/{tenant.member.user_id}"),
                             ("POST", "/auth/v1/admin/users"),
                             ("POST", "/auth/v1/admin/generate_link")):  # fmt: skip
            body = {"email": new_email(), "type": "magiclink"} if method != "GET" else None
            answer = await client.request(method, path, headers=headers, json=body)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["error_code"] == "not_admin"
    anonymous = await client.get("/auth/v1/admin/users")
    assert anonymous.status_code == 401
    member = await client.get("/v1/team", headers=auth(tenant.owner))
    assert str(tenant.member.user_id) in member.text  # still there


async def test_deleting_a_company_owner_hands_it_over_or_says_why_not(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    database: StackDatabase,
) -> None:
    service = {"Authorization": f"Bearer {TEST_SERVICE_KEY}"}
    owner = tenant.owner.user_id
    refused = await client.delete(f"/auth/v1/admin/users/{owner}", headers=service)
    assert refused.status_code == 422
    assert refused.json()["error_code"] == "last_owner"
    assert str(tenant.company_id) in refused.json()["msg"]
    assert "owner role" in refused.json()["msg"]

    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        conn.execute("UPDATE public.users SET role = 'owner' WHERE id = %s",
                     (tenant.admin.user_id,))  # fmt: skip
    deleted = await client.delete(f"/auth/v1/admin/users/{owner}", headers=service)
    assert deleted.status_code == 200, deleted.text
    with psycopg.connect(database.owner_url) as conn:
        company = conn.execute(
            "SELECT owner_id FROM public.companies WHERE id = %s", (tenant.company_id,)
        ).fetchone()
        gone = conn.execute(
            "SELECT (SELECT count(*) FROM public.users WHERE id = %(id)s),"
            " (SELECT count(*) FROM syntera.auth_sessions WHERE user_id = %(id)s)",
            {"id": owner},
        ).fetchone()
    assert company == (tenant.admin.user_id,)  # the company is the other owner's now
    assert gone == (0, 0)
    team = await client.get("/v1/team", headers=auth(tenant.admin))
    assert team.status_code == 200
    assert str(owner) not in team.text
