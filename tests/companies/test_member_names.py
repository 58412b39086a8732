"""Teammates' display names: a member's Supabase Auth user_metadata (`full_name`, else
`name`) names them wherever a teammate is shown, else their email; they set it
themselves with PUT /auth/v1/user; another company reads it through no endpoint."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

Json = dict[str, Any]
PASSWORD = "a long enough password"


async def ok(response: Any, status: int = 200) -> Any:
    answer = await response
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


async def join(
    http: httpx.AsyncClient, owner_conn: psycopg.Connection, tenant: SeededCompany, data: Json
) -> tuple[dict[str, str], str, str]:
    """A new member of ``tenant`` who signed up with ``data`` as their user_metadata
    (supabase-js's ``options.data``): their headers, id and email."""
    email = f"named-{uuid.uuid4().hex[:12]}@example.com"
    owner_conn.execute(
        "INSERT INTO public.invitations (company_id, email, role, invited_by)"
        " VALUES (%s, %s, 'user', %s)",
        (tenant.company_id, email, tenant.owner.user_id),
    )
    body = {"email": email, "password": PASSWORD, "data": data}
    session = await ok(http.post("/auth/v1/signup", json=body))
    headers = {"Authorization": f"Bearer {session['access_token']}"}
    [invitation] = (await ok(http.get("/v1/invitations", headers=headers)))["data"]
    await ok(http.post(f"/v1/invitations/{invitation['id']}/accept", headers=headers))
    return headers, session["user"]["id"], email


async def shown_as(http: httpx.AsyncClient, headers: dict[str, str], user_id: str) -> set[str]:
    """How ``user_id`` is named in the team list and the presence list, to ``headers``'
    holder."""
    team = await ok(http.get(f"/v1/team/{user_id}", headers=headers))
    presence = await ok(http.get("/v1/team/presence", headers=headers))
    return {team["name"], next(p["name"] for p in presence if p["user_id"] == user_id)}


async def test_a_member_is_shown_by_their_name_else_their_email(
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    owner = auth(tenant.owner)
    grace, grace_id, grace_email = await join(
        http, owner_conn, tenant, {"full_name": "  Grace Hopper ", "name": "grace"}
    )
    assert await shown_as(http, owner, grace_id) == {"Grace Hopper"}

    # Their message and their note carry the name too.
    body = {"agent_id": str(tenant.rows["agent_configs"])}
    conversation = await ok(http.post("/v1/conversations", headers=grace, json=body), 201)
    cid = conversation["id"]
    message = {"sender_type": "agent", "content": "On it."}
    await ok(http.post(f"/v1/conversations/{cid}/messages", headers=grace, json=message), 201)
    read = await ok(http.get(f"/v1/conversations/{cid}", headers=owner))
    assert read["last_message"]["sender_name"] == "Grace Hopper"
    listed = await ok(http.get("/v1/conversations", headers=owner))
    row = next(c for c in listed["data"] if c["id"] == cid)
    assert row["last_message"]["sender_name"] == "Grace Hopper"
    note = {"body": "Checked the order."}
    await ok(http.post(f"/v1/conversations/{cid}/notes", headers=grace, json=note), 201)
    notes = await ok(http.get(f"/v1/conversations/{cid}/notes", headers=owner))
    assert [n["author_name"] for n in notes["data"]] == ["Grace Hopper"]

    # They rename themselves through Supabase Auth; without full_name, `name` counts;
    # with neither, the email stands for them.
    renamed = {"data": {"full_name": "Rear Admiral Hopper"}}
    await ok(http.put("/auth/v1/user", headers=grace, json=renamed))
    assert await shown_as(http, owner, grace_id) == {"Rear Admiral Hopper"}
    assert (await ok(http.get(f"/v1/conversations/{cid}", headers=owner)))["last_message"][
        "sender_name"
    ] == "Rear Admiral Hopper"
    await ok(http.put("/auth/v1/user", headers=grace, json={"data": {"full_name": None}}))
    assert await shown_as(http, owner, grace_id) == {"grace"}
    await ok(http.put("/auth/v1/user", headers=grace, json={"data": {"name": ["not", "text"]}}))
    assert await shown_as(http, owner, grace_id) == {grace_email}

    # A member who never gave a name is shown by their email.
    _, plain_id, plain_email = await join(http, owner_conn, tenant, {})
    assert await shown_as(http, owner, plain_id) == {plain_email}


async def test_another_company_cannot_read_a_members_name(
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    tenant_b: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    secret = f"Secret Name {uuid.uuid4().hex[:6]}"
    grace, grace_id, _ = await join(http, owner_conn, tenant, {"full_name": secret})
    body = {"agent_id": str(tenant.rows["agent_configs"])}
    conversation = await ok(http.post("/v1/conversations", headers=grace, json=body), 201)
    cid = conversation["id"]
    message = {"sender_type": "agent", "content": "Hello"}
    await ok(http.post(f"/v1/conversations/{cid}/messages", headers=grace, json=message), 201)

    for principal in (tenant_b.owner, tenant_b.member):
        other = auth(principal)
        assert (await http.get(f"/v1/team/{grace_id}", headers=other)).status_code == 404
        team = await ok(http.get("/v1/team", headers=other))
        presence = await ok(http.get("/v1/team/presence", headers=other))
        assert (await http.get(f"/v1/conversations/{cid}", headers=other)).status_code == 404
        listed = await ok(http.get("/v1/conversations", headers=other))
        rest = await ok(
            http.get(f"/rest/v1/users?select=id,name,full_name&id=eq.{grace_id}", headers=other)
        )
        assert rest == []
        assert secret not in str([team, presence, listed])
    # It was there to be read (the /rest/v1 answer above is row-level security's).
    assert owner_conn.execute(
        "SELECT full_name FROM public.users WHERE id = %s", (grace_id,)
    ).fetchone() == (secret,)
