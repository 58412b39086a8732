"""The right to erasure: a contact and everything that names them, in every store."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import psycopg
from fastapi import FastAPI

from syntera.api.state import Stores
from syntera.config import Settings
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.purges.registry import stored_elsewhere
from syntera.purges.worker import PurgeWorker
from syntera.workflows.engine import WorkflowWorker
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


async def workflow(
    client: httpx.AsyncClient, headers: dict[str, str], trigger: str, nodes: list[Any]
) -> str:
    """An enabled workflow whose nodes follow its trigger in a line; its id."""
    graph = [{"id": "start", "type": "trigger", "config": {}}, *nodes]
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(graph)]
    body = {"name": trigger, "trigger_type": trigger, "nodes": graph, "edges": edges}
    return str((await created(client, headers, "/v1/workflows", body))["id"])


async def test_erasing_a_contact_removes_them_from_workflow_runs(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    api_pool: Any,
    settings: Settings,
) -> None:
    owner = auth(tenant.owner)
    owner_conn.execute(  # the factory's own contact_created workflow: not part of this
        "UPDATE public.workflows SET enabled = false WHERE id = %s", (tenant.rows["workflows"],)
    )
    tag = {"id": "tag", "type": "add_tag", "config": {"tag": "welcomed"}}
    on_create = await workflow(client, owner, "contact_created", [tag])
    wait = {"id": "wait", "type": "delay", "config": {"seconds": 3600}}
    on_update = await workflow(client, owner, "contact_updated", [wait, tag])
    on_hook = await workflow(client, owner, "webhook", [{"id": "end", "type": "end", "config": {}}])
    secret = (await client.post(f"/v1/workflows/{on_hook}/secret", headers=owner)).json()["secret"]
    worker = WorkflowWorker(api_pool, settings.model_copy(update={"workflow_lease_s": 30}))

    async def drain() -> None:
        while await worker.run_once():
            pass

    erased = await created(client, owner, "/v1/contacts", {
        "email": "jane.erased@example.com", "phone": "+1 555 0199",
        "first_name": "Janette", "last_name": "Erasedottir",
    })  # fmt: skip
    kept = await created(client, owner, "/v1/contacts", {
        "email": "john.kept@example.com", "first_name": "Johnny", "last_name": "Keptsson",
    })  # fmt: skip
    await drain()
    for contact in (erased, kept):  # a run waiting in its delay node, for each
        changed = await client.patch(
            f"/v1/contacts/{contact['id']}", headers=owner, json={"tags": ["vip"]}
        )
        assert changed.status_code == 200, changed.text
    hooked = await client.post(
        f"/v1/hooks/{on_hook}", headers={"X-Webhook-Secret": secret},
        json={"customer": {"mail": "jane.erased@example.com", "name": "Janette Erasedottir"}},
    )  # fmt: skip
    assert hooked.status_code == 202, hooked.text
    await client.patch(f"/v1/contacts/{erased['id']}", headers=owner, json={"last_name": "E."})
    await drain()
    # Queued, not yet run: an event the worker has not fanned out.
    await client.patch(f"/v1/contacts/{erased['id']}", headers=owner, json={"last_name": "F."})

    async def runs(workflow_id: str) -> list[dict[str, Any]]:
        answer = await client.get(f"/v1/workflows/{workflow_id}/executions", headers=owner)
        assert answer.status_code == 200, answer.text
        data: list[dict[str, Any]] = answer.json()["data"]
        return data

    flows = (on_create, on_update, on_hook)
    before = {w: {run["id"]: run for run in await runs(w)} for w in flows}
    naming = {
        run_id for w in flows for run_id, run in before[w].items()
        if erased["id"] in str(run) or erased["email"] in str(run)
    }  # fmt: skip
    # Their creation, the changes (one by the tag node), the webhook; some waiting.
    assert len(naming) >= 5
    traces = [erased[field] for field in ("id", "email", "phone", "first_name")]
    traces.append("Erasedottir")  # their last name, as it was when the runs began
    assert all(trace in str(before) for trace in traces)
    unfinished = ("pending", "running")  # a delayed run stays "running", its lease let go
    assert any(before[on_update][run_id]["status"] in unfinished for run_id in naming
               if run_id in before[on_update])  # fmt: skip

    answer = await client.post(f"/v1/contacts/{erased['id']}/erase", headers=owner)
    assert answer.status_code == 202, answer.text
    await drain()

    after = {w: {run["id"]: run for run in await runs(w)} for w in flows}
    shown = str(after)
    for trace in traces:
        assert trace not in shown
    for w in flows:
        assert after[w].keys() == before[w].keys()  # the trail keeps every run
        for run_id, run in after[w].items():
            if run_id not in naming:
                assert run == before[w][run_id]  # the other contact's, untouched
                continue
            assert run["trigger_data"] == {"erased": True}
            if before[w][run_id]["status"] in unfinished:  # waiting in its delay: never resumes
                assert (run["status"], run["error"]) == ("cancelled", "the contact was erased")
            else:
                assert run["status"] == before[w][run_id]["status"]
                assert [step["node_id"] for step in run["steps"]] == [
                    step["node_id"] for step in before[w][run_id]["steps"]
                ]
    assert answer.json()["steps"]["postgres"]["workflow_executions"] == len(naming)
    assert "Keptsson" in shown
    assert kept["email"] in shown
    [create_run] = [run for run_id, run in after[on_create].items() if run_id in naming]
    assert create_run["steps"][0]["result"] == {}  # it named them: {contact_id, tags}
    # Nor in the queue behind them, run or not.
    queued = owner_conn.execute(
        "SELECT count(*) FROM public.workflow_events WHERE company_id = %s AND data::text ~ %s",
        (tenant.company_id, "Erasedottir|jane\\.erased"),
    ).fetchone()
    assert queued == (0,)
