"""Creates and changes by signed-in members in one round trip (BEGIN, the caller, the
INSERT or UPDATE finding the company in the database, COMMIT): the same answers as
before, for every kind of caller and every refusal, and nothing kept of a refused one."""

from __future__ import annotations

import uuid

import httpx
import psycopg

from syntera.auth.tokens import issue_access_token, load_keys
from syntera.config import Settings
from tests.api_fixtures import AuthHeaders
from tests.conftest import TEST_SERVICE_KEY
from tests.factories import SeededCompany, create_auth_user


async def test_a_member_creates_in_their_company_only(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany,
    tenant_b: SeededCompany, owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    email = f"fast-{uuid.uuid4().hex[:8]}@example.com"
    made = await client.post("/v1/contacts", headers=auth(tenant_a.member),
                             json={"email": email, "tags": ["vip"]})  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["company_id"] == str(tenant_a.company_id)
    assert made.json()["tags"] == ["vip"]
    # The body cannot name another company: company_id is not a field of the create.
    smuggled = await client.post("/v1/contacts", headers=auth(tenant_a.member),
                                 json={"email": "x@example.com",
                                       "company_id": str(tenant_b.company_id)})  # fmt: skip
    assert smuggled.status_code == 422
    stored = owner_conn.execute(
        "SELECT company_id FROM public.contacts WHERE email = %s", (email,)
    ).fetchall()
    assert stored == [(tenant_a.company_id,)]
    listed = await client.get("/v1/contacts", headers=auth(tenant_b.owner), params={"q": email})
    assert listed.json()["data"] == []


async def test_a_user_of_no_company_gets_403_and_nothing_is_written(
    client: httpx.AsyncClient, settings: Settings, owner_conn: psycopg.Connection
) -> None:
    loner = create_auth_user(owner_conn)
    token = issue_access_token(
        load_keys(settings), user_id=loner, email=None, session_id=uuid.uuid4(),
        lifetime_s=600, issuer="test", user_metadata={}, app_metadata={},
    ).token  # fmt: skip
    email = f"loner-{uuid.uuid4().hex[:8]}@example.com"
    refused = await client.post("/v1/contacts", headers={"Authorization": f"Bearer {token}"},
                                json={"email": email})  # fmt: skip
    assert refused.status_code == 403
    assert "not a member of any company" in refused.json()["detail"]
    assert owner_conn.execute(
        "SELECT count(*) FROM public.contacts WHERE email = %s", (email,)
    ).fetchone() == (0,)


async def test_a_refused_create_keeps_nothing_and_the_next_one_works(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany
) -> None:
    headers = auth(tenant_a.member)
    ghost = {"title": "Ghost", "contact_id": str(uuid.uuid4())}  # no such contact
    for _ in range(3):  # the same connections serve every one: each was rolled back
        refused = await client.post("/v1/deals", headers=headers, json=ghost)
        assert 400 <= refused.status_code < 500, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "contact_id" in refused.text
    listed = await client.get("/v1/deals", headers=headers, params={"limit": 100})
    assert all(deal["title"] != "Ghost" for deal in listed.json()["data"])
    fine = await client.post("/v1/deals", headers=headers, json={"title": "Real"})
    assert fine.status_code == 201, fine.text


async def test_the_service_key_still_creates_in_the_company_it_names(
    client: httpx.AsyncClient, tenant_a: SeededCompany
) -> None:
    service = {"Authorization": f"Bearer {TEST_SERVICE_KEY}",
               "X-Company-Id": str(tenant_a.company_id)}  # fmt: skip
    made = await client.post("/v1/deals", headers=service, json={"title": "By the service"})
    assert made.status_code == 201, made.text
    assert made.json()["company_id"] == str(tenant_a.company_id)


async def test_a_member_changes_rows_of_their_company_only(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany,
    tenant_b: SeededCompany, owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    mine = await client.post("/v1/deals", headers=auth(tenant_a.member), json={"title": "A"})
    theirs = await client.post("/v1/deals", headers=auth(tenant_b.member), json={"title": "B"})
    deal_a, deal_b = mine.json()["id"], theirs.json()["id"]
    moved = await client.patch(f"/v1/deals/{deal_a}", headers=auth(tenant_a.member),
                               json={"stage": "qualified", "value": 1200})  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert (moved.json()["stage"], moved.json()["value"]) == ("qualified", "1200.00")
    # Another company's deal is not found, and stays as it was.
    for body in ({"stage": "closed-lost"}, {"title": "taken over"}):
        refused = await client.patch(f"/v1/deals/{deal_b}", headers=auth(tenant_a.owner),
                                     json=body)  # fmt: skip
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert owner_conn.execute(
        "SELECT title, stage FROM public.deals WHERE id = %s", (deal_b,)
    ).fetchone() == ("B", "lead")
    # Nor can a change move a row to another company: company_id is not a field.
    smuggled = await client.patch(f"/v1/deals/{deal_a}", headers=auth(tenant_a.member),
                                  json={"company_id": str(tenant_b.company_id)})  # fmt: skip
    assert smuggled.status_code == 422
    missing = await client.patch(f"/v1/deals/{uuid.uuid4()}", headers=auth(tenant_a.member),
                                 json={"stage": "lead"})  # fmt: skip
    assert missing.status_code == 404
    assert "Deal" in missing.json()["detail"]


async def test_a_refused_change_keeps_nothing_and_a_stranger_gets_403(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany, settings: Settings,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    headers = auth(tenant_a.member)
    deal = (await client.post("/v1/deals", headers=headers, json={"title": "Kept"})).json()
    ghost = {"title": "Changed", "contact_id": str(uuid.uuid4())}  # no such contact
    for _ in range(3):
        refused = await client.patch(f"/v1/deals/{deal['id']}", headers=headers, json=ghost)
        assert 400 <= refused.status_code < 500, refused.text
        assert "contact_id" in refused.text
    assert owner_conn.execute(
        "SELECT title FROM public.deals WHERE id = %s", (deal["id"],)
    ).fetchone() == ("Kept",)
    loner = create_auth_user(owner_conn)
    token = issue_access_token(
        load_keys(settings), user_id=loner, email=None, session_id=uuid.uuid4(),
        lifetime_s=600, issuer="test", user_metadata={}, app_metadata={},
    ).token  # fmt: skip
    stranger = await client.patch(f"/v1/deals/{deal['id']}", json={"title": "Mine"},
                                  headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert stranger.status_code == 403
    assert "not a member of any company" in stranger.json()["detail"]
