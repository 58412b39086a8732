"""The right to erasure: a contact and everything that names them, in every store."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from fastapi import FastAPI

from syntera.api.state import Stores
from syntera.config import Settings
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.purges.registry import stored_elsewhere
from syntera.purges.worker import PurgeWorker
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


async def created(client: httpx.AsyncClient, headers: dict[str, str], path: str, body: Any) -> Any:
    response = await client.post(path, headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def contact_with_history(
    client: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany, email: str
) -> dict[str, Any]:
    """A contact with a deal, a conversation with messages, a call and a recording."""
    contact = await created(client, headers, "/v1/contacts", {"email": email})
    agent = str(tenant.rows["agent_configs"])
    deal = await created(client, headers, "/v1/deals",
                         {"title": "Renewal", "contact_id": contact["id"]})  # fmt: skip
    conversation = await created(client, headers, "/v1/conversations",
                                 {"agent_id": agent, "contact_id": contact["id"]})  # fmt: skip
    for text in ("my address is 1 Main St", "call me on 555-0100"):
        await created(client, headers, f"/v1/conversations/{conversation['id']}/messages",
                      {"sender_type": "user", "content": text})  # fmt: skip
    await created(client, headers, "/v1/calls/history",
                  {"direction": "inbound", "contact_id": contact["id"]})  # fmt: skip
    await created(client, headers, "/v1/calls/recordings",
                  {"recording_url": "https://calls.example.com/1.mp3",
                   "contact_id": contact["id"]})  # fmt: skip
    return {"contact": contact, "deal": deal, "conversation": conversation}


def names_of(owner_conn: psycopg.Connection, contact_id: str) -> dict[str, int]:
    counts = {}
    for table in ("contacts", "analytics_events", "call_history", "call_recordings"):
        column = "id" if table == "contacts" else "contact_id"
        row = owner_conn.execute(
            f"SELECT count(*) FROM public.{table} WHERE {column} = %s",  # noqa: S608 (fixed names)
            (contact_id,),
        ).fetchone()
        assert row is not None
        counts[table] = row[0]
    return counts


async def test_erasing_a_contact_removes_them_everywhere_and_nobody_else(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    tenant_b: SeededCompany,
    owner_conn: psycopg.Connection,
    api_pool: Any,
    settings: Settings,
) -> None:
    admin = auth(tenant.admin)
    erased = await contact_with_history(client, admin, tenant, "jane@example.com")
    neighbour = await contact_with_history(client, admin, tenant, "john@example.com")
    namesake = await contact_with_history(client, auth(tenant_b.admin), tenant_b,
                                          "jane@example.com")  # fmt: skip
    contact_id = erased["contact"]["id"]
    assert names_of(owner_conn, contact_id)["analytics_events"] >= 2

    member_try = await client.post(f"/v1/contacts/{contact_id}/erase", headers=auth(tenant.member))
    assert member_try.status_code == 403
    stranger = await client.post(f"/v1/contacts/{contact_id}/erase", headers=auth(tenant_b.owner))
    assert stranger.status_code == 404
    answer = await client.post(f"/v1/contacts/{contact_id}/erase", headers=admin)
    assert answer.status_code == 202, answer.text
    purge = answer.json()
    assert purge["status"] == "pending"
    assert purge["steps"]["postgres"]["contacts"] == 1
    assert purge["steps"]["postgres"]["call_history"] == 1
    assert names_of(owner_conn, contact_id) == dict.fromkeys(names_of(owner_conn, contact_id), 0)
    deal = await client.get(f"/v1/deals/{erased['deal']['id']}", headers=admin)
    assert deal.status_code == 200
    assert deal.json()["contact_id"] is None  # the deal keeps its history, not the person

    stores: Stores = app.state.stores
    worker = PurgeWorker(
        api_pool,
        stored_elsewhere(
            app.state.conversations, KnowledgeBase.from_settings(settings), stores.redis
        ),
    )
    while await worker.run_once():
        pass
    status = await client.get(f"/v1/purges/{purge['id']}", headers=admin)
    assert status.status_code == 200
    assert status.json()["status"] == "completed"
    assert status.json()["steps"]["conversations"] == {"conversations": 1, "messages": 2}
    gone = await client.get(f"/v1/conversations/{erased['conversation']['id']}", headers=admin)
    assert gone.status_code == 404
    assert (
        await client.get(f"/v1/purges/{purge['id']}", headers=auth(tenant_b.owner))
    ).status_code == 404
    assert (await client.post(f"/v1/contacts/{contact_id}/erase", headers=admin)).status_code == 404

    for other, headers in ((neighbour, admin), (namesake, auth(tenant_b.admin))):
        kept = await client.get(f"/v1/contacts/{other['contact']['id']}", headers=headers)
        assert kept.status_code == 200
        messages = await client.get(
            f"/v1/conversations/{other['conversation']['id']}/messages", headers=headers
        )
        assert len(messages.json()["data"]) == 2
        counts = names_of(owner_conn, other["contact"]["id"])
        assert counts["call_history"] == 1
        assert counts["call_recordings"] == 1
