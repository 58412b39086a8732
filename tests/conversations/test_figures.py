"""The report's figures kept on a conversation as it happens (syntera.conversations.
figures): first visitor message and first answer, tokens and cost, first and last
sentiment (classified out of order), hand-offs; another company's id changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from syntera.config import Settings
from syntera.conversations import figures
from syntera.conversations.store import ConversationStore, now
from syntera.db.mongo import MongoDatabase, create_mongo_client
from syntera.embedded import StackUrls


@pytest.fixture
async def database(stack: StackUrls, settings: Settings) -> AsyncIterator[MongoDatabase]:
    client = create_mongo_client(settings, stack.mongodb_uri)
    name = f"figures_{uuid.uuid4().hex[:8]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


def visitor(text: str = "hi") -> dict[str, object]:
    return {"sender_type": "user", "role": "user", "content": text}


def answer(tokens: int, cost: str | None) -> dict[str, object]:
    ai = {"model": "m", "tokens_used": tokens, "cost": cost, "response_time_ms": 5}
    return {"sender_type": "agent", "role": "assistant", "content": "ok", "ai_metadata": ai}


async def test_first_visitor_message_first_answer_tokens_and_cost(
    database: MongoDatabase,
) -> None:
    store = ConversationStore(database)
    company = uuid.uuid4()
    started = await store.start(company, agent_id=uuid.uuid4(), channel="chat")
    cid = started["_id"]
    assert started["figures"] == {"tokens": 0, "cost": 0.0, "complete": True}
    # A greeting before the visitor spoke answers nothing.
    await store.append(company, cid, [answer(10, "0.001")])
    [first] = await store.append(company, cid, [visitor()])
    await store.append(company, cid, [visitor("again")])
    [reply] = await store.append(company, cid, [answer(100, "0.01")])
    await store.append(company, cid, [answer(5, None)])
    taken = await store.append(company, cid, [answer(1000, "1")])
    await store.remove(company, cid, taken)  # its request failed: not spent
    kept = (await store.get_conversation(company, cid) or {})["figures"]
    assert kept["first_visitor_at"] == first["created_at"]
    assert kept["first_answer_at"] == reply["created_at"]
    assert kept["tokens"] == 115
    assert kept["cost"] == pytest.approx(0.011)


@pytest.mark.parametrize("known", ["unknown", "stale", "fresh"])
async def test_the_first_answer_is_the_same_whatever_the_writer_knew_of_the_figures(
    database: MongoDatabase, known: str
) -> None:
    # Figures read before the first answer (stale) or after it (fresh) give the same
    # first answer as none: a known first answer only spares its write.
    store = ConversationStore(database)
    company = uuid.uuid4()
    cid = (await store.start(company, agent_id=uuid.uuid4(), channel="chat"))["_id"]
    await store.append(company, cid, [visitor()])
    stale = (await store.get_conversation(company, cid) or {})["figures"]
    assert stale.get("first_answer_at") is None

    async def figures_now() -> dict[str, Any] | None:
        if known == "unknown":
            return None
        if known == "stale":
            return stale
        return (await store.get_conversation(company, cid) or {})["figures"]

    [first] = await store.append(company, cid, [answer(1, None)], known=await figures_now())
    await store.append(company, cid, [visitor("and?")], known=await figures_now())
    await store.append(company, cid, [answer(1, None)], known=await figures_now())
    kept = (await store.get_conversation(company, cid) or {})["figures"]
    assert kept["first_answer_at"] == first["created_at"]


async def test_a_first_answer_the_writer_knows_of_is_not_written_again(
    database: MongoDatabase,
) -> None:
    # The figures the caller read are trusted to spare the write (a first answer is
    # never unset): one that says an answer was given leaves the conversation as it is.
    store = ConversationStore(database)
    company = uuid.uuid4()
    cid = (await store.start(company, agent_id=uuid.uuid4(), channel="chat"))["_id"]
    [asked] = await store.append(company, cid, [visitor()])
    await store.append(
        company, cid, [answer(1, None)], known={"first_answer_at": asked["created_at"]}
    )
    kept = (await store.get_conversation(company, cid) or {})["figures"]
    assert kept.get("first_answer_at") is None


@pytest.mark.parametrize("known", ["unknown", "stale", "fresh"])
async def test_sentiment_start_and_end_follow_the_messages_times_not_the_order_classified(
    database: MongoDatabase, known: str
) -> None:
    # Whether the writer knows the figures (as read a moment ago, or long before) or
    # not, the result is the same: the figures only spare writes.
    store = ConversationStore(database)
    company, stranger = uuid.uuid4(), uuid.uuid4()
    cid = (await store.start(company, agent_id=uuid.uuid4(), channel="chat"))["_id"]
    [one] = await store.append(company, cid, [visitor("1")])
    stale = (await store.get_conversation(company, cid) or {})["figures"]

    async def figures_now() -> dict[str, Any] | None:
        if known == "unknown":
            return None
        if known == "stale":
            return stale
        return (await store.get_conversation(company, cid) or {})["figures"]

    second = one["created_at"] + timedelta(seconds=1)
    third = one["created_at"] + timedelta(seconds=2)
    await store.note_sentiment(company, cid, second, 0.2, await figures_now())
    await store.note_sentiment(company, cid, third, 0.9, await figures_now())
    # Classified last, and with an earlier one noted after the snapshot:
    await store.note_sentiment(company, cid, one["created_at"], -0.6, await figures_now())
    await store.note_sentiment(company, cid, second, 0.1, await figures_now())
    await store.note_sentiment(stranger, cid, third + timedelta(seconds=1), -1.0, stale)
    kept = (await store.get_conversation(company, cid) or {})["figures"]
    assert kept["sentiment_start"] == {"at": one["created_at"], "score": -0.6}
    assert kept["sentiment_end"] == {"at": third, "score": 0.9}


async def test_every_hand_off_to_people_is_counted_and_the_first_kept(
    database: MongoDatabase,
) -> None:
    store = ConversationStore(database)
    company, stranger = uuid.uuid4(), uuid.uuid4()
    cid = (await store.start(company, agent_id=uuid.uuid4(), channel="chat"))["_id"]
    first = await store.hand_to(company, cid, "human")
    assert first is not None
    assert (first["handled_by"], first["handoff_count"]) == ("human", 1)
    assert first["handed_off_at"] is not None
    back = await store.hand_to(company, cid, "agent")
    assert back is not None
    assert (back["handled_by"], back["handoff_count"]) == ("agent", 1)
    again = await store.hand_to(company, cid, "human")
    assert again is not None
    assert again["handoff_count"] == 2
    assert again["handed_off_at"] == first["handed_off_at"]
    assert await store.hand_to(stranger, cid, "agent") is None
    assert (await store.get_conversation(company, cid) or {})["handled_by"] == "human"


async def test_a_conversation_stored_before_the_figures_is_not_taken_for_one_that_kept_them(
    database: MongoDatabase,
) -> None:
    store = ConversationStore(database)
    company = uuid.uuid4()
    cid = (await store.start(company, agent_id=uuid.uuid4(), channel="chat"))["_id"]
    await database["conversations"].update_one(
        {"company_id": str(company), "_id": cid}, {"$unset": {"figures": ""}}
    )
    await store.append(company, cid, [answer(7, "0.1")])
    await store.note_sentiment(company, cid, now(), 0.5)
    legacy = await store.get_conversation(company, cid)
    assert legacy is not None
    assert legacy["figures"] == {"tokens": 7, "cost": 0.1}  # partial: from one message
    assert figures.kept(legacy) is None  # so the report reads its messages
