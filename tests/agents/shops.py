"""Two shops whose knowledge bases share a topic (each refund policy carries a code of
its own), and agents made through the API: what the preview's and the replies' tests
ask."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
import pytest

from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany
from tests.kb.conftest import Process, Upload

# Two companies whose documents share a topic; each policy carries a code of its own.
POLICY_A = (
    "# Refund policy\n\nAcme refunds every order within 14 days of delivery. "
    "Quote the refund code ALPHA-7731 when you ask for a refund of your order."
)
POLICY_B = (
    "# Refund policy\n\nBetaCorp refunds every order within 30 days of delivery. "
    "Quote the refund code BRAVO-4410 when you ask for a refund of your order."
)
QUESTION = "How do I get a refund for my order?"


async def make_agent(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    body = {"name": "Helper", "system_prompt": "You are the shop's refund helper.", **fields}
    created = await client.post("/v1/agents", headers=headers, json=body)
    assert created.status_code == 201, created.text
    agent: dict[str, Any] = created.json()
    return agent


@pytest.fixture(scope="module")
async def shops(
    make_tenant: MakeTenant,
    upload: Upload,
    process: Process,
    auth: AuthHeaders,
) -> tuple[SeededCompany, SeededCompany]:
    """Two companies, each with its refund policy processed into its knowledge base."""
    first, second = await make_tenant(), await make_tenant()
    ids = []
    for tenant, text in ((first, POLICY_A), (second, POLICY_B)):
        response = await upload(auth(tenant.member), "refunds.md", text.encode(), "text/markdown")
        assert response.status_code == 202, response.text
        ids.append(UUID(response.json()["id"]))
    rows = await process(*ids)
    assert all(row["status"] == "completed" for row in rows)
    return first, second
