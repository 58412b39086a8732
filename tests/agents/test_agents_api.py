"""Agent configurations through the API, and their widget keys."""

from __future__ import annotations

import hashlib

import httpx
import psycopg

from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


async def test_agent_life_cycle_and_public_key_shown_once(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    headers = auth(tenant.member)
    created = await client.post(
        "/v1/agents", headers=headers,
        json={"name": "Sales", "system_prompt": "Sell kindly", "temperature": 0.3},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    agent = created.json()
    assert agent["enabled"] is True
    assert agent["has_public_key"] is False
    assert "public_api_key" not in agent

    disabled = await client.patch(
        f"/v1/agents/{agent['id']}", headers=headers, json={"enabled": False}
    )
    assert disabled.json()["enabled"] is False

    first = await client.post(f"/v1/agents/{agent['id']}/public-key", headers=headers)
    assert first.status_code == 201
    key = first.json()["public_key"]
    assert key.startswith("pub_key_")
    stored = owner_conn.execute(
        "SELECT public_api_key FROM agent_configs WHERE id = %s", (agent["id"],)
    ).fetchone()
    assert stored is not None
    assert stored[0] == hashlib.sha256(key.encode()).hexdigest()  # only the digest is kept

    shown = (await client.get(f"/v1/agents/{agent['id']}", headers=headers)).json()
    assert shown["has_public_key"] is True
    assert key not in str(shown)
    rotated = (await client.post(f"/v1/agents/{agent['id']}/public-key", headers=headers)).json()
    assert rotated["public_key"] != key
