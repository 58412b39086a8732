"""The limits of agents' replies: a company's monthly token budget (once spent, the
conversation passes to people), its cap on replies written at once, and a knowledge base
that has nothing on the question twice in a row (handed to people too)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from bson import ObjectId

from syntera.conversations import service
from syntera.conversations.replies import ReplyWorker
from syntera.tenancy import Principal
from syntera.unit_of_work import open_unit_of_work
from tests.agents.chats import ASK, AgentChat, MakeWorker, conversation, open_agent_chat
from tests.agents.standin import StandIn
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany

STATS = "/v1/analytics/conversations"


async def two_turns(chat: AgentChat, worker: ReplyWorker, then: str) -> None:
    """The visitor asks ``ASK``, then ``then``; the worker takes each turn."""
    await chat.say(ASK)
    assert await worker.run_once()
    await chat.say(then)
    assert await worker.run_once()


async def test_a_spent_monthly_budget_hands_the_next_turn_to_people(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    shop = await make_tenant()
    set_budget = await http.patch(
        "/v1/companies/current", headers=auth(shop.owner), json={"monthly_token_budget": 300}
    )
    assert set_budget.status_code == 200, set_budget.text
    assert set_budget.json()["monthly_token_budget"] == 300
    refused = await http.patch(
        "/v1/companies/current", headers=auth(shop.owner), json={"monthly_token_budget": -1}
    )
    assert refused.status_code == 422
    headers = auth(shop.member)
    chat = await open_agent_chat(http, headers)
    await two_turns(chat, make_worker(), "And for a gift?")  # 328 tokens spend the 300
    assert len(standin.requests) == 1
    assert await chat.senders() == ["user", "agent", "user", "system"]
    assert await chat.handled_by() == "human"
    assert (await conversation(http, chat.headers, chat.chat))["handoff_count"] == 1
    # The analytics of tokens per model count the stored reply.
    stats = await http.get(STATS, headers=headers)
    assert stats.status_code == 200, stats.text
    [model] = stats.json()["models"]
    assert (model["model"], model["messages"], model["tokens_used"]) == (
        "gpt-4o-mini-2024-07-18", 1, 328,
    )  # fmt: skip
    assert model["average_response_time_ms"] > 0


async def test_a_company_writes_no_more_replies_at_once_than_its_cap(
    http: httpx.AsyncClient, auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany],
    standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    first, second = shops
    worker = make_worker(reply_company_concurrency=1)
    chats = []
    for shop in (first, first, second):
        chat = await open_agent_chat(http, auth(shop.member))
        await chat.say(ASK)
        chats.append(chat)
    one = await worker.claim()
    other = await worker.claim()
    assert one is not None
    assert other is not None
    assert one.company_id != other.company_id, "the first company's second reply waits"
    assert await worker.claim() is None
    for job in (one, other):
        await worker.carry_out(job)
    assert await worker.run_once(), "then it is written"
    for chat in chats:
        assert await chat.senders() == ["user", "agent"]


async def test_nothing_in_the_knowledge_base_twice_in_a_row_hands_off(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    empty = await make_tenant()
    chat = await open_agent_chat(http, auth(empty.member))
    await two_turns(chat, make_worker(), "What about returns?")
    assert len(standin.requests) == 1
    assert await chat.senders() == ["user", "agent", "user", "system"]
    assert await chat.handled_by() == "human"
    assert (await conversation(http, chat.headers, chat.chat))["handoff_count"] == 1


async def test_a_turn_that_finds_something_starts_the_count_again(
    http: httpx.AsyncClient, auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany],
    standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    # Nothing, then the refund policy, then nothing: not twice in a row (the count found
    # again is kept with the reply), so the agent still answers; a second nothing in a
    # row then hands it to people.
    first, _ = shops
    chat = await open_agent_chat(http, auth(first.member))
    worker = make_worker()
    off_topic = "Which planets have rings?"
    for question in (off_topic, ASK, off_topic):
        await chat.say(question)
        assert await worker.run_once()
    assert await chat.senders() == ["user", "agent"] * 3
    assert await chat.handled_by() == "agent"
    await chat.say("And which moons have volcanoes?")
    assert await worker.run_once()
    assert await chat.senders() == ["user", "agent"] * 3 + ["user", "system"]
    assert await chat.handled_by() == "human"
    assert len(standin.requests) == 3


async def test_a_reply_that_is_not_committed_takes_its_count_back(
    http: httpx.AsyncClient, auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany],
    make_worker: MakeWorker,
) -> None:  # fmt: skip
    # The count is written with the reply; a reply whose transaction fails is taken back,
    # and the count with it (else the turn tried again would count twice).
    first, _ = shops
    chat = await open_agent_chat(http, auth(first.member))
    worker = make_worker()
    await chat.say("Which planets have rings?")
    assert await worker.run_once()
    oid = ObjectId(chat.chat.url.rsplit("/", 1)[1])
    conversation = await worker.store.get_conversation(first.company_id, oid)
    assert conversation is not None
    assert conversation["empty_retrievals"] == 1
    reply = {"_id": ObjectId(), "sender_type": "agent", "role": "assistant", "content": "Hi"}

    async def stored_then_failed() -> None:
        assert conversation is not None
        async with open_unit_of_work(
            worker.pool, Principal.service(), company_id=first.company_id
        ) as tx:
            await service.append_reply(
                tx, worker.store, conversation, reply, kept={"empty_retrievals": 0, "x": 1}
            )
            raise RuntimeError("the commit failed")

    with pytest.raises(RuntimeError, match="the commit failed"):
        await stored_then_failed()
    after = await worker.store.get_conversation(first.company_id, oid)
    assert after is not None
    assert after["empty_retrievals"] == 1
    assert "x" not in after
    assert await chat.senders() == ["user", "agent"]


async def test_a_turn_with_nothing_found_whose_model_failed_counts_once(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    # Nothing in the knowledge base, and the model fails: the turn tried again after its
    # backoff is still the first with nothing found, and is answered, not handed off.
    empty = await make_tenant()
    chat = await open_agent_chat(http, auth(empty.member))
    worker = make_worker(reply_max_attempts=2)
    standin.reset(behaviour="refuse", status=500)
    await chat.say("What about returns?")
    assert await worker.run_once()
    standin.reset()
    await asyncio.sleep(2.2)  # the backoff of a first failure: 2 s
    assert await worker.run_once()
    assert await chat.senders() == ["user", "agent"]
    assert await chat.handled_by() == "agent"
