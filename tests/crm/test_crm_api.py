"""Contacts and deals through the API: the full life cycle, filters, search, the pipeline,
bad input, and paging while rows are being inserted."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany


@pytest.fixture
def headers(auth: AuthHeaders, tenant: SeededCompany) -> dict[str, str]:
    return auth(tenant.member)


async def create(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(path, headers=headers, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_contact_life_cycle(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    contact = await create(
        client, "/v1/contacts", headers,
        {"email": "Bea@Example.com", "first_name": "Bea", "tags": ["lead"], "metadata": {"a": 1}},
    )  # fmt: skip
    assert contact["email"] == "bea@example.com"
    assert contact["company_id"] == str(tenant.company_id)
    url = f"/v1/contacts/{contact['id']}"
    assert (await client.get(url, headers=headers)).json() == contact

    patched = await client.patch(url, headers=headers, json={"last_name": "Lee", "tags": []})
    assert patched.status_code == 200
    assert patched.json()["last_name"] == "Lee"
    assert patched.json()["first_name"] == "Bea"  # untouched
    assert patched.json()["tags"] == []
    assert patched.json()["updated_at"] > contact["updated_at"]

    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 404


async def test_contacts_filter_by_tag_and_search_by_prefix(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    marker = uuid.uuid4().hex[:8]
    await create(client, "/v1/contacts", headers, {"email": f"zed{marker}@x.io", "tags": [marker]})
    await create(client, "/v1/contacts", headers, {"first_name": f"Zed{marker}"})
    await create(client, "/v1/contacts", headers, {"phone": "+1 555 0100", "tags": ["other"]})

    async def ids(**params: str) -> list[str]:
        response = await client.get("/v1/contacts", headers=headers, params=params)
        assert response.status_code == 200, response.text
        return [row["id"] for row in response.json()["data"]]

    assert len(await ids(tag=marker)) == 1
    assert len(await ids(q=f"ZED{marker}")) == 2  # case-insensitive, email and name
    assert len(await ids(q="+1 555")) >= 1
    assert await ids(q="%") == []  # wildcards are matched literally
    assert await ids(q=f"zed{marker}_") == []


async def test_deal_life_cycle_and_pipeline(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany
) -> None:
    contact_id = str(tenant.rows["contacts"])
    deal = await create(
        client, "/v1/deals", headers,
        {"title": "Big one", "value": "2500.00", "contact_id": contact_id, "stage": "proposal"},
    )  # fmt: skip
    moved = await client.patch(
        f"/v1/deals/{deal['id']}", headers=headers, json={"stage": "negotiation"}
    )
    assert moved.json()["stage"] == "negotiation"

    by_stage = await client.get("/v1/deals", headers=headers, params={"stage": "negotiation"})
    assert [row["id"] for row in by_stage.json()["data"]] == [deal["id"]]
    by_contact = await client.get("/v1/deals", headers=headers, params={"contact_id": contact_id})
    assert len(by_contact.json()["data"]) == 2  # the seeded deal and this one

    pipeline = (await client.get("/v1/deals/pipeline", headers=headers)).json()["stages"]
    assert [stage["stage"] for stage in pipeline][:2] == ["lead", "qualified"]
    totals = {stage["stage"]: (stage["count"], float(stage["value"])) for stage in pipeline}
    assert totals["negotiation"] == (1, 2500.0)
    assert totals["lead"] == (1, 1200.5)  # the seeded deal
    assert totals["closed-won"] == (0, 0.0)


BAD_INPUT = [
    ("/v1/contacts", {"email": 42}, "email"),
    ("/v1/contacts", {"email": "not-an-email"}, "email"),
    ("/v1/contacts", {"tags": "vip"}, "tags"),
    ("/v1/contacts", {"tags": [""]}, "tags.0"),
    ("/v1/contacts", {"nickname": "Bo"}, "nickname"),
    ("/v1/deals", {"title": "T", "stage": "won"}, "stage"),
    ("/v1/deals", {"title": "T", "probability": 101}, "probability"),
    ("/v1/deals", {"title": "T", "value": -1}, "value"),
    ("/v1/deals", {"title": "T", "value": "1e20"}, "value"),
    ("/v1/deals", {"title": "T", "contact_id": "not-a-uuid"}, "contact_id"),
    ("/v1/deals", {"title": ""}, "title"),
    ("/v1/deals", {}, "title"),
    ("/v1/deals", {"title": "T", "expected_close_date": "2026-02-30"}, "expected_close_date"),
    ("/v1/agents", {"name": "A", "system_prompt": "p", "temperature": 3}, "temperature"),
    ("/v1/agents", {"name": "A", "system_prompt": "p", "max_tokens": 0}, "max_tokens"),
    ("/v1/calls/history", {"direction": "sideways"}, "direction"),
    ("/v1/calls/recordings", {"recording_url": "ftp://x"}, "recording_url"),
    ("/v1/analytics/events", {"event_type": "Bad Type"}, "event_type"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_INPUT)
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, body: object, field: str
) -> None:
    response = await client.post(path, headers=headers, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [error["field"] for error in response.json()["errors"]]


async def test_reference_to_another_companys_row_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    make_tenant: MakeTenant,
) -> None:
    other = await make_tenant()
    for path, body, field in [
        ("/v1/deals", {"title": "T", "contact_id": str(other.rows["contacts"])}, "contact_id"),
        ("/v1/calls/history",
         {"direction": "inbound", "agent_id": str(other.rows["agent_configs"])}, "agent_id"),
        ("/v1/deals", {"title": "T", "contact_id": str(uuid.uuid4())}, "contact_id"),
    ]:  # fmt: skip
        response = await client.post(path, headers=headers, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == field


async def test_invalid_uuid_in_path_and_malformed_json(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    bad_id = await client.get("/v1/contacts/123", headers=headers)
    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["field"] == "row_id"
    malformed = await client.post(
        "/v1/contacts", headers={**headers, "Content-Type": "application/json"}, content=b"{oops"
    )
    assert malformed.status_code == 400
    assert malformed.headers["content-type"] == "application/problem+json"


async def test_body_over_one_mebibyte_is_413(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    huge = {"metadata": {"blob": "x" * (1024 * 1024)}}
    response = await client.post("/v1/contacts", headers=headers, json=huge)
    assert response.status_code == 413
    assert response.json()["status"] == 413

    async def chunks() -> Any:  # no Content-Length: the limit applies while streaming
        yield b'{"metadata": {"blob": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    streamed = await client.post(
        "/v1/contacts", headers={**headers, "Content-Type": "application/json"}, content=chunks()
    )
    assert streamed.status_code == 413


async def test_paging_limits_and_cursor_errors(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await client.get("/v1/contacts?limit=101", headers=headers)).status_code == 422
    assert (await client.get("/v1/contacts?limit=0", headers=headers)).status_code == 422
    bad_cursor = await client.get("/v1/contacts?cursor=bm9wZQ", headers=headers)
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["field"] == "cursor"
    counted = await client.get("/v1/contacts?count=exact&limit=1", headers=headers)
    assert counted.json()["total"] == 1  # the seeded contact
    assert counted.json()["next_cursor"] is None


async def test_paging_while_rows_are_inserted_returns_every_row_exactly_once(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    existing = {(await create(client, "/v1/contacts", headers, {"first_name": f"P{i}"}))["id"]
                for i in range(24)}  # fmt: skip
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/contacts", headers=headers, params=params)).json()
        seen.extend(row["id"] for row in page["data"])
        pages += 1
        # Someone else keeps adding contacts while we page.
        await asyncio.gather(
            *(create(client, "/v1/contacts", headers, {"first_name": "New"}) for _ in range(3))
        )
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages >= 5
    assert len(seen) == len(set(seen))
    assert existing <= set(seen)


async def test_offset_paging_is_accepted_but_not_with_a_cursor(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    for i in range(3):
        await create(client, "/v1/contacts", headers, {"first_name": f"O{i}"})
    first = (await client.get("/v1/contacts", headers=headers, params={"limit": 2})).json()
    skipped = await client.get("/v1/contacts", headers=headers, params={"limit": 2, "offset": 2})
    assert skipped.status_code == 200
    assert not {r["id"] for r in first["data"]} & {r["id"] for r in skipped.json()["data"]}
    both = await client.get(
        "/v1/contacts", headers=headers, params={"offset": 1, "cursor": first["next_cursor"]}
    )
    assert both.status_code == 422
