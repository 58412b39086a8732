"""Another company's member reads nothing through /rest/v1: not by filters, embeds or
counts, on any table of public."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import SeededCompany


async def _public_tables(rest_app: httpx.AsyncClient) -> list[tuple[str, bool]]:
    state = rest_app._transport.app.state.rest  # type: ignore[attr-defined]
    cache = await state.schema.current()
    return sorted(
        (relation.name, "company_id" in relation.columns)
        for (schema, _), relation in cache.relations.items()
        if schema == "public"
    )


async def test_no_table_of_public_shows_another_company_s_rows(
    rest_app: httpx.AsyncClient, rest_as: Any, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    rest = rest_as(tenant_a.member)
    tables = await _public_tables(rest_app)
    assert ("contacts", True) in tables
    for table, tenanted in tables:
        if not tenanted:
            continue
        response = await rest.get(
            f"{table}?select=company_id&company_id=eq.{tenant_b.company_id}",
            prefer="count=exact",
        )
        assert response.status_code in (200, 401, 403), (table, response.text)
        if response.status_code == 200:
            assert response.json() == [], table
            assert response.headers["content-range"] == "*/0", table
        response = await rest.get(f"{table}?select=company_id", prefer="count=exact")
        if response.status_code == 200:
            assert {row["company_id"] for row in response.json()} <= {str(tenant_a.company_id)}, (
                table
            )


async def test_filters_embeds_and_counts_do_not_reach_another_company(
    rest_as: Any, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    rest = rest_as(tenant_a.member)
    theirs = tenant_b.rows["contacts"]
    for query in (
        f"contacts?id=eq.{theirs}",
        f"contacts?or=(id.eq.{theirs},email.eq.nobody)",
        f"deals?contact_id=eq.{theirs}",
        f"deals?select=id,contacts!inner(id)&contacts.id=eq.{theirs}",
        f"contacts?select=id,deals!inner(id)&deals.id=eq.{tenant_b.rows['deals']}",
    ):
        response = await rest.get(query, prefer="count=exact")
        assert response.status_code == 200, (query, response.text)
        assert response.json() == [], query
        assert response.headers["content-range"] == "*/0", query
    rows = await rest.rows("contacts?select=id,deals(id)")
    assert rows == [{"id": str(tenant_a.rows["contacts"]),
                     "deals": [{"id": str(tenant_a.rows["deals"])}]}]  # fmt: skip
