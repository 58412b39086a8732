"""Workflows through the API: owners and admins write, members read, and the executions
of a workflow are listed newest first."""

from __future__ import annotations

import httpx

from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


async def test_admin_writes_member_reads_and_executions_are_listed(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
) -> None:
    admin, member = auth(tenant.admin), auth(tenant.member)
    created = await client.post(
        "/v1/workflows", headers=admin,
        json={
            "name": "Tag buyers", "trigger_type": "purchase_intent",
            "nodes": [{"id": "t", "type": "trigger", "config": {}}], "edges": [],
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text
    workflow = created.json()
    assert workflow["created_by"] == str(tenant.admin.user_id)
    assert (await client.get(f"/v1/workflows/{workflow['id']}", headers=member)).status_code == 200
    bad_trigger = await client.post(
        "/v1/workflows", headers=admin, json={"name": "X", "trigger_type": "sunrise"}
    )
    assert bad_trigger.status_code == 422

    seeded = tenant.rows["workflows"]
    executions = await client.get(f"/v1/workflows/{seeded}/executions", headers=member)
    assert executions.status_code == 200
    assert [e["id"] for e in executions.json()["data"]] == [str(tenant.rows["workflow_executions"])]
    none = await client.get(f"/v1/workflows/{workflow['id']}/executions", headers=member)
    assert none.json() == {"data": [], "next_cursor": None, "total": None}
