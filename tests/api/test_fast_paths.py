"""The fast paths (``syntera.api.fast_paths``) answer exactly as FastAPI's routes do,
keep tenants apart, and leave every other case to FastAPI."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg
import pytest

from syntera.api import fast_paths
from syntera.auth.tokens import issue_access_token, load_keys
from syntera.config import Settings
from syntera.ratelimit import Limiters
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
    assert fast_paths.LISTS, "no list registered for the fast path"
    for prefix in fast_paths.LISTS:
        for query in ("", "?limit=1"):
            fast = await client.get(f"{prefix}{query}", headers=headers)
            joiner = "&" if query else "?"
            routed = await client.get(f"{prefix}{query}{joiner}via=route", headers=headers)
            assert fast.status_code == routed.status_code, (prefix, fast.text, routed.text)
            assert fast.content == routed.content, prefix
    other = await client.get("/v1/contacts?limit=500", headers=headers)
    assert other.status_code == 422  # out of range: the route's own answer


# A valid create of every resource the fast path creates, with "{s}" where a value is
# made unique per request.
CREATES = {
    "/v1/contacts": '{"email": "{s}@example.com", "first_name": "Ada", "tags": ["vip"]}',
    "/v1/deals": '{"title": "Deal {s}", "stage": "qualified", "value": 1200.5}',
    "/v1/agents": '{"name": "Agent {s}", "system_prompt": "Be brief."}',
    "/v1/calls/history": '{"direction": "inbound", "from_number": "+14155550100"}',
    "/v1/calls/recordings": '{"recording_url": "https://calls.example.com/{s}.wav"}',
    "/v1/saved-replies": '{"shortcut": "s{s}", "content": "Thanks, {s}!"}',
}
GENERATED = ("id", "created_at", "updated_at", "started_at")  # started_at: now() by default


def _unique() -> str:
    return uuid.uuid4().hex[:12]


async def test_every_fast_create_is_the_routes_create(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    assert set(fast_paths.CREATES) == set(CREATES), "a fast create without a body here"
    headers = auth(tenant.member) | {"Content-Type": "application/json"}
    for path, template in CREATES.items():
        one, two = _unique(), _unique()
        fast = await client.post(path, headers=headers, content=template.replace("{s}", one))
        routed = await client.post(f"{path}?via=route", headers=headers,
                                   content=template.replace("{s}", two))  # fmt: skip
        assert fast.status_code == routed.status_code == 201, (path, fast.text, routed.text)
        assert fast.headers["content-type"] == routed.headers["content-type"]
        made, expected = fast.json(), routed.json()
        assert made["company_id"] == str(tenant.company_id)
        assert made["id"] != expected["id"]  # two rows were made
        for key in GENERATED:
            made.pop(key, None), expected.pop(key, None)
        assert str(made).replace(one, "S") == str(expected).replace(two, "S"), path
        stored = await client.get(f"{path}/{fast.json()['id']}", headers=headers)
        assert stored.json() == fast.json()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"email": 5}', 422),  # not a valid create: the route's 422
        ('{"email": "a@example.com", "company_id": "00000000-0000-0000-0000-000000000000"}', 422),
        ('{"email": ', 400),  # not JSON
        ('["a@example.com"]', 422),  # not an object
    ],
)
async def test_a_refused_create_is_the_routes_answer_counted_once(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany,
    monkeypatch: pytest.MonkeyPatch, body: str, status: int,
) -> None:  # fmt: skip
    counted: list[str] = []
    enforce = Limiters.enforce

    async def counting(self: Limiters, limiter: Any, key: str, what: str) -> None:
        counted.append(key)
        await enforce(self, limiter, key, what)

    monkeypatch.setattr(Limiters, "enforce", counting)
    headers = auth(tenant.member) | {"Content-Type": "application/json"}
    fast = await client.post("/v1/contacts", headers=headers, content=body)
    fast_counts = len(counted)
    routed = await client.post("/v1/contacts?via=route", headers=headers, content=body)
    assert fast.status_code == routed.status_code == status, (fast.text, routed.text)
    assert fast.json() | {"instance": ""} == routed.json() | {"instance": ""}
    # Counted against the limit as the route counts it (once; FastAPI does not count a
    # body that is not JSON), not once more by the fast path.
    assert fast_counts == len(counted) - fast_counts <= 1
    counted.clear()
    made = await client.post("/v1/contacts", headers=headers,
                             content=f'{{"email": "{_unique()}@example.com"}}')  # fmt: skip
    assert made.status_code == 201
    assert len(counted) == 1


async def test_a_fast_create_stays_in_the_callers_company(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany,
    tenant_b: SeededCompany, settings: Settings, owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    email = f"{_unique()}@example.com"
    made = await client.post("/v1/contacts", headers=auth(tenant_b.member),
                             json={"email": email})  # fmt: skip
    assert made.status_code == 201
    # Company A's user can neither see it nor write into company B through the create.
    assert (await client.get(f"/v1/contacts/{made.json()['id']}",
                             headers=auth(tenant_a.owner))).status_code == 404  # fmt: skip
    loner = create_auth_user(owner_conn)
    token = issue_access_token(
        load_keys(settings), user_id=loner, email=None, session_id=uuid.uuid4(),
        lifetime_s=600, issuer="test", user_metadata={}, app_metadata={},
    ).token  # fmt: skip
    refused = await client.post("/v1/contacts", headers={"Authorization": f"Bearer {token}"},
                                json={"email": f"{_unique()}@example.com"})  # fmt: skip
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    rows = owner_conn.execute(
        "SELECT company_id FROM public.contacts WHERE email = %s", (email,)
    ).fetchall()
    assert rows == [(tenant_b.company_id,)]


async def test_a_fast_create_is_counted_under_its_route_template(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    made = await client.post("/v1/deals", headers=auth(tenant.member), json={"title": "T"})
    assert made.status_code == 201
    metrics = (await client.get("/metrics")).text
    counted = [line for line in metrics.splitlines()
               if line.startswith("syntera_http_requests_total{")
               and 'route="/v1/deals"' in line and 'status="201"' in line]  # fmt: skip
    assert counted, "the fast create was not counted under /v1/deals"
