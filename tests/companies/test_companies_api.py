"""Companies and teams through the API: signing up, creating a company, inviting,
changing roles and removing members, as the real auth flow does it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


async def sign_up(client: httpx.AsyncClient, email: str | None = None) -> dict[str, str]:
    """A new account's Authorization header, from /auth/v1/signup."""
    email = email or f"team-{uuid.uuid4().hex[:12]}@example.com"
    response = await client.post(
        "/auth/v1/signup", json={"email": email, "password": "a long enough password"}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_creator_becomes_owner_and_cannot_create_a_second_company(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client)
    created = await client.post("/v1/companies", headers=owner, json={"name": "Acme"})
    assert created.status_code == 201, created.text
    company = created.json()
    assert company["subscription_tier"] == "starter"
    current = await client.get("/v1/companies/current", headers=owner)
    assert current.json()["id"] == company["id"]
    team = (await client.get("/v1/team", headers=owner)).json()["data"]
    assert [(m["id"], m["role"]) for m in team] == [(company["owner_id"], "owner")]

    again = await client.post("/v1/companies", headers=owner, json={"name": "Second"})
    assert again.status_code == 409

    renamed = await client.patch("/v1/companies/current", headers=owner, json={"name": "Acme 2"})
    assert renamed.json()["name"] == "Acme 2"
    tier = await client.patch(
        "/v1/companies/current", headers=owner, json={"subscription_tier": "enterprise"}
    )
    assert tier.status_code == 422  # not something a member sets


async def invite(
    client: httpx.AsyncClient, manager: dict[str, str], role: str
) -> tuple[dict[str, str], dict[str, Any]]:
    """Invite a new email with ``role``; that person signs up and joins."""
    email = f"invitee-{uuid.uuid4().hex[:12]}@example.com"
    invited = await client.post(
        "/v1/team/invitations", headers=manager, json={"email": email, "role": role}
    )
    assert invited.status_code == 201, invited.text
    return await sign_up(client, email), invited.json()


async def test_invited_email_joins_with_the_invited_role_and_roles_change_by_managers(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client)
    company = (await client.post("/v1/companies", headers=owner, json={"name": "T"})).json()
    admin, invitation = await invite(client, owner, "admin")
    assert invitation["invited_by"] == company["owner_id"]
    member, _ = await invite(client, admin, "user")  # admins invite too

    team = (await client.get("/v1/team", headers=owner)).json()["data"]
    roles = sorted(m["role"] for m in team)
    assert roles == ["admin", "owner", "user"]
    member_id = next(m["id"] for m in team if m["role"] == "user")
    admin_id = next(m["id"] for m in team if m["role"] == "admin")

    promoted = await client.patch(f"/v1/team/{member_id}", headers=admin, json={"role": "admin"})
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    own_role = await client.patch(f"/v1/team/{admin_id}", headers=admin, json={"role": "user"})
    assert own_role.status_code == 403
    to_owner = await client.patch(f"/v1/team/{member_id}", headers=owner, json={"role": "owner"})
    assert to_owner.status_code == 422  # the owner role is never granted
    owner_demoted = await client.patch(
        f"/v1/team/{company['owner_id']}", headers=admin, json={"role": "user"}
    )
    assert owner_demoted.status_code == 403

    duplicate = await client.post(
        "/v1/team/invitations", headers=owner, json={"email": invitation["email"]}
    )
    assert duplicate.status_code == 409

    removed = await client.delete(f"/v1/team/{member_id}", headers=owner)
    assert removed.status_code == 204
    assert (await client.get("/v1/contacts", headers=member)).status_code == 403
    assert (await client.delete(f"/v1/team/{member_id}", headers=owner)).status_code == 404
    cannot_remove_owner = await client.delete(f"/v1/team/{company['owner_id']}", headers=admin)
    assert cannot_remove_owner.status_code == 403


async def test_owner_deletes_the_company_and_its_data(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    await client.post("/v1/companies", headers=owner, json={"name": "Short-lived"})
    admin, _ = await invite(client, owner, "admin")
    await client.post("/v1/contacts", headers=owner, json={"first_name": "Gone"})
    assert (await client.delete("/v1/companies/current", headers=admin)).status_code == 403
    assert (await client.delete("/v1/companies/current", headers=owner)).status_code == 204
    assert (await client.get("/v1/companies/current", headers=owner)).status_code == 403
    assert (
        await client.post("/v1/companies", headers=owner, json={"name": "New"})
    ).status_code == 201
