"""Graphs are checked when saved: a 422 names the node or edge at fault."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from syntera.workflows.graph import AllOf, AnyOf, Comparison, holds
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

TRIGGER = {"id": "t", "type": "trigger", "config": {}}
TAG = {"id": "tag", "type": "add_tag", "config": {"tag": "new"}}
CONDITION = {
    "id": "c",
    "type": "condition",
    "config": {"when": {"field": "contact.email", "op": "exists"}},
}


@pytest.mark.parametrize(
    ("nodes", "edges", "field", "message"),
    [
        ([TRIGGER, TAG, {**TAG}], [{"source": "t", "target": "tag"}], "nodes[2]", "used twice"),
        ([TAG], [], "nodes", "exactly one trigger"),
        ([TRIGGER, {**TRIGGER, "id": "t2"}], [], "nodes", "exactly one trigger"),
        ([TRIGGER, TAG], [{"source": "t", "target": "ghost"}], "edges[0]", "does not exist"),
        (
            [TRIGGER, TAG, {"id": "tag2", "type": "remove_tag", "config": {"tag": "x"}}],
            [
                {"source": "t", "target": "tag"},
                {"source": "tag", "target": "tag2"},
                {"source": "tag2", "target": "tag"},
            ],
            "edges",
            "cycle",
        ),
        (
            [TRIGGER, TAG, CONDITION],
            [{"source": "t", "target": "c"}, {"source": "c", "target": "tag"}],
            "edges[1]",
            "set condition",
        ),
        (
            [TRIGGER, TAG],
            [{"source": "t", "target": "tag", "condition": True}],
            "edges[0]",
            "only edges out of a condition",
        ),
        ([TRIGGER, TAG], [{"source": "tag", "target": "t"}], "edges[0]", "enters the trigger"),
        ([TRIGGER, TAG], [], "nodes[1]", "cannot be reached"),
        (
            [TRIGGER, {"id": "e", "type": "end", "config": {}}, TAG],
            [{"source": "t", "target": "e"}, {"source": "e", "target": "tag"}],
            "edges[1]",
            "leaves end node",
        ),
    ],
)
async def test_unrunnable_graphs_are_refused_by_name(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]],
    field: str,
    message: str,
) -> None:
    response = await client.post(
        "/v1/workflows",
        headers=auth(tenant.owner),
        json={"name": "W", "trigger_type": "contact_created", "nodes": nodes, "edges": edges},
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert message in response.json()["detail"]


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"id": "x", "type": "teleport", "config": {}}, "teleport"),
        ({"id": "x", "type": "add_tag", "config": {}}, "tag"),
        ({"id": "x", "type": "delay", "config": {"seconds": 0}}, "seconds"),
        ({"id": "x", "type": "send_webhook", "config": {"url": "ftp://x"}}, "url"),
        ({"id": "x", "type": "update_deal_stage", "config": {"stage": "won"}}, "stage"),
        ({"id": "x", "type": "update_contact", "config": {"fields": {"email": "nope"}}}, "email"),
        ({"id": "bad id!", "type": "end", "config": {}}, "id"),
        (
            {
                "id": "x",
                "type": "condition",
                "config": {"when": {"field": "a", "op": "in", "value": 3}},
            },
            "needs a list",
        ),
    ],
)
async def test_bad_node_configurations_are_refused(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    node: dict[str, Any],
    message: str,
) -> None:
    response = await client.post(
        "/v1/workflows",
        headers=auth(tenant.owner),
        json={
            "name": "W",
            "trigger_type": "webhook",
            "nodes": [TRIGGER, node],
            "edges": [{"source": "t", "target": node["id"]}],
        },
    )
    assert response.status_code == 422, response.text
    assert message in response.text


async def test_a_patch_is_checked_against_the_stored_graph(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    headers = auth(tenant.owner)
    created = await client.post(
        "/v1/workflows",
        headers=headers,
        json={
            "name": "W",
            "trigger_type": "contact_created",
            "nodes": [TRIGGER, TAG],
            "edges": [{"source": "t", "target": "tag"}],
        },
    )
    url = f"/v1/workflows/{created.json()['id']}"
    orphaning = await client.patch(url, headers=headers, json={"nodes": [TRIGGER]})
    assert orphaning.status_code == 422
    assert "tag" in orphaning.json()["detail"]
    fine = await client.patch(url, headers=headers, json={"name": "Renamed"})
    assert fine.status_code == 200
    assert fine.json()["nodes"][1]["config"] == {"tag": "new"}


def test_conditions() -> None:
    data = {"contact": {"email": "a@b.c", "tags": ["vip"], "score": "42"}, "to_stage": "closed-won"}
    assert holds(Comparison(field="contact.tags", op="contains", value="vip"), data)
    assert holds(Comparison(field="contact.email", op="contains", value="B.C"), data)
    assert holds(Comparison(field="contact.score", op="greater_than", value=40), data)
    assert not holds(Comparison(field="contact.score", op="less_than", value=40), data)
    assert holds(Comparison(field="to_stage", op="in", value=["closed-won", "closed-lost"]), data)
    assert holds(Comparison(field="contact.phone", op="exists", value=False), data)
    assert not holds(Comparison(field="contact.phone", op="equals", value=None), data)
    assert holds(Comparison(field="to_stage", op="not_equals", value="lead"), data)
    assert holds(
        AllOf(
            all=[
                Comparison(field="contact.email", op="exists"),
                AnyOf(
                    any=[
                        Comparison(field="to_stage", op="equals", value="x"),
                        Comparison(field="contact.tags", op="contains", value="vip"),
                    ]
                ),
            ]
        ),
        data,
    )
    assert not holds(Comparison(field="contact.tags", op="greater_than", value=1), data)
