"""Workflows run: each trigger starts the right workflows of its company only, each
action has its effect, conditions branch, retries and take-overs apply nothing twice,
delays survive, loops stop, webhooks are signed and guarded."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import datetime
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from syntera.api.json_guard import MAX_DEPTH
from syntera.db.postgres import TenantConnection, transaction_as
from syntera.workflows.actions import ActionFailed, Destination, resolve_destination, signature
from syntera.workflows.engine import WorkflowWorker
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany
from tests.workflows.conftest import Flows, MakeWorkflow, contact_tags, executions


def tag_node(tag: str, node_id: str = "tag", kind: str = "add_tag") -> dict[str, Any]:
    return {"id": node_id, "type": kind, "config": {"tag": tag}}


async def new_contact(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> str:
    response = await client.post(
        "/v1/contacts", headers=headers, json={"first_name": "Ann", **fields}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def quiet_seed(owner_conn: psycopg.Connection, tenant: SeededCompany) -> None:
    """Disable the factory's seeded workflow (it also starts on contact_created)."""
    owner_conn.execute(
        "UPDATE public.workflows SET enabled = false WHERE id = %s", (tenant.rows["workflows"],)
    )


# Triggers ---------------------------------------------------------------------------------


async def test_contact_created_runs_the_companys_workflows_only(
    flows: Flows,
    make_tenant: MakeTenant,
) -> None:
    other = await make_tenant()
    mine = await flows.make_workflow(flows.tenant, "contact_created", [tag_node("new")])
    theirs = await flows.make_workflow(other, "contact_created", [tag_node("theirs")])
    unrelated = await flows.make_workflow(flows.tenant, "deal_created", [tag_node("deal")])
    contact_id = await new_contact(flows.client, flows.auth(flows.tenant.member), tags=["lead"])
    await flows.drain()
    [run] = flows.runs(mine["id"])
    assert run["status"] == "success", run
    assert run["trigger_type"] == "contact_created"
    assert run["trigger_data"]["contact_id"] == contact_id
    assert run["triggered_by"] == "event"
    assert [step["node_id"] for step in run["steps"]] == ["tag"]
    assert run["execution_time_ms"] is not None
    assert flows.tags(contact_id) == ["lead", "new"]
    assert flows.runs(theirs["id"]) == []
    assert flows.runs(unrelated["id"]) == []
    listed = await flows.client.get(
        f"/v1/workflows/{mine['id']}/executions", headers=flows.auth(flows.tenant.member)
    )
    assert [e["id"] for e in listed.json()["data"]] == [str(run["id"])]
    assert listed.json()["data"][0]["status"] == "success"


async def test_contact_updated_with_a_filter_on_what_changed(
    flows: Flows,
) -> None:
    headers = flows.auth(flows.tenant.member)
    contact_id = await new_contact(flows.client, headers)
    workflow = await flows.make_workflow(
        flows.tenant,
        "contact_updated",
        [tag_node("emailed")],
        trigger_config={"when": {"field": "changed", "op": "contains", "value": "email"}},
    )
    await flows.client.patch(
        f"/v1/contacts/{contact_id}", headers=headers, json={"last_name": "Lee"}
    )
    await flows.drain()
    assert flows.runs(workflow["id"]) == []
    await flows.client.patch(
        f"/v1/contacts/{contact_id}", headers=headers, json={"email": "a@b.co"}
    )
    await flows.drain()
    [run] = flows.runs(workflow["id"])
    assert run["trigger_data"]["changed"] == ["email"]
    assert "emailed" in flows.tags(contact_id)


async def test_deal_triggers_and_stage_filters(
    flows: Flows,
) -> None:
    headers = flows.auth(flows.tenant.member)
    created = await flows.make_workflow(
        flows.tenant, "deal_created", [{"id": "end", "type": "end", "config": {}}]
    )
    won = await flows.make_workflow(
        flows.tenant,
        "deal_stage_changed",
        [{"id": "tell", "type": "create_notification", "config": {"title": "Deal won"}}],
        trigger_config={"to_stage": "closed-won"},
    )
    deal = await flows.client.post("/v1/deals", headers=headers, json={"title": "Big one"})
    deal_id = deal.json()["id"]
    await flows.client.patch(f"/v1/deals/{deal_id}", headers=headers, json={"stage": "qualified"})
    await flows.client.patch(f"/v1/deals/{deal_id}", headers=headers, json={"title": "Renamed"})
    await flows.drain()
    assert [r["status"] for r in flows.runs(created["id"])] == ["success"]
    assert flows.runs(won["id"]) == []
    await flows.client.patch(f"/v1/deals/{deal_id}", headers=headers, json={"stage": "closed-won"})
    await flows.drain()
    [run] = flows.runs(won["id"])
    assert run["trigger_data"]["from_stage"] == "qualified"
    assert run["trigger_data"]["to_stage"] == "closed-won"
    notified = flows.owner_conn.execute(
        "SELECT user_id FROM public.notifications WHERE company_id = %s AND title = 'Deal won'",
        (flows.tenant.company_id,),
    ).fetchall()
    assert {user for (user,) in notified} == {
        flows.tenant.owner.user_id,
        flows.tenant.admin.user_id,
    }


async def test_conversation_events_and_purchase_intent(
    flows: Flows,
) -> None:
    headers = flows.auth(flows.tenant.member)
    contact = str(flows.tenant.rows["contacts"])
    by_kind = {
        kind: await flows.make_workflow(flows.tenant, kind, [tag_node(kind)])
        for kind in (
            "conversation_started",
            "message_received",
            "purchase_intent",
            "conversation_ended",
        )
    }
    started = await flows.client.post(
        "/v1/conversations",
        headers=headers,
        json={
            "agent_id": str(flows.tenant.rows["agent_configs"]),
            "channel": "chat",
            "contact_id": contact,
        },
    )
    url = f"/v1/conversations/{started.json()['id']}"
    plain = {"sender_type": "user", "role": "user", "content": "Hello"}
    await flows.client.post(f"{url}/messages", headers=headers, json=plain)
    buying = {**plain, "content": "I'll take it", "metadata": {"intent": {"category": "purchase"}}}
    await flows.client.post(f"{url}/messages", headers=headers, json=buying)
    await flows.client.post(f"{url}/end", headers=headers, json={})
    await flows.drain()
    counts = {kind: len(flows.runs(flow["id"])) for kind, flow in by_kind.items()}
    assert counts == {
        "conversation_started": 1,
        "message_received": 2,
        "purchase_intent": 1,
        "conversation_ended": 1,
    }
    [purchase] = flows.runs(by_kind["purchase_intent"]["id"])
    assert purchase["trigger_data"]["conversation_id"] == started.json()["id"]
    assert purchase["trigger_data"]["properties"]["intent"]["category"] == "purchase"
    assert set(flows.tags(contact)) >= set(by_kind)


async def test_inbound_webhooks_need_the_workflows_secret(
    flows: Flows,
) -> None:
    hooked = await flows.make_workflow(flows.tenant, "webhook", [tag_node("hooked")])
    secret = (
        await flows.client.post(
            f"/v1/workflows/{hooked['id']}/secret", headers=flows.auth(flows.tenant.owner)
        )
    ).json()["secret"]
    contact = str(flows.tenant.rows["contacts"])
    url = f"/v1/hooks/{hooked['id']}"
    missing = await flows.client.post(url, json={"contact_id": contact})
    wrong = await flows.client.post(url, json={}, headers={"X-Webhook-Secret": "nope"})
    assert missing.status_code == wrong.status_code == 401
    unknown = await flows.client.post(
        f"/v1/hooks/{uuid4()}", json={}, headers={"X-Webhook-Secret": secret}
    )
    assert unknown.status_code == 401
    accepted = await flows.client.post(
        url, json={"contact_id": contact}, headers={"X-Webhook-Secret": secret}
    )
    assert accepted.status_code == 202, accepted.text
    await flows.drain()
    [run] = flows.runs(hooked["id"])
    assert run["triggered_by"] == "webhook"
    assert run["trigger_data"] == {"payload": {"contact_id": contact}}
    # update_contact etc. read contact_id from the top level; a webhook's is in payload
    assert run["status"] == "failed"
    assert "no contact_id" in run["error"]

    await flows.client.post(
        f"/v1/workflows/{hooked['id']}/disable", headers=flows.auth(flows.tenant.owner)
    )
    disabled = await flows.client.post(url, json={}, headers={"X-Webhook-Secret": secret})
    assert disabled.status_code == 409
    member_rotates = await flows.client.post(
        f"/v1/workflows/{hooked['id']}/secret", headers=flows.auth(flows.tenant.member)
    )
    assert member_rotates.status_code == 403


# Actions and branches ---------------------------------------------------------------------


async def test_actions_and_condition_branches(
    flows: Flows,
) -> None:
    nodes = [
        {
            "id": "is_vip",
            "type": "condition",
            "config": {"when": {"field": "contact.tags", "op": "contains", "value": "vip"}},
        },
        {
            "id": "deal",
            "type": "create_deal",
            "config": {"title": "VIP offer", "value": 500, "stage": "proposal"},
        },
        {
            "id": "rename",
            "type": "update_contact",
            "config": {"fields": {"last_name": "Important"}},
        },
        {"id": "untag", "type": "remove_tag", "config": {"tag": "vip"}},
        {
            "id": "ping",
            "type": "create_notification",
            "config": {"title": "New contact", "to": str(flows.tenant.member.user_id)},
        },
        {"id": "stop", "type": "end", "config": {}},
    ]
    edges = [
        {"source": "start", "target": "is_vip"},
        {"source": "is_vip", "target": "deal", "condition": True},
        {"source": "deal", "target": "rename"},
        {"source": "rename", "target": "untag"},
        {"source": "is_vip", "target": "ping", "condition": False},
        {"source": "ping", "target": "stop"},
    ]
    workflow = await flows.make_workflow(flows.tenant, "contact_created", nodes, edges)
    headers = flows.auth(flows.tenant.member)
    vip = await new_contact(flows.client, headers, tags=["vip", "eu"])
    plain = await new_contact(flows.client, headers)
    await flows.drain()
    runs = {run["trigger_data"]["contact_id"]: run for run in flows.runs(workflow["id"])}
    assert [s["node_id"] for s in runs[vip]["steps"]] == ["is_vip", "deal", "rename", "untag"]
    assert runs[vip]["steps"][0]["result"] == {"outcome": True}
    assert [s["node_id"] for s in runs[plain]["steps"]] == ["is_vip", "ping", "stop"]
    assert flows.tags(vip) == ["eu"]
    assert flows.owner_conn.execute(
        "SELECT last_name FROM public.contacts WHERE id = %s", (vip,)
    ).fetchone() == ("Important",)
    deal_id = runs[vip]["steps"][1]["result"]["deal_id"]
    assert flows.owner_conn.execute(
        "SELECT contact_id::text, title, value, stage FROM public.deals WHERE id = %s", (deal_id,)
    ).fetchone() == (vip, "VIP offer", 500, "proposal")
    assert flows.owner_conn.execute(
        "SELECT user_id FROM public.notifications WHERE title = 'New contact' AND company_id = %s",
        (flows.tenant.company_id,),
    ).fetchall() == [(flows.tenant.member.user_id,)]

    mover = await flows.make_workflow(
        flows.tenant,
        "deal_created",
        [{"id": "qualify", "type": "update_deal_stage", "config": {"stage": "qualified"}}],
    )
    deal = await flows.client.post("/v1/deals", headers=headers, json={"title": "Small"})
    await flows.drain()
    assert flows.runs(mover["id"])[-1]["status"] == "success"
    assert flows.owner_conn.execute(
        "SELECT stage FROM public.deals WHERE id = %s", (deal.json()["id"],)
    ).fetchone() == ("qualified",)


async def test_a_disabled_workflow_does_nothing_and_its_queued_runs_are_cancelled(
    flows: Flows,
    worker: WorkflowWorker,
) -> None:
    quiet_seed(flows.owner_conn, flows.tenant)
    workflow = await flows.make_workflow(flows.tenant, "contact_created", [tag_node("x")])
    owner = flows.auth(flows.tenant.owner)
    disabled = await flows.client.post(f"/v1/workflows/{workflow['id']}/disable", headers=owner)
    assert disabled.json()["enabled"] is False
    quiet = await new_contact(flows.client, flows.auth(flows.tenant.member))
    await flows.drain()
    assert flows.runs(workflow["id"]) == []
    assert flows.tags(quiet) == []
    assert flows.owner_conn.execute(
        "SELECT count(*) FROM public.workflow_events WHERE company_id = %s",
        (flows.tenant.company_id,),
    ).fetchone() == (0,), "nothing is even queued"

    await flows.client.post(f"/v1/workflows/{workflow['id']}/enable", headers=owner)
    queued = await new_contact(flows.client, flows.auth(flows.tenant.member))
    await worker.fan_out()
    await flows.client.post(f"/v1/workflows/{workflow['id']}/disable", headers=owner)
    await flows.drain()
    [run] = flows.runs(workflow["id"])
    assert run["status"] == "cancelled"
    assert run["error"] == "the workflow was disabled"
    assert flows.tags(queued) == []


async def test_a_rolled_back_change_starts_nothing(
    api_pool: AsyncConnectionPool[TenantConnection],
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    make_workflow: MakeWorkflow,
) -> None:
    await make_workflow(tenant, "contact_created", [tag_node("x")])
    assert owner_conn.execute(
        "SELECT count(*) FROM public.workflow_events WHERE company_id = %s", (tenant.company_id,)
    ).fetchone() == (0,)

    class Abort(Exception):
        pass

    async def insert_then_fail() -> None:
        async with transaction_as(api_pool, tenant.member) as conn:
            await conn.execute(
                "INSERT INTO public.contacts (company_id, first_name) VALUES (%s, 'Ghost')",
                (tenant.company_id,),
            )
            raise Abort

    with pytest.raises(Abort):
        await insert_then_fail()
    assert owner_conn.execute(
        "SELECT count(*) FROM public.workflow_events WHERE company_id = %s", (tenant.company_id,)
    ).fetchone() == (0,)


# Durability -------------------------------------------------------------------------------


async def test_a_run_taken_over_after_its_worker_died_applies_nothing_twice(
    flows: Flows,
    worker: WorkflowWorker,
) -> None:
    nodes = [
        {"id": "deal", "type": "create_deal", "config": {"title": "Once"}},
        tag_node("once"),
        {"id": "ping", "type": "create_notification", "config": {"title": "Once"}},
    ]
    quiet_seed(flows.owner_conn, flows.tenant)
    workflow = await flows.make_workflow(flows.tenant, "contact_created", nodes)
    contact = await new_contact(flows.client, flows.auth(flows.tenant.member))
    await worker.fan_out()
    first = await worker.claim()
    assert first is not None
    stepped = await worker._step(first)  # the deal is created and recorded; then it dies
    assert stepped, flows.runs(workflow["id"])
    flows.owner_conn.execute(
        "UPDATE public.workflow_executions SET lease_expires_at = now() - interval '1 s'"
        " WHERE id = %s",
        (first.id,),
    )
    await flows.drain()  # another worker takes it over
    [run] = flows.runs(workflow["id"])
    assert run["status"] == "success"
    assert run["attempts"] == 2
    assert [s["node_id"] for s in run["steps"]] == ["deal", "tag", "ping"]
    assert flows.owner_conn.execute(
        "SELECT count(*) FROM public.deals WHERE company_id = %s AND title = 'Once'",
        (flows.tenant.company_id,),
    ).fetchone() == (1,)
    assert flows.tags(contact) == ["once"]
    # The first worker wakes up: its lease is gone, it writes nothing.
    await worker.execute(first)
    assert len(flows.runs(workflow["id"])[0]["steps"]) == 3


async def test_a_delay_is_durable(
    flows: Flows,
) -> None:
    workflow = await flows.make_workflow(
        flows.tenant,
        "contact_created",
        [{"id": "wait", "type": "delay", "config": {"seconds": 3600}}, tag_node("later")],
    )
    contact = await new_contact(flows.client, flows.auth(flows.tenant.member))
    await flows.drain()
    [run] = flows.runs(workflow["id"])
    assert run["status"] == "running"
    assert run["lease_token"] is None
    assert run["frontier"] == ["tag"]
    assert 3500 < (run["run_after"] - datetime.now(run["run_after"].tzinfo)).total_seconds() <= 3600
    assert flows.tags(contact) == []
    # An hour later (any worker, any process: the state is all in the row).
    flows.owner_conn.execute(
        "UPDATE public.workflow_executions SET run_after = now() WHERE id = %s", (run["id"],)
    )
    await flows.drain()
    [done] = flows.runs(workflow["id"])
    assert done["status"] == "success"
    assert [s["node_id"] for s in done["steps"]] == ["wait", "tag"]
    assert flows.tags(contact) == ["later"]


async def test_a_workflow_cannot_trigger_itself_endlessly(
    flows: Flows,
    worker: WorkflowWorker,
) -> None:
    # Each run flips a tag, which updates the contact, which starts the workflow again.
    flip = [
        {
            "id": "has_ping",
            "type": "condition",
            "config": {"when": {"field": "contact.tags", "op": "contains", "value": "ping"}},
        },
        tag_node("ping", "drop", "remove_tag"),
        tag_node("ping", "add"),
    ]
    edges = [
        {"source": "start", "target": "has_ping"},
        {"source": "has_ping", "target": "drop", "condition": True},
        {"source": "has_ping", "target": "add", "condition": False},
    ]
    echo = await flows.make_workflow(flows.tenant, "contact_updated", flip, edges)
    contact = await new_contact(flows.client, flows.auth(flows.tenant.member))
    await flows.client.patch(
        f"/v1/contacts/{contact}", headers=flows.auth(flows.tenant.member), json={"last_name": "X"}
    )
    await flows.drain()
    runs = flows.runs(echo["id"])
    limit = worker.settings.workflow_max_depth
    assert [r["depth"] for r in runs] == list(range(limit + 2))
    assert [r["status"] for r in runs] == ["success"] * (limit + 1) + ["cancelled"]
    assert "loop guard" in runs[-1]["error"]


async def test_actions_only_reach_their_own_company(
    flows: Flows,
    make_tenant: MakeTenant,
) -> None:
    victim = await make_tenant()
    foreign_contact = victim.rows["contacts"]
    nodes = [
        {"id": "touch", "type": "update_contact", "config": {"fields": {"last_name": "Pwned"}}}
    ]
    workflow = await flows.make_workflow(flows.tenant, "contact_created", nodes)
    # A contact of the workflow's company whose event names the other company's contact.
    flows.owner_conn.execute(
        "INSERT INTO public.workflow_events (company_id, event_type, data)"
        " VALUES (%s, 'contact_created', %s)",
        (flows.tenant.company_id, json.dumps({"contact_id": str(foreign_contact)})),
    )
    await flows.drain()
    [run] = flows.runs(workflow["id"])
    assert run["status"] == "failed"
    assert "not found in this company" in run["error"]
    assert flows.owner_conn.execute(
        "SELECT last_name FROM public.contacts WHERE id = %s", (foreign_contact,)
    ).fetchone() != ("Pwned",)


# Webhooks ---------------------------------------------------------------------------------


async def test_outgoing_webhooks_are_signed_and_verified_by_the_receiver(
    flows: Flows,
    httpserver: HTTPServer,
) -> None:
    received: list[Request] = []

    def receive(request: Request) -> Response:
        received.append(request)
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    workflow = await flows.make_workflow(
        flows.tenant,
        "contact_created",
        [{"id": "post", "type": "send_webhook", "config": {"url": httpserver.url_for("/hook")}}],
    )
    secret = (
        await flows.client.post(
            f"/v1/workflows/{workflow['id']}/secret", headers=flows.auth(flows.tenant.owner)
        )
    ).json()["secret"]
    contact = await new_contact(flows.client, flows.auth(flows.tenant.member))
    await flows.drain()
    [request] = received
    body = request.get_data()
    expected = signature(secret, request.headers["X-Syntera-Timestamp"], body)
    assert request.headers["X-Syntera-Signature"] == expected
    assert signature("another secret", request.headers["X-Syntera-Timestamp"], body) != expected
    sent = json.loads(body)
    assert sent["data"]["contact_id"] == contact
    [run] = flows.runs(workflow["id"])
    assert request.headers["X-Syntera-Idempotency-Key"] == f"{run['id']}:post"
    assert run["status"] == "success"
    assert run["steps"][0]["result"] == {"status": 200}


async def test_redirects_are_not_followed(
    flows: Flows,
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/moved").respond_with_response(
        Response("", status=302, headers={"Location": "http://169.254.169.254/latest"})
    )
    workflow = await flows.make_workflow(
        flows.tenant,
        "contact_created",
        [{"id": "post", "type": "send_webhook", "config": {"url": httpserver.url_for("/moved")}}],
    )
    await new_contact(flows.client, flows.auth(flows.tenant.member))
    await flows.drain()
    [run] = flows.runs(workflow["id"])
    assert run["status"] == "failed"
    assert "redirect" in run["error"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://localhost/x",
    ],
)
async def test_webhooks_to_private_addresses_are_refused(
    flows: Flows,
    guarded_worker: WorkflowWorker,
    url: str,
) -> None:
    workflow = await flows.make_workflow(
        flows.tenant,
        "contact_created",
        [{"id": "post", "type": "send_webhook", "config": {"url": url}}],
    )
    await new_contact(flows.client, flows.auth(flows.tenant.member))
    await flows.drain(guarded_worker)
    [run] = flows.runs(workflow["id"])
    assert run["status"] == "failed"
    assert "private address" in run["error"]


# Dry runs ---------------------------------------------------------------------------------


async def test_a_dry_run_shows_the_path_and_changes_nothing(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    make_workflow: MakeWorkflow,
) -> None:
    nodes = [
        {
            "id": "is_big",
            "type": "condition",
            "config": {"when": {"field": "deal.value", "op": "greater_than", "value": 1000}},
        },
        {"id": "won", "type": "update_deal_stage", "config": {"stage": "closed-won"}},
        {"id": "wait", "type": "delay", "config": {"seconds": 60}},
        {"id": "post", "type": "send_webhook", "config": {"url": "https://example.com/hook"}},
    ]
    edges = [
        {"source": "start", "target": "is_big"},
        {"source": "is_big", "target": "won", "condition": True},
        {"source": "won", "target": "wait"},
        {"source": "is_big", "target": "post", "condition": False},
    ]
    workflow = await make_workflow(
        tenant,
        "deal_created",
        nodes,
        edges,
        trigger_config={"when": {"field": "deal.value", "op": "exists"}},
    )
    url = f"/v1/workflows/{workflow['id']}/test"
    big = await client.post(
        url, headers=auth(tenant.member), json={"trigger_data": {"deal": {"value": 5000}}}
    )
    assert big.status_code == 200, big.text
    assert big.json()["matches_trigger"] is True
    assert [(s["node_id"], s["outcome"]) for s in big.json()["path"]] == [
        ("is_big", True),
        ("won", None),
        ("wait", None),
    ]
    assert big.json()["path"][2]["would"] == "wait 60 s"
    small = await client.post(
        url, headers=auth(tenant.member), json={"trigger_data": {"deal": {"value": 5}}}
    )
    assert [s["node_id"] for s in small.json()["path"]] == ["is_big", "post"]
    assert small.json()["path"][1]["would"] == "POST https://example.com/hook"
    empty = await client.post(url, headers=auth(tenant.member), json={})
    assert empty.json()["matches_trigger"] is False
    assert executions(owner_conn, workflow["id"]) == []


@pytest.mark.slow
async def test_a_worker_in_the_api_process_runs_workflows_soon_after_the_commit(
    settings: Any,
    api_urls: Any,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    make_workflow: MakeWorkflow,
) -> None:
    from syntera.app import create_app

    workflow = await make_workflow(tenant, "contact_created", [tag_node("fast")])
    serving = settings.model_copy(update={"workflow_worker_enabled": True, "workflow_poll_s": 30})
    app = create_app(serving, api_urls)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            await asyncio.sleep(0.3)  # LISTEN is up
            contact = await new_contact(http, auth(tenant.member))
            for _ in range(200):  # woken by NOTIFY, well before the 30 s poll
                if contact_tags(owner_conn, contact) == ["fast"]:
                    break
                await asyncio.sleep(0.05)
    assert contact_tags(owner_conn, contact) == ["fast"]
    assert executions(owner_conn, workflow["id"])[0]["status"] == "success"


async def test_members_cannot_queue_events_themselves(
    api_pool: AsyncConnectionPool[TenantConnection], tenant: SeededCompany
) -> None:
    async def enqueue() -> None:
        async with transaction_as(api_pool, tenant.member) as conn:
            await conn.execute(
                "SELECT private.enqueue_workflow_event(%s, 'webhook', '{}')", (uuid4(),)
            )

    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await enqueue()


async def test_a_webhook_connects_to_the_address_that_was_checked(
    flows: Flows, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host is resolved once; the request goes to that address with the original
    Host header. A name no real DNS knows (answered here by a stand-in resolver, which
    changes its answer after the first lookup, as a rebinding server would) is reached
    only because nothing resolves it a second time."""
    lookups: list[str] = []
    answers = ["127.0.0.1", "10.9.9.9"]

    async def rebinding_dns(host: str, port: Any, **_: Any) -> list[Any]:
        lookups.append(host)
        address = answers[min(len(lookups) - 1, 1)]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding_dns)
    received: list[Request] = []

    def receive(request: Request) -> Response:
        received.append(request)
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    url = f"http://rebind.invalid:{httpserver.port}/hook"
    workflow = await flows.make_workflow(
        flows.tenant,
        "contact_created",
        [{"id": "post", "type": "send_webhook", "config": {"url": url}}],
    )
    await new_contact(flows.client, flows.auth(flows.tenant.member))
    await flows.drain()
    [run] = flows.runs(workflow["id"])
    assert run["status"] == "success", run["error"]
    assert lookups == ["rebind.invalid"]
    [request] = received
    assert request.headers["Host"] == f"rebind.invalid:{httpserver.port}"


async def test_the_pinned_destination_keeps_path_query_and_names_the_host() -> None:
    ipv6 = await resolve_destination("http://[::1]:8080/a/b?c=d", allow_private=True)
    assert ipv6 == Destination("http://[::1]:8080/a/b?c=d", "[::1]:8080", "::1")
    local = await resolve_destination("https://localhost/x", allow_private=True)
    assert local.url == "https://127.0.0.1/x"
    assert (local.host_header, local.server_name) == ("localhost", "localhost")
    with pytest.raises(ActionFailed, match="private address"):
        await resolve_destination("https://localhost/x", allow_private=False)


async def test_no_webhook_payload_can_make_the_execution_history_unreadable(
    flows: Flows, owner_conn: psycopg.Connection
) -> None:
    """The deepest payload the API accepts is stored, wrapped by the worker, and read
    back; one level more is refused before anything is queued."""
    hooked = await flows.make_workflow(
        flows.tenant, "webhook", [{"id": "stop", "type": "end", "config": {}}]
    )
    secret = (
        await flows.client.post(
            f"/v1/workflows/{hooked['id']}/secret", headers=flows.auth(flows.tenant.owner)
        )
    ).json()["secret"]
    url, headers = f"/v1/hooks/{hooked['id']}", {"X-Webhook-Secret": secret}

    def nested(depth: int) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": True}
        for _ in range(depth - 1):
            value = {"a": value}
        return value

    queued = owner_conn.execute(
        "SELECT count(*) FROM public.workflow_events WHERE workflow_id = %s", (hooked["id"],)
    ).fetchone()
    too_deep = await flows.client.post(url, json=nested(MAX_DEPTH + 1), headers=headers)
    assert too_deep.status_code == 422
    assert "nested more than" in too_deep.json()["detail"]
    assert (
        owner_conn.execute(
            "SELECT count(*) FROM public.workflow_events WHERE workflow_id = %s", (hooked["id"],)
        ).fetchone()
        == queued
    ), "nothing queued"

    deepest = await flows.client.post(url, json=nested(MAX_DEPTH), headers=headers)
    assert deepest.status_code == 202, deepest.text
    await flows.drain()
    listed = await flows.client.get(
        f"/v1/workflows/{hooked['id']}/executions", headers=flows.auth(flows.tenant.member)
    )
    assert listed.status_code == 200, listed.text
    [run] = listed.json()["data"]
    assert run["status"] == "success"


async def test_a_webhook_whose_id_two_companies_share_starts_nothing(
    flows: Flows, make_tenant: MakeTenant
) -> None:
    """Clients no longer choose ids (issue 35); a pair made before that (here by the
    owner) is ambiguous, and the hook answers as for an unknown workflow."""
    hooked = await flows.make_workflow(flows.tenant, "webhook", [tag_node("hooked")])
    secret = (
        await flows.client.post(
            f"/v1/workflows/{hooked['id']}/secret", headers=flows.auth(flows.tenant.owner)
        )
    ).json()["secret"]
    other = await make_tenant()
    flows.owner_conn.execute(
        "INSERT INTO public.workflows (id, company_id, name, trigger_type, secret)"
        " VALUES (%s, %s, 'Twin', 'webhook', %s)",
        (hooked["id"], other.company_id, secret),
    )
    answer = await flows.client.post(
        f"/v1/hooks/{hooked['id']}", json={}, headers={"X-Webhook-Secret": secret}
    )
    assert answer.status_code == 401
    await flows.drain()
    assert flows.runs(hooked["id"]) == []
