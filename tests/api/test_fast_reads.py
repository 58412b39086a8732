"""The fast read path (``syntera.api.fast_reads``) answers exactly as FastAPI's route
does, keeps tenants apart, and leaves every other case to FastAPI."""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from syntera.api import fast_reads
from syntera.auth.tokens import issue_access_token, load_keys
from syntera.config import Settings
from tests.api_fixtures import AuthHeaders
from tests.conftest import TEST_SERVICE_KEY
from tests.factories import SeededCompany, create_auth_user

# (resource path, seeded row) of every resource with a read route.
READS = [("/v1/contacts", "contacts"), ("/v1/deals", "deals"), ("/v1/agents", "agent_configs"),
         ("/v1/workflows", "workflows"), ("/v1/calls/history", "call_history"),
         ("/v1/calls/recordings", "call_recordings"),
         ("/v1/kb/documents", "knowledge_base_documents")]  # fmt: skip


@pytest.mark.parametrize(("path", "table"), READS)
async def test_the_fast_answer_is_the_routes_answer(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, path: str, table: str
) -> None:
    headers = auth(tenant.owner)
    fast = await client.get(f"{path}/{tenant.rows[table]}", headers=headers)
    # A query string sends the same read through FastAPI's route.
    routed = await client.get(f"{path}/{tenant.rows[table]}?via=route", headers=headers)
    assert fast.status_code == routed.status_code == 200, (fast.text, routed.text)
    assert fast.content == routed.content
    assert fast.headers["content-type"] == routed.headers["content-type"]


async def test_another_companys_row_is_the_same_404_either_way(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany,
    tenant_b: SeededCompany,
) -> None:  # fmt: skip
    theirs = f"/v1/contacts/{tenant_b.rows['contacts']}"
    fast = await client.get(theirs, headers=auth(tenant_a.member))
    routed = await client.get(f"{theirs}?via=route", headers=auth(tenant_a.member))
    assert fast.status_code == routed.status_code == 404
    assert fast.json() | {"instance": ""} == routed.json() | {"instance": ""}
    assert fast.headers["content-type"] == "application/problem+json"
    missing = await client.get(f"/v1/contacts/{uuid.uuid4()}", headers=auth(tenant_a.member))
    assert missing.status_code == 404
    mine = await client.get(f"/v1/contacts/{tenant_a.rows['contacts']}",
                            headers=auth(tenant_a.member))  # fmt: skip
    assert mine.status_code == 200


async def test_other_callers_and_cases_go_to_the_route(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    settings: Settings,
    owner_conn: psycopg.Connection,
) -> None:
    path = f"/v1/contacts/{tenant.rows['contacts']}"
    service = {
        "Authorization": f"Bearer {TEST_SERVICE_KEY}",
        "X-Company-Id": str(tenant.company_id),
    }
    assert (await client.get(path, headers=service)).status_code == 200
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers={"Authorization": "Bearer nonsense"})).status_code == 401
    assert (
        await client.get("/v1/contacts/not-a-uuid", headers=auth(tenant.member))
    ).status_code == 422
    loner = create_auth_user(owner_conn)  # a user of no company
    token = issue_access_token(
        load_keys(settings), user_id=loner, email=None, session_id=uuid.uuid4(),
        lifetime_s=600, issuer="test", user_metadata={}, app_metadata={},
    ).token  # fmt: skip
    refused = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403
    assert "not a member of any company" in refused.json()["detail"]


async def test_fast_reads_are_counted_under_their_route_template(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    await client.get(f"/v1/deals/{tenant.rows['deals']}", headers=auth(tenant.member))
    metrics = (await client.get("/metrics")).text
    assert 'route="/v1/deals/{row_id}"' in metrics
    assert f"/v1/deals/{tenant.rows['deals']}" not in metrics


async def test_every_first_page_is_the_routes_page(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    headers = auth(tenant.owner)
    assert fast_reads.LISTS, "no list registered for the fast path"
    for prefix in fast_reads.LISTS:
        for query in ("", "?limit=1"):
            fast = await client.get(f"{prefix}{query}", headers=headers)
            joiner = "&" if query else "?"
            routed = await client.get(f"{prefix}{query}{joiner}via=route", headers=headers)
            assert fast.status_code == routed.status_code, (prefix, fast.text, routed.text)
            assert fast.content == routed.content, prefix
    other = await client.get("/v1/contacts?limit=500", headers=headers)
    assert other.status_code == 422  # out of range: the route's own answer
