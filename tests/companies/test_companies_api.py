"""Companies and teams through the API: signing up, creating a company, inviting,
changing roles and removing members, as the real auth flow does it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg


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
    """Invite a new email with ``role``; that person signs up and accepts it."""
    email = f"invitee-{uuid.uuid4().hex[:12]}@example.com"
    invited = await client.post(
        "/v1/team/invitations", headers=manager, json={"email": email, "role": role}
    )
    assert invited.status_code == 201, invited.text
    invitee = await sign_up(client, email)
    accepted = await client.post(f"/v1/invitations/{invited.json()['id']}/accept", headers=invitee)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["role"] == role
    return invitee, invited.json()


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


async def test_signing_up_joins_nothing_and_the_invitee_chooses_which_invitation(
    client: httpx.AsyncClient,
) -> None:
    """Two companies invite the same address; the later one cannot pre-empt the other:
    the invitee sees both and accepts the one they choose."""
    first_owner, second_owner = await sign_up(client), await sign_up(client)
    first = (await client.post("/v1/companies", headers=first_owner, json={"name": "A"})).json()
    await client.post("/v1/companies", headers=second_owner, json={"name": "B"})
    email = f"invitee-{uuid.uuid4().hex[:12]}@example.com"
    earlier = await client.post(
        "/v1/team/invitations", headers=first_owner, json={"email": email, "role": "admin"}
    )
    later = await client.post("/v1/team/invitations", headers=second_owner, json={"email": email})
    invitee = await sign_up(client, email)
    assert (await client.get("/v1/companies/current", headers=invitee)).status_code == 403

    pending = (await client.get("/v1/invitations", headers=invitee)).json()["data"]
    assert [(p["company_name"], p["role"]) for p in pending] == [("B", "user"), ("A", "admin")]
    accepted = await client.post(f"/v1/invitations/{earlier.json()['id']}/accept", headers=invitee)
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["company_id"], accepted.json()["role"]) == (first["id"], "admin")
    current = (await client.get("/v1/companies/current", headers=invitee)).json()
    assert current["id"] == first["id"]

    twice = await client.post(f"/v1/invitations/{earlier.json()['id']}/accept", headers=invitee)
    assert twice.status_code == 404, "accepted once"
    other = await client.post(f"/v1/invitations/{later.json()['id']}/accept", headers=invitee)
    assert other.status_code == 409, "a user has one company"
    assert [p["company_name"] for p in (await client.get("/v1/invitations", headers=invitee))
            .json()["data"]] == ["B"]  # fmt: skip


async def test_nobody_but_the_addressee_sees_or_accepts_an_invitation(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client)
    await client.post("/v1/companies", headers=owner, json={"name": "Private"})
    email = f"invitee-{uuid.uuid4().hex[:12]}@example.com"
    invitation = (
        await client.post("/v1/team/invitations", headers=owner, json={"email": email})
    ).json()
    stranger = await sign_up(client)  # no company, another email
    assert (await client.get("/v1/invitations", headers=stranger)).json()["data"] == []
    taken = await client.post(f"/v1/invitations/{invitation['id']}/accept", headers=stranger)
    assert taken.status_code == 404
    missing = await client.post(f"/v1/invitations/{uuid.uuid4()}/accept", headers=stranger)
    assert {**taken.json(), "instance": None} == {**missing.json(), "instance": None}
    invitee = await sign_up(client, email)
    assert [p["id"] for p in (await client.get("/v1/invitations", headers=invitee))
            .json()["data"]] == [invitation["id"]]  # fmt: skip


async def test_an_expired_invitation_is_neither_listed_nor_accepted(
    client: httpx.AsyncClient, owner_conn: psycopg.Connection
) -> None:
    owner = await sign_up(client)
    await client.post("/v1/companies", headers=owner, json={"name": "Slow"})
    email = f"invitee-{uuid.uuid4().hex[:12]}@example.com"
    invitation = (
        await client.post("/v1/team/invitations", headers=owner, json={"email": email})
    ).json()
    owner_conn.execute(
        "UPDATE public.invitations SET expires_at = now() - interval '1 s' WHERE id = %s",
        (invitation["id"],),
    )
    invitee = await sign_up(client, email)
    assert (await client.get("/v1/invitations", headers=invitee)).json()["data"] == []
    late = await client.post(f"/v1/invitations/{invitation['id']}/accept", headers=invitee)
    assert late.status_code == 404
