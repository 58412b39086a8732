"""The team's inbox through the API: who is talking and what they last said, unread counts
per member, the views and filters, assignment, presence and the routing of hand-offs,
private notes, saved replies and the visitor's rating; each across companies too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest
from bson import ObjectId
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from syntera.api.state import Stores
from syntera.config import Settings
from syntera.conversations.departures import DepartureWorker, release_member
from syntera.db.postgres import TenantConnection
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.purges.registry import stored_elsewhere
from syntera.purges.worker import PurgeWorker
from syntera.tenancy import Principal
from syntera.unit_of_work import open_unit_of_work
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.events_helpers import EventStream, Received, subscribe
from tests.factories import SeededCompany
from tests.widget.helpers import open_chat, start_chat

Json = dict[str, Any]


async def assigned_to_one_who_leaves(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> str:
    """An active conversation of ``tenant``, assigned to its admin; its id."""
    owner = auth(tenant.owner)
    cid: str = (await start(http, owner, tenant))["id"]
    await ok(http.post(f"/v1/conversations/{cid}/assign", headers=owner,
                       json={"assignee_id": str(tenant.admin.user_id)}))  # fmt: skip
    return cid


REMOVE = "SELECT public.remove_team_member(%(id)s)"


async def test_a_member_removed_by_any_path_leaves_their_conversations_once_committed(
    app: FastAPI, http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    api_pool: AsyncConnectionPool[TenantConnection], owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    # remove_team_member() as /rest/v1's rpc calls it (no route of ours around it): the
    # database records the departure. One that rolls back records nothing and frees
    # nothing.
    tenant = await make_tenant()
    owner, leaving = auth(tenant.owner), tenant.admin.user_id
    cid = await assigned_to_one_who_leaves(http, auth, tenant)

    async def removed_then_failed() -> None:
        async with open_unit_of_work(api_pool, tenant.owner) as tx:
            await tx.conn.execute(REMOVE, {"id": leaving})
            raise RuntimeError("the request failed after the removal")

    with pytest.raises(RuntimeError, match="after the removal"):
        await removed_then_failed()
    await departed(app)
    assert (await row(http, owner, cid))["assignee_id"] == str(leaving)
    async with open_unit_of_work(api_pool, tenant.owner) as tx:
        await tx.conn.execute(REMOVE, {"id": leaving})
    recorded = owner_conn.execute(
        "SELECT company_id FROM syntera.member_departures WHERE user_id = %s", (leaving,)
    ).fetchall()
    assert recorded == [(tenant.company_id,)]
    async with subscribe(http, "/v1/events", headers=owner) as team:
        await departed(app)
        freed = (await next_of(team, "conversation.updated")).data["data"]
    assert freed["id"] == cid
    assert freed["assignee_id"] is None
    assert (await row(http, owner, cid))["assignee_id"] is None
    gone = "SELECT count(*) FROM syntera.member_departures WHERE user_id = %s"
    assert owner_conn.execute(gone, (leaving,)).fetchone() == (0,)


async def test_a_member_back_in_the_company_before_the_release_keeps_their_conversations(
    app: FastAPI, http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    owner, leaving = auth(tenant.owner), tenant.admin.user_id
    cid = await assigned_to_one_who_leaves(http, auth, tenant)
    await ok(http.delete(f"/v1/team/{leaving}", headers=owner), 204)
    owner_conn.execute(  # invited again and accepted, before the worker came round
        "UPDATE public.users SET company_id = %s, role = 'admin' WHERE id = %s",
        (tenant.company_id, leaving),
    )
    await departed(app)
    assert (await row(http, owner, cid))["assignee_id"] == str(leaving)
    gone = "SELECT count(*) FROM syntera.member_departures WHERE user_id = %s"
    assert owner_conn.execute(gone, (leaving,)).fetchone() == (0,)


async def ok(response: Awaitable[httpx.Response], status: int = 200) -> Any:
    answer = await response
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else None


async def start(http: httpx.AsyncClient, headers: dict[str, str], tenant: SeededCompany,
                **extra: Any) -> Json:  # fmt: skip
    body = {"agent_id": str(tenant.rows["agent_configs"]), **extra}
    result: Json = await ok(http.post("/v1/conversations", headers=headers, json=body), 201)
    return result


async def say(
    http: httpx.AsyncClient, headers: dict[str, str], conversation_id: str, text: str,
    sender: str = "user",
) -> Json:  # fmt: skip
    url = f"/v1/conversations/{conversation_id}/messages"
    body = {"sender_type": sender, "content": text}
    result: Json = await ok(http.post(url, headers=headers, json=body), 201)
    return result


async def listing(http: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[Json]:
    page = await ok(http.get("/v1/conversations", headers=headers, params=params))
    data: list[Json] = page["data"]
    return data


async def row(http: httpx.AsyncClient, headers: dict[str, str], conversation_id: str) -> Json:
    result: Json = await ok(http.get(f"/v1/conversations/{conversation_id}", headers=headers))
    return result


async def next_of(stream: EventStream, event_type: str, within: float = 10.0) -> Received:
    """The next event of ``event_type`` (others skipped)."""
    deadline = time.monotonic() + within
    while True:
        event = await stream.next(within=max(0.1, deadline - time.monotonic()))
        if event.event == event_type:
            return event


async def notifications(http: httpx.AsyncClient, headers: dict[str, str]) -> list[Json]:
    page = await ok(http.get("/v1/notifications", headers=headers))
    data: list[Json] = page["data"]
    return data


# --- who and what -----------------------------------------------------------------------


async def test_the_list_says_who_is_talking_and_what_they_last_said(
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    member = auth(tenant.member)
    ada = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
    contact = await ok(http.post("/v1/contacts", headers=member, json=ada), 201)
    with_contact = await start(http, member, tenant, contact_id=contact["id"])
    chat = await open_chat(http, member, tenant.rows["agent_configs"])
    anonymous_id = chat.url.rsplit("/", 1)[1]
    quiet = await start(http, member, tenant)

    await say(http, member, with_contact["id"], "Where is my order #1234?")
    sent = await ok(http.post(f"{chat.url}/messages", headers=chat.session,
                              json={"content": "Hi there"}), 201)  # fmt: skip
    assert sent["sender_id"] is None
    data = await listing(http, member)
    ids = [c["id"] for c in data]
    # Newest activity first: the widget chat spoke last, the quiet one never did.
    assert ids.index(anonymous_id) < ids.index(with_contact["id"]) < ids.index(quiet["id"])
    first = next(c for c in data if c["id"] == with_contact["id"])
    assert first["contact_name"] == "Ada Lovelace"
    assert first["last_message"]["content_preview"] == "Where is my order #1234?"
    assert first["last_message"]["sender_type"] == "user"
    assert first["last_message"]["sender_name"] == "Ada Lovelace"
    assert first["message_count"] == 1
    widget = next(c for c in data if c["id"] == anonymous_id)
    assert widget["contact_name"] == f"Visitor {anonymous_id[-6:]}"
    assert widget["last_message"]["sender_name"] == widget["contact_name"]
    assert next(c for c in data if c["id"] == quiet["id"])["last_message"] is None

    # A teammate's answer is shown with their name, never as "user".
    long_answer = "Sure — " + "x" * 300
    reply = await say(http, member, with_contact["id"], long_answer, sender="agent")
    assert reply["sender_id"] == str(tenant.member.user_id)
    read = await row(http, member, with_contact["id"])
    email = owner_conn.execute(
        "SELECT email FROM public.users WHERE id = %s", (tenant.member.user_id,)
    ).fetchone()
    assert email is not None
    assert read["last_message"]["sender_name"] == email[0]
    assert read["last_message"]["content_preview"] == long_answer[:140]
    assert read["last_message"]["sender_id"] == str(tenant.member.user_id)
    assert (await listing(http, member))[0]["id"] == with_contact["id"]
    # The agent's own answer (the system's key writing as the agent) carries its name.
    service = {**auth(tenant.member.service()), "X-Company-Id": str(tenant.company_id)}
    await say(http, service, quiet["id"], "Hello from the agent", sender="agent")
    agent_name = owner_conn.execute(
        "SELECT name FROM public.agent_configs WHERE id = %s", (tenant.rows["agent_configs"],)
    ).fetchone()
    assert agent_name is not None
    from_agent = await row(http, member, quiet["id"])
    assert from_agent["last_message"]["sender_name"] == agent_name[0]
    assert from_agent["unread_count"] == 1
    assert (await row(http, service, quiet["id"]))["unread_count"] is None


async def test_unread_counts_are_each_members_own(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    owner, member = auth(tenant.owner), auth(tenant.member)
    conversation = await start(http, owner, tenant)
    cid = conversation["id"]
    assert (await row(http, owner, cid))["unread_count"] == 0  # starting wrote nothing
    sent = [await say(http, owner, cid, f"visitor line {n}") for n in range(3)]
    # Posted by the owner as the visitor: the owner has read what they wrote.
    assert (await row(http, owner, cid))["unread_count"] == 0
    assert (await row(http, member, cid))["unread_count"] == 3
    await ok(http.post(f"/v1/conversations/{cid}/messages/{sent[1]['id']}/read", headers=member))
    assert (await row(http, member, cid))["unread_count"] == 1
    # A receipt of an older message never moves the position back.
    await ok(http.post(f"/v1/conversations/{cid}/messages/{sent[0]['id']}/read", headers=member))
    assert (await row(http, member, cid))["unread_count"] == 1
    await say(http, owner, cid, "one more")
    listed = next(c for c in await listing(http, member) if c["id"] == cid)
    assert listed["unread_count"] == 2
    assert (await ok(http.post(f"/v1/conversations/{cid}/read", headers=member)))[
        "unread_count"
    ] == 0
    assert (await row(http, auth(tenant.admin), cid))["unread_count"] == 4
    # Imported history counts too.
    await ok(http.post(f"/v1/conversations/{cid}/messages/import", headers=auth(tenant.admin),
                       json={"messages": [{"sender_type": "user", "content": "old"}] * 5}),
             201)  # fmt: skip
    assert (await row(http, member, cid))["unread_count"] == 5


async def test_views_filters_and_the_activity_cursor(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    owner, member = auth(tenant.owner), auth(tenant.member)
    made = [await start(http, owner, tenant, tags=["batch"]) for _ in range(5)]
    ids = [c["id"] for c in made]
    mine, theirs, waiting = ids[0], ids[1], ids[2]
    await ok(http.post(f"/v1/conversations/{mine}/assign", headers=owner,
                       json={"assignee_id": str(tenant.member.user_id)}))  # fmt: skip
    await ok(http.post(f"/v1/conversations/{theirs}/assign", headers=owner,
                       json={"assignee_id": str(tenant.owner.user_id)}))  # fmt: skip
    await ok(http.post(f"/v1/conversations/{waiting}/handoff", headers=owner, json={"to": "human"}))
    await ok(http.post(f"/v1/conversations/{ids[3]}/end", headers=owner))

    def of(data: list[Json]) -> set[str]:
        return {c["id"] for c in data} & set(ids)

    assert of(await listing(http, member, view="mine")) == {mine}
    assert of(await listing(http, owner, view="mine")) == {theirs}
    assert of(await listing(http, owner, view="unassigned")) == {waiting, ids[3], ids[4]}
    assert of(await listing(http, owner, view="needs_person")) == {waiting}
    assert of(await listing(http, owner, view="unassigned", status="ended")) == {ids[3]}
    assert of(await listing(http, owner, tag="batch", channel="chat", limit=100)) == set(ids)
    agent = str(tenant.rows["agent_configs"])
    assert of(await listing(http, owner, agent_id=agent, view="mine")) == {theirs}
    bad = await http.get("/v1/conversations", headers=owner, params={"view": "everyone"})
    assert bad.status_code == 422

    # Keyset pages by last activity: each once, newest activity first, while one moves.
    await say(http, owner, ids[0], "bump")
    seen: list[str] = []
    cursor = None
    while True:
        params: Json = {"tag": "batch", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await ok(http.get("/v1/conversations", headers=owner, params=params))
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # The bumped one first, then the others as they started (nothing else moved them).
    assert seen == [ids[0], ids[4], ids[3], ids[2], ids[1]]
    times = [c["last_activity_at"] for c in await listing(http, owner, tag="batch", limit=10)]
    assert times == sorted(times, reverse=True)


# --- assignment and presence ------------------------------------------------------------


async def test_assignment_checks_the_member_and_tells_the_assignee(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    owner, member = auth(tenant.owner), auth(tenant.member)
    cid = (await start(http, owner, tenant))["id"]
    url = f"/v1/conversations/{cid}/assign"
    async with (
        subscribe(http, "/v1/events", headers=member) as team,
        subscribe(http, "/v1/events", headers=auth(tenant_b.owner)) as other,
    ):
        assigned = await ok(
            http.post(url, headers=owner, json={"assignee_id": str(tenant.member.user_id)})
        )
        assert assigned["assignee_id"] == str(tenant.member.user_id)
        event = await next_of(team, "conversation.updated")
        assert event.data["data"]["assignee_id"] == str(tenant.member.user_id)
        assert event.data["data"]["contact_name"] == f"Visitor {cid[-6:]}"
        await other.nothing_within(0.5)
    told = [n for n in await notifications(http, member) if n["type"] == "conversation.assigned"]
    assert [n["data"]["conversation_id"] for n in told] == [cid]

    # Another company's member, a removed member, a stranger: 422, nothing changes.
    for who in (tenant_b.member.user_id, "00000000-0000-0000-0000-000000000001"):
        refused = await http.post(url, headers=owner, json={"assignee_id": str(who)})
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "assignee_id"
    removed = await http.delete(f"/v1/team/{tenant.admin.user_id}", headers=owner)
    assert removed.status_code == 204, removed.text
    refused = await http.post(url, headers=owner, json={"assignee_id": str(tenant.admin.user_id)})
    assert refused.status_code == 422
    assert (await row(http, owner, cid))["assignee_id"] == str(tenant.member.user_id)
    # Another company can neither assign it nor assign into it.
    foreign = await http.post(
        url, headers=auth(tenant_b.owner), json={"assignee_id": str(tenant_b.owner.user_id)}
    )
    assert foreign.status_code == 404
    # Cleared by any member; taking it oneself sends no notification.
    assert (await ok(http.post(url, headers=member, json={"assignee_id": None})))[
        "assignee_id"
    ] is None
    await ok(http.post(url, headers=owner, json={"assignee_id": str(tenant.owner.user_id)}))
    assert not [n for n in await notifications(http, owner) if n["type"] == "conversation.assigned"]


async def until(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


async def presence_of(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Json]:
    people = await ok(http.get("/v1/team/presence", headers=headers))
    return {p["user_id"]: p for p in people}


async def test_presence_follows_open_streams_within_the_company(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany
) -> None:
    owner = auth(tenant.owner)
    cid = (await start(http, owner, tenant))["id"]
    await ok(http.post(f"/v1/conversations/{cid}/assign", headers=owner,
                       json={"assignee_id": str(tenant.member.user_id)}))  # fmt: skip
    member_id = str(tenant.member.user_id)
    before = await presence_of(http, owner)
    assert set(before) == {str(tenant.owner.user_id), str(tenant.admin.user_id), member_id}
    assert before[member_id]["online"] is False
    assert before[member_id]["open_conversations"] == 1
    assert before[member_id]["email"] == before[member_id]["name"]
    async with subscribe(http, "/v1/events", headers=auth(tenant.member)):
        now = await presence_of(http, owner)
        assert now[member_id]["online"] is True
        assert now[str(tenant.owner.user_id)]["online"] is False
        # Another company sees only its own people, none of them online through this.
        other = await presence_of(http, auth(tenant_b.owner))
        assert member_id not in other
        assert not any(p["online"] for p in other.values())

    async def offline() -> bool:
        return (await presence_of(http, owner))[member_id]["online"] is False

    await until(offline)


async def test_a_hand_off_goes_to_the_least_busy_online_member(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    owner, member = auth(tenant.owner), auth(tenant.member)
    turned_on = await ok(http.patch("/v1/companies/current", headers=owner,
                                    json={"auto_assign_handoffs": True}))  # fmt: skip
    assert turned_on["auto_assign_handoffs"] is True
    busy = await start(http, owner, tenant)
    await ok(http.post(f"/v1/conversations/{busy['id']}/assign", headers=owner,
                       json={"assignee_id": str(tenant.owner.user_id)}))  # fmt: skip
    chat = await open_chat(http, member, tenant.rows["agent_configs"])
    cid = chat.url.rsplit("/", 1)[1]
    async with (
        subscribe(http, "/v1/events", headers=owner) as owner_stream,
        subscribe(http, "/v1/events", headers=member),
    ):
        await ok(http.post(f"{chat.url}/messages", headers=chat.session,
                           json={"content": "Can I talk to a human please?"}), 201)  # fmt: skip
        update = await next_of(owner_stream, "conversation.updated")
    handed = update.data["data"]
    assert handed["handled_by"] == "human"
    # The owner already has one open conversation; the member none.
    assert handed["assignee_id"] == str(tenant.member.user_id)
    told = [n for n in await notifications(http, member) if n["type"] == "conversation.assigned"]
    assert [n["data"]["conversation_id"] for n in told] == [cid]
    assert cid in {c["id"] for c in await listing(http, member, view="mine")}
    assert cid not in {c["id"] for c in await listing(http, owner, view="needs_person")}


async def test_with_nobody_online_a_hand_off_waits_and_every_member_is_told(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    owner = auth(tenant.owner)
    await ok(http.patch("/v1/companies/current", headers=owner,
                        json={"auto_assign_handoffs": True}))  # fmt: skip
    chat = await open_chat(http, auth(tenant.member), tenant.rows["agent_configs"])
    cid = chat.url.rsplit("/", 1)[1]
    await ok(http.post(f"{chat.url}/messages", headers=chat.session,
                       json={"content": "a real person, please"}), 201)  # fmt: skip
    waiting = await row(http, owner, cid)
    assert (waiting["handled_by"], waiting["assignee_id"]) == ("human", None)
    assert cid in {c["id"] for c in await listing(http, owner, view="needs_person")}
    for who in (tenant.owner, tenant.admin, tenant.member):
        kinds = [n["type"] for n in await notifications(http, auth(who))]
        assert "conversation.handoff" in kinds
        assert "conversation.assigned" not in kinds
    refused = await http.patch("/v1/companies/current", headers=owner,
                               json={"auto_assign_handoffs": None})  # fmt: skip
    assert refused.status_code == 422


# --- notes ------------------------------------------------------------------------------


async def test_notes_reach_the_team_and_never_the_visitor_or_another_company(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany
) -> None:
    member = auth(tenant.member)
    chat = await open_chat(http, member, tenant.rows["agent_configs"])
    cid = chat.url.rsplit("/", 1)[1]
    notes_url = f"/v1/conversations/{cid}/notes"
    visitor_params = {"key": chat.session["X-Api-Key"], "session": chat.session["X-Widget-Session"]}
    async with (
        subscribe(http, "/v1/events", headers=auth(tenant.owner)) as team,
        subscribe(http, f"{chat.url}/events", params=visitor_params) as visitor,
        subscribe(http, "/v1/events", headers=auth(tenant_b.owner)) as other,
    ):
        note = await ok(http.post(notes_url, headers=member,
                                  json={"body": "VIP: offer the 20% code"}), 201)  # fmt: skip
        assert note["author_id"] == str(tenant.member.user_id)
        assert note["author_name"]
        assert note["conversation_id"] == cid
        created = await next_of(team, "note.created")
        assert created.data["data"]["body"] == "VIP: offer the 20% code"
        # The visitor's stream goes on to the next message without the note.
        await say(http, member, cid, "How can I help?", sender="agent")
        seen = await visitor.next()
        assert seen.event == "message.created", seen
        assert "20%" not in str(seen.data)
        await other.nothing_within(0.5)
    listed = await ok(http.get(notes_url, headers=auth(tenant.owner)))
    assert [n["id"] for n in listed["data"]] == [note["id"]]
    # The visitor's messages and the conversation hold no note.
    messages = await ok(http.get(f"{chat.url}/messages", headers=chat.session))
    assert "20%" not in str(messages)
    # Another company: 404 for reading, writing and deleting.
    stranger = auth(tenant_b.owner)
    assert (await http.get(notes_url, headers=stranger)).status_code == 404
    assert (await http.post(notes_url, headers=stranger, json={"body": "x"})).status_code == 404
    gone = await http.delete(f"{notes_url}/{note['id']}", headers=stranger)
    assert gone.status_code == 404
    bad = await http.post(notes_url, headers=member, json={"body": ""})
    assert bad.status_code == 422
    assert (await http.delete(f"{notes_url}/not-an-id", headers=member)).status_code == 404
    await ok(http.delete(f"{notes_url}/{note['id']}", headers=member), 204)
    assert (await ok(http.get(notes_url, headers=member)))["data"] == []


# --- saved replies ----------------------------------------------------------------------


async def test_saved_replies_belong_to_the_company(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany
) -> None:
    member = auth(tenant.member)
    made = await ok(http.post("/v1/saved-replies", headers=member,
                              json={"shortcut": "refund_policy", "content": "Refunds: 30 days."}),
                    201)  # fmt: skip
    await ok(http.post("/v1/saved-replies", headers=auth(tenant.owner),
                       json={"shortcut": "hello", "content": "Hello!"}), 201)  # fmt: skip
    duplicate = await http.post("/v1/saved-replies", headers=member,
                                json={"shortcut": "refund_policy", "content": "again"})  # fmt: skip
    assert duplicate.status_code == 409
    for shortcut in ("Has Spaces", "x" * 33, "", "%"):
        bad = await http.post("/v1/saved-replies", headers=member,
                              json={"shortcut": shortcut, "content": "x"})  # fmt: skip
        assert bad.status_code == 422, shortcut
    assert (
        await http.post(
            "/v1/saved-replies", headers=member, json={"shortcut": "empty", "content": ""}
        )
    ).status_code == 422
    found = await ok(http.get("/v1/saved-replies", headers=member, params={"shortcut": "ref"}))
    assert [r["shortcut"] for r in found["data"]] == ["refund_policy"]
    # "_" is a character of shortcuts, not a wildcard.
    assert (await ok(http.get("/v1/saved-replies", headers=member,
                              params={"shortcut": "refund_p"})))["data"]  # fmt: skip
    assert not (await ok(http.get("/v1/saved-replies", headers=member,
                                  params={"shortcut": "refund_x"})))["data"]  # fmt: skip
    changed = await ok(http.patch(f"/v1/saved-replies/{made['id']}", headers=member,
                                  json={"content": "Refunds within 30 days."}))  # fmt: skip
    assert changed["content"] == "Refunds within 30 days."
    # Another company sees none of them and reaches none.
    stranger = auth(tenant_b.owner)
    theirs = (await ok(http.get("/v1/saved-replies", headers=stranger)))["data"]
    assert [r["shortcut"] for r in theirs] == ["thanks"]  # the factory's, their own
    assert made["id"] not in str(theirs)
    url = f"/v1/saved-replies/{made['id']}"
    assert (await http.get(url, headers=stranger)).status_code == 404
    assert (await http.patch(url, headers=stranger, json={"content": "x"})).status_code == 404
    assert (await http.delete(url, headers=stranger)).status_code == 404
    # Their own shortcut of the same name is theirs.
    await ok(http.post("/v1/saved-replies", headers=stranger,
                       json={"shortcut": "refund_policy", "content": "B's"}), 201)  # fmt: skip
    await ok(http.delete(url, headers=member), 204)
    left = (await ok(http.get("/v1/saved-replies", headers=member)))["data"]
    assert sorted(r["shortcut"] for r in left) == ["hello", "thanks"]


# --- rating -----------------------------------------------------------------------------


async def test_a_visitor_rates_their_own_chat_once_it_has_ended(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, tenant_b: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    member = auth(tenant.member)
    chat = await open_chat(http, member, tenant.rows["agent_configs"])
    key = chat.session["X-Api-Key"]
    other = await start_chat(http, key)
    other_session = {"X-Api-Key": key, "X-Widget-Session": other["session_token"]}
    foreign_chat = await open_chat(http, auth(tenant_b.member), tenant_b.rows["agent_configs"])
    cid = chat.url.rsplit("/", 1)[1]
    rating_url = f"{chat.url}/rating"
    still_open = await http.post(rating_url, headers=chat.session, json={"score": 5})
    assert still_open.status_code == 409, still_open.text
    await ok(http.post(f"/v1/conversations/{cid}/end", headers=member))
    for score in (0, 6, -1, 2.5, "five", None):
        bad = await http.post(rating_url, headers=chat.session, json={"score": score})
        assert bad.status_code == 422, (score, bad.text)
    too_long = await http.post(rating_url, headers=chat.session,
                               json={"score": 4, "comment": "x" * 2001})  # fmt: skip
    assert too_long.status_code == 422
    # Another visitor's session (same company, or another company's key): refused.
    for session in (other_session, foreign_chat.session):
        refused = await http.post(rating_url, headers=session, json={"score": 1})
        assert refused.status_code in (401, 404), refused.text
    no_session = await http.post(rating_url, headers={"X-Api-Key": chat.session["X-Api-Key"]},
                                 json={"score": 1})  # fmt: skip
    assert no_session.status_code == 401
    rated = await ok(http.post(rating_url, headers=chat.session,
                               json={"score": 4, "comment": "Quick and kind"}))  # fmt: skip
    assert (rated["score"], rated["comment"]) == (4, "Quick and kind")
    stored = await row(http, member, cid)
    assert stored["rating"]["score"] == 4
    assert stored["rating"]["comment"] == "Quick and kind"
    assert (
        await http.get(f"/v1/conversations/{cid}", headers=auth(tenant_b.owner))
    ).status_code == 404
    recorded = owner_conn.execute(
        "SELECT properties FROM public.analytics_events"
        " WHERE conversation_id = %s AND event_type = 'conversation.rated'",
        (cid,),
    ).fetchall()
    assert [r[0]["score"] for r in recorded] == [4]


# --- purges -----------------------------------------------------------------------------


@pytest.mark.unscoped_mongo  # counts a whole company's notes, as a purge's check does
async def test_erasure_and_company_deletion_reach_notes_read_positions_and_saved_replies(
    app: FastAPI, http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    owner_conn: psycopg.Connection, api_pool: Any, settings: Settings,
) -> None:  # fmt: skip
    tenant, staying = await make_tenant(), await make_tenant()
    admin = auth(tenant.admin)
    stores: Stores = app.state.stores
    database = stores.mongo[settings.mongodb_db]
    worker = PurgeWorker(api_pool, stored_elsewhere(
        app.state.conversations, KnowledgeBase.from_settings(settings), stores.redis))  # fmt: skip

    async def leftovers(conversation_id: str) -> tuple[int, int]:
        """The conversation's notes, and the conversation (which holds the read positions)."""
        query = {"company_id": str(tenant.company_id), "conversation_id": conversation_id}
        notes = await database["conversation_notes"].count_documents(query)
        header = {"company_id": str(tenant.company_id), "_id": ObjectId(conversation_id)}
        conversations = await database["conversations"].count_documents(header)
        return notes, conversations

    conversations = {}
    for email in ("erased@example.com", "kept@example.com"):
        contact = await ok(http.post("/v1/contacts", headers=admin, json={"email": email}), 201)
        conversation = await start(http, admin, tenant, contact_id=contact["id"])
        await say(http, admin, conversation["id"], "my address is 1 Main St")
        await ok(http.post(f"/v1/conversations/{conversation['id']}/notes", headers=admin,
                           json={"body": "lives at 1 Main St"}), 201)  # fmt: skip
        conversations[email] = (contact, conversation)
    erased, erased_conversation = conversations["erased@example.com"]
    _, kept_conversation = conversations["kept@example.com"]
    assert await leftovers(erased_conversation["id"]) == (1, 1)
    await ok(http.post(f"/v1/contacts/{erased['id']}/erase", headers=admin), 202)
    while await worker.run_once():
        pass
    assert await leftovers(erased_conversation["id"]) == (0, 0)
    assert await leftovers(kept_conversation["id"]) == (1, 1)

    for company in (tenant, staying):
        await ok(http.post("/v1/saved-replies", headers=auth(company.member),
                           json={"shortcut": "hi", "content": "Hi!"}), 201)  # fmt: skip
    staying_conversation = await start(http, auth(staying.member), staying)
    await say(http, auth(staying.member), staying_conversation["id"], "kept")
    await ok(http.post(f"/v1/conversations/{staying_conversation['id']}/notes",
                       headers=auth(staying.member), json={"body": "kept"}), 201)  # fmt: skip
    await ok(http.delete("/v1/companies/current", headers=auth(tenant.owner)), 204)
    while await worker.run_once():
        pass
    for name in ("conversation_notes", "conversations"):
        assert await database[name].count_documents({"company_id": str(tenant.company_id)}) == 0
        assert await database[name].count_documents({"company_id": str(staying.company_id)}) >= 1
    counts = owner_conn.execute(
        "SELECT company_id = %s, count(*) FROM public.saved_replies"
        " WHERE company_id IN (%s, %s) GROUP BY 1 ORDER BY 1",
        (tenant.company_id, tenant.company_id, staying.company_id),
    ).fetchall()
    assert counts == [(False, 2)]  # the staying company's: the factory's and this one


def departure_worker(app: FastAPI) -> DepartureWorker:
    """The departures worker on the app's stores (off in the tests' app: a test runs it)."""
    state = app.state
    return DepartureWorker(state.stores.postgres, state.conversations, cache=state.cache,
                           events=state.events.publisher)  # fmt: skip


async def departed(app: FastAPI) -> None:
    """Every recorded departure handled (other tests' too)."""
    worker = departure_worker(app)
    while await worker.run_once():
        pass


async def test_a_removed_member_leaves_their_open_conversations_to_the_team(
    app: FastAPI, http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
) -> None:  # fmt: skip
    tenant, other = await make_tenant(), await make_tenant()
    owner, leaving = auth(tenant.owner), tenant.admin.user_id
    waiting, answered, closed = [(await start(http, owner, tenant))["id"] for _ in range(3)]
    await ok(http.post(f"/v1/conversations/{waiting}/handoff", headers=owner, json={"to": "human"}))
    for cid in (waiting, answered, closed):
        await ok(http.post(f"/v1/conversations/{cid}/assign", headers=owner,
                           json={"assignee_id": str(leaving)}))  # fmt: skip
    await ok(http.post(f"/v1/conversations/{closed}/end", headers=owner))
    # Another company's owner cannot remove them, nor free their conversations.
    foreign = await http.delete(f"/v1/team/{leaving}", headers=auth(other.owner))
    assert foreign.status_code == 404, foreign.text
    assert (await row(http, owner, waiting))["assignee_id"] == str(leaving)
    async with (
        subscribe(http, "/v1/events", headers=owner) as team,
        subscribe(http, "/v1/events", headers=auth(other.owner)) as stranger,
    ):
        await ok(http.delete(f"/v1/team/{leaving}", headers=owner), 204)
        await departed(app)
        freed = [(await next_of(team, "conversation.updated")).data["data"] for _ in range(2)]
        await stranger.nothing_within(0.5)
    assert {c["id"] for c in freed} == {waiting, answered}
    assert all(c["assignee_id"] is None and c["contact_name"] for c in freed)
    assert (await row(http, owner, answered))["assignee_id"] is None
    assert (await row(http, owner, closed))["assignee_id"] == str(leaving)  # ended: as it was
    assert [c["id"] for c in await listing(http, owner, view="needs_person")] == [waiting]


async def test_a_release_that_does_not_commit_gives_the_conversations_back(
    app: FastAPI, http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    api_pool: AsyncConnectionPool[TenantConnection],
) -> None:  # fmt: skip
    # Its events are dropped with the transaction: the conversations it freed are given
    # back, and released again (with their events) when the departure is tried again.
    tenant = await make_tenant()
    owner, leaving = auth(tenant.owner), tenant.admin.user_id
    cids = [await assigned_to_one_who_leaves(http, auth, tenant) for _ in range(2)]

    async def released_then_failed() -> None:
        async with open_unit_of_work(
            api_pool, Principal.service(), company_id=tenant.company_id
        ) as tx:
            assert await release_member(tx, app.state.conversations, leaving) == 2
            raise RuntimeError("the commit failed")

    with pytest.raises(RuntimeError, match="the commit failed"):
        await released_then_failed()
    for cid in cids:
        assert (await row(http, owner, cid))["assignee_id"] == str(leaving)
