"""Every /v1 endpoint against the callers it must turn away: no token, another company's
user, a plain member where an owner or admin is required.

The tables below are checked against the application's routes, so a new endpoint that is
not listed here fails ``test_every_row_route_is_covered``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

# Route prefix with {row_id} -> the seeded table whose row it addresses, and a valid
# PATCH body for it.
ROW_ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "/v1/agents": ("agent_configs", {"name": "Renamed"}),
    "/v1/contacts": ("contacts", {"first_name": "Renamed"}),
    "/v1/deals": ("deals", {"title": "Renamed"}),
    "/v1/workflows": ("workflows", {"name": "Renamed"}),
    "/v1/calls/recordings": ("call_recordings", {"transcript": "changed"}),
    "/v1/calls/history": ("call_history", {"status": "failed"}),
    "/v1/notifications": ("notifications", {"read": True}),
    "/v1/analytics/events": ("analytics_events", {}),
    "/v1/team/invitations": ("invitations", {}),
    "/v1/invitations": ("invitations", {}),
    "/v1/team": ("users", {"role": "admin"}),
    "/v1/kb/documents": ("knowledge_base_documents", {}),
    "/v1/saved-replies": ("saved_replies", {"content": "changed"}),
}


def v1_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of /v1, as the OpenAPI document lists them."""
    return sorted(
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1")
        for method in operations
    )


def concrete(path: str) -> str:
    """The path with a random UUID for each of its parameters."""
    return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)


def row_of(tenant: SeededCompany, table: str) -> uuid.UUID:
    """The seeded row of ``table`` (for users: the plain member)."""
    if table == "users":
        assert tenant.member.user_id is not None
        return tenant.member.user_id
    return tenant.rows[table]


async def test_every_v1_route_requires_a_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    routes = v1_routes(app)
    assert len(routes) > 30
    for method, path in routes:
        response = await client.request(method, concrete(path), json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        scheme = "X-Api-Key" if path.startswith("/v1/public/") else "Bearer"
        if path.startswith("/v1/hooks/"):
            scheme = "X-Webhook-Secret"
        assert response.headers["www-authenticate"] == scheme


def test_every_row_route_is_covered(app: FastAPI) -> None:
    row_prefixes = {path.split("/{row_id}")[0] for _, path in v1_routes(app) if "{row_id}" in path}
    assert row_prefixes == set(ROW_ROUTES)


# Valid bodies of the actions on a row that take one, so that what answers is the row's
# lookup (404), not the body's validation.
ACTION_BODIES: dict[str, dict[str, str]] = {"preview": {"question": "Do you ship to Oslo?"}}


@pytest.mark.parametrize("prefix", sorted(ROW_ROUTES))
async def test_user_of_other_company_gets_404_and_never_sees_the_row(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    owner_conn: psycopg.Connection,
    tenant_a: SeededCompany,
    tenant_b: SeededCompany,
    prefix: str,
) -> None:
    table, patch_body = ROW_ROUTES[prefix]
    row_id = row_of(tenant_a, table)
    stranger = auth(tenant_b.owner)
    tried = []
    for method, path in v1_routes(app):
        if not path.startswith(f"{prefix}/{{row_id}}"):
            continue
        url = path.replace("{row_id}", str(row_id))
        body = patch_body if method == "PATCH" else ACTION_BODIES.get(path.rpartition("/")[2])
        response = await client.request(method, url, headers=stranger, json=body)
        assert response.status_code == 404, (method, url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        tried.append(method)
    assert "GET" in tried or "DELETE" in tried
    listed = await client.get(prefix, headers=stranger, params={"limit": 100})
    assert listed.status_code == 200, listed.text
    assert str(row_id) not in {row["id"] for row in listed.json()["data"]}
    # ... and the row is still there, unchanged by the stranger's attempts.
    assert owner_conn.execute(
        psycopg.sql.SQL("SELECT 1 FROM {} WHERE id = %s").format(
            psycopg.sql.Identifier("public", table)
        ),
        (row_id,),
    ).fetchone()


async def test_user_of_other_company_gets_the_same_404_as_for_a_missing_row(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    foreign = await client.get(
        f"/v1/contacts/{tenant_a.rows['contacts']}", headers=auth(tenant_b.owner)
    )
    missing = await client.get(f"/v1/contacts/{uuid.uuid4()}", headers=auth(tenant_b.owner))
    assert foreign.status_code == missing.status_code == 404
    assert {**foreign.json(), "instance": None} == {**missing.json(), "instance": None}


MANAGER_ONLY = [
    ("POST", "/v1/workflows", {"name": "W", "trigger_type": "webhook"}),
    ("PATCH", "/v1/workflows/{workflows}", {"name": "W2"}),
    ("DELETE", "/v1/workflows/{workflows}", None),
    ("POST", "/v1/team/invitations", {"email": "x@example.com"}),
    ("GET", "/v1/team/invitations", None),
    ("DELETE", "/v1/team/invitations/{invitations}", None),
    ("PATCH", "/v1/team/{admin}", {"role": "user"}),
    ("DELETE", "/v1/team/{admin}", None),
    ("PATCH", "/v1/companies/current", {"name": "Renamed"}),
    ("DELETE", "/v1/companies/current", None),
]


@pytest.mark.parametrize(("method", "path", "body"), MANAGER_ONLY)
async def test_plain_member_gets_403_where_owner_or_admin_is_required(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant_a: SeededCompany,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    names = {**{k: str(v) for k, v in tenant_a.rows.items()}, "admin": str(tenant_a.admin.user_id)}
    response = await client.request(
        method, path.format(**names), headers=auth(tenant_a.member), json=body
    )
    assert response.status_code == 403, response.text
    assert response.json()["status"] == 403


async def test_user_without_company_is_told_to_create_one(
    client: httpx.AsyncClient, auth: AuthHeaders, owner_conn: psycopg.Connection
) -> None:
    from tests.factories import create_auth_user

    loner = Principal.user(create_auth_user(owner_conn))
    response = await client.get("/v1/contacts", headers=auth(loner))
    assert response.status_code == 403
    assert "POST /v1/companies" in response.json()["detail"]


async def test_service_key_acts_only_in_the_company_it_names(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    service = auth(Principal.service())
    unnamed = await client.get("/v1/contacts", headers=service)
    assert unnamed.status_code == 403
    as_b = {**service, "X-Company-Id": str(tenant_b.company_id)}
    foreign = await client.get(f"/v1/contacts/{tenant_a.rows['contacts']}", headers=as_b)
    assert foreign.status_code == 404
    own = await client.get(f"/v1/contacts/{tenant_b.rows['contacts']}", headers=as_b)
    assert own.status_code == 200
