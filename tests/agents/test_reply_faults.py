"""Faults around a reply being written: a reply stored by a worker that died before its
commit is still published when the job is taken over; a long answer keeps its lease
(no second worker writes it again); a company deleted, or an agent disabled, while the
answer is written drops it (nothing stored after); a visitor message of 20,000
characters is answered."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
from bson import ObjectId
from fastapi import FastAPI

from syntera.conversations.store import ConversationStore
from tests.agents.chats import (
    ASK,
    AgentChat,
    MakeWorker,
    messages,
    open_agent_chat,
    until,
    until_claimed,
)
from tests.agents.shops import make_agent
from tests.agents.standin import StandIn
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.events_helpers import subscribe
from tests.factories import SeededCompany
from tests.widget.helpers import open_chat


async def test_a_reply_stored_before_a_dead_workers_commit_is_published_by_the_takeover(
    shops: tuple[SeededCompany, SeededCompany], http: httpx.AsyncClient,
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker, app: FastAPI,
) -> None:  # fmt: skip
    first, _ = shops
    chat = agent_chat.chat
    await agent_chat.say(ASK)
    dead = make_worker(reply_lease_s=0.3)
    killed = await dead.claim()
    assert killed is not None
    store: ConversationStore = app.state.conversations
    # What a worker killed between MongoDB's write and PostgreSQL's commit leaves: the
    # reply stored, its message.created never published (that happens at commit).
    await store.append(
        first.company_id, ObjectId(killed.conversation_id),
        [{"_id": ObjectId(killed.reply_id), "sender_type": "agent", "role": "assistant",
          "content": "Refunds take 14 days."}],
    )  # fmt: skip
    # Its lease runs out; another worker takes the job over (its second attempt).
    worker = make_worker()
    claimed = await until_claimed(worker)
    assert claimed.reply_id == killed.reply_id
    assert claimed.attempts == 2
    async with subscribe(http, f"{chat.url}/events", headers=chat.session) as stream:
        await worker.carry_out(claimed)
        # The visitor's own message.created may still be on its way (a busy cluster).
        created = await stream.next(within=10)
        while created.event != "message.created" or created.data["data"]["id"] != claimed.reply_id:
            assert (
                created.event != "message.created" or created.data["data"]["sender_type"] == "user"
            )
            created = await stream.next(within=10)
        await stream.nothing_within(0.5)  # once
    assert standin.requests == []


async def test_an_answer_longer_than_the_lease_keeps_it_and_is_written_once(
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    # Three deltas a second apart: the answer takes over twice the lease of 1 s.
    standin.reset(delta_gap_s=1.0)
    await agent_chat.say(ASK)
    writer = make_worker(reply_lease_s=1.0)
    writing = asyncio.ensure_future(writer.run_once())
    await until(lambda: _asked(standin))
    other = make_worker(reply_lease_s=1.0)
    for _ in range(4):  # while the answer is written, past its first lease
        await asyncio.sleep(0.5)
        assert await other.claim() is None, "taken over while its writer was alive"
    assert await writing
    assert await agent_chat.senders() == ["user", "agent"]
    assert not await other.run_once()
    assert len(standin.requests) == 1


async def _asked(standin: StandIn) -> bool:
    return bool(standin.requests)


async def test_a_company_deleted_while_its_reply_is_written_gets_nothing_stored(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant, app: FastAPI,
    standin: StandIn, make_worker: MakeWorker, owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    shop = await make_tenant()
    chat = await open_agent_chat(http, auth(shop.member))
    standin.reset(delta_gap_s=0.5)
    await chat.say(ASK)
    writing = asyncio.ensure_future(make_worker(reply_lease_s=1.5).run_once())
    await until(lambda: _asked(standin))
    deleted = await http.delete("/v1/companies/current", headers=auth(shop.owner))
    assert deleted.status_code == 204, deleted.text
    assert await writing
    jobs = owner_conn.execute(
        "SELECT count(*) FROM syntera.agent_replies WHERE company_id = %s", (shop.company_id,)
    ).fetchone()
    assert jobs == (0,), "the purge took the job with the company"
    store: ConversationStore = app.state.conversations
    oid = ObjectId(chat.chat.url.rsplit("/", 1)[1])
    stored = await store.list_messages(shop.company_id, oid, limit=10)
    assert [m["sender_type"] for m in stored.documents] == ["user"], "no reply after the purge"


async def test_an_agent_disabled_while_it_writes_drops_its_answer(
    http: httpx.AsyncClient, headers: dict[str, str], standin: StandIn, make_worker: MakeWorker
) -> None:
    agent = await make_agent(http, headers, model="gpt-4o-mini")
    chat = AgentChat(http, headers, await open_chat(http, headers, agent["id"]))
    standin.reset(delta_gap_s=0.5)
    await chat.say(ASK)
    writing = asyncio.ensure_future(make_worker().run_once())
    await until(lambda: _asked(standin))
    disabled = await http.patch(
        f"/v1/agents/{agent['id']}", headers=headers, json={"enabled": False}
    )
    assert disabled.status_code == 200, disabled.text
    assert await writing
    chat_id = chat.chat.url.rsplit("/", 1)[1]
    page = await http.get(f"/v1/conversations/{chat_id}/messages", headers=headers)
    assert [m["sender_type"] for m in page.json()["data"]] == ["user"]
    assert not await make_worker().run_once()


async def test_a_visitor_message_of_20000_characters_is_answered(
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    long = ("Where is my refund? " * 1000)[:19_999] + "?"
    await agent_chat.say(long)
    assert await make_worker().run_once()
    stored = await messages(agent_chat.http, agent_chat.chat)
    assert [m["sender_type"] for m in stored] == ["user", "agent"]
    assert len(stored[0]["content"]) == 20_000
    # The question went to the model (cut to the model's budget only if it had to be).
    assert standin.requests[-1]["messages"][-1]["content"].startswith("Where is my refund?")


async def test_the_conversations_summary_stands_for_turns_left_out_of_the_prompt(
    shops: tuple[SeededCompany, SeededCompany], agent_chat: AgentChat, standin: StandIn,
    make_worker: MakeWorker, app: FastAPI,
) -> None:  # fmt: skip
    first, _ = shops
    worker = make_worker(agent_history_tokens=200)
    await agent_chat.say("My order number is 4471. " + "It was a lamp. " * 60)
    assert await worker.run_once()
    store: ConversationStore = app.state.conversations
    oid = ObjectId(agent_chat.chat.url.rsplit("/", 1)[1])
    await store.update(first.company_id, oid, {"summary": "The visitor's order is 4471."})
    await agent_chat.say(ASK)
    assert await worker.run_once()
    system = standin.requests[-1]["messages"][0]["content"]
    assert "<summary>\nThe visitor's order is 4471.\n</summary>" in system
    assert all("It was a lamp" not in m["content"] for m in standin.requests[-1]["messages"])
