"""GET /rest/v1/<relation>: select, filters, order, ranges and counts."""

from __future__ import annotations

from typing import Any

from tests.factories import SeededCompany


async def test_a_member_reads_their_contact_by_id(rest_as: Any, tenant_a: SeededCompany) -> None:
    rest = rest_as(tenant_a.member)
    contact_id = tenant_a.rows["contacts"]
    rows = await rest.rows(f"contacts?id=eq.{contact_id}")
    assert [row["id"] for row in rows] == [str(contact_id)]
    assert rows[0]["first_name"] == "Ann"
