"""Agents answer visitors: a visitor's message records a reply job with it; the reply
worker streams ``message.delta`` events to the widget's stream before the stored reply
arrives as ``message.created``, stores the usage the model reported and the sources it
used, answers a flood of messages once per turn, and hands the conversation to people
when the model keeps failing — after which the agent says nothing more."""

from __future__ import annotations

import asyncio

import httpx

from syntera.conversations.replies import ReplyWorker
from tests.agents.chats import (
    ASK,
    AgentChat,
    MakeWorker,
    conversation,
    post_as_user,
    start_conversation,
)
from tests.agents.shops import POLICY_A, POLICY_B
from tests.agents.standin import StandIn
from tests.api_fixtures import AuthHeaders
from tests.events_helpers import Received, subscribe
from tests.factories import SeededCompany


async def asked_of_a_refusing_model(chat: AgentChat, standin: StandIn, worker: ReplyWorker) -> None:
    """The visitor asks ``ASK`` while the model answers 500; the worker takes the turn."""
    standin.reset(behaviour="refuse", status=500)
    await chat.say(ASK)
    assert await worker.run_once()


async def test_the_agent_streams_its_answer_then_stores_it_with_usage_and_citations(
    http: httpx.AsyncClient, agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    chat = agent_chat.chat
    worker = make_worker()
    async with subscribe(http, f"{chat.url}/events", headers=chat.session) as stream:
        await agent_chat.say(ASK)
        assert await worker.run_once()
        seen: list[Received] = []
        while not any(
            e.event == "message.created" and e.data["data"]["sender_type"] == "agent" for e in seen
        ):
            seen.append(await stream.next(within=15))
    kinds = [e.event for e in seen]
    created = kinds.index("message.created", kinds.index("message.created") + 1)
    deltas = [e.data["data"] for e in seen[:created] if e.event == "message.delta"]
    reply = seen[created].data["data"]
    assert deltas, kinds
    assert "".join(d["delta"] for d in deltas) == reply["content"] == "Refunds take 14 days [1]."
    assert {d["message_id"] for d in deltas} == {reply["id"]}
    assert "typing" in kinds[:created]
    ai = reply["ai_metadata"]
    assert (ai["prompt_tokens"], ai["completion_tokens"], ai["tokens_used"]) == (321, 7, 328)
    assert ai["model"] == "gpt-4o-mini-2024-07-18"
    assert ai["response_time_ms"] > 0
    citations = reply["metadata"]["citations"]
    assert citations
    assert {c["document_name"] for c in citations} == {"refunds.md"}
    # The prompt held the agent's instructions and its company's chunk, not the other's.
    prompt = standin.prompt_text()
    assert "refund helper" in prompt
    assert "ALPHA-7731" in prompt
    assert "BRAVO-4410" not in prompt
    assert POLICY_B not in prompt
    assert POLICY_A.split("\n")[0] in prompt or "ALPHA" in prompt
    # Exactly one reply; no job left.
    assert not await worker.run_once()
    assert await agent_chat.senders() == ["user", "agent"]


async def test_a_flood_of_messages_gets_one_answer_per_turn(
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    for text in ("Hello?", "Anyone there?", ASK):
        await agent_chat.say(text)
    worker = make_worker()
    assert await worker.run_once()
    assert not await worker.run_once()
    assert await agent_chat.senders() == ["user", "user", "user", "agent"]
    # The turn was answered together: the question holds all three messages.
    last = standin.requests[-1]["messages"][-1]["content"]
    assert "Anyone there?" in last
    assert "refund" in last


async def test_no_reply_is_asked_of_a_disabled_agent(
    http: httpx.AsyncClient, headers: dict[str, str], standin: StandIn, make_worker: MakeWorker
) -> None:
    url = await start_conversation(http, headers, enabled=False)
    await post_as_user(http, headers, url)
    assert not await make_worker().run_once()
    assert standin.requests == []


async def test_the_members_api_asks_the_agent_too_and_another_company_cannot_hear_it(
    http: httpx.AsyncClient, auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany],
    headers: dict[str, str], standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    _, second = shops
    url = await start_conversation(http, headers)
    async with (
        subscribe(http, "/v1/events", headers=headers) as team,
        subscribe(http, "/v1/events", headers=auth(second.member)) as other,
    ):
        await post_as_user(http, headers, url)
        assert await make_worker().run_once()
        seen = [await team.next(within=15) for _ in range(4)]
        assert "message.delta" in [e.event for e in seen]
        await other.nothing_within(1.0)
    page = await http.get(url, headers=headers)
    # Newest first.
    assert [m["sender_type"] for m in page.json()["data"]] == ["agent", "user"]


async def test_a_model_that_keeps_failing_hands_the_chat_to_people_who_alone_answer_then(
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    worker = make_worker(reply_max_attempts=1)
    await asked_of_a_refusing_model(agent_chat, standin, worker)
    assert await agent_chat.handled_by() == "human"
    assert (await conversation(agent_chat.http, agent_chat.headers, agent_chat.chat))[
        "handoff_count"
    ] == 1
    assert await agent_chat.senders() == ["user", "system"]
    # Handed off: the visitor's next message asks nothing of the agent.
    standin.reset()
    await agent_chat.say("Hello again")
    assert not await worker.run_once()
    assert standin.requests == []
    assert await agent_chat.senders() == ["user", "system", "user"]


async def test_a_model_that_fails_once_is_asked_again_after_a_backoff(
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    worker = make_worker(reply_max_attempts=2)
    await asked_of_a_refusing_model(agent_chat, standin, worker)
    assert await worker.claim() is None, "not before its backoff (2 s)"
    standin.reset()
    await asyncio.sleep(2.2)
    assert await worker.run_once()
    assert await agent_chat.senders() == ["user", "agent"]
    assert await agent_chat.handled_by() == "agent"
