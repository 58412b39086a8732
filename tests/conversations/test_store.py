"""The conversation store on its own: every function, called with another company's id,
finds nothing and changes nothing; indexes are created idempotently."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from syntera.config import Settings
from syntera.conversations.store import ConversationStore, fill_inbox_fields, indexes, scoped
from syntera.db import mongo
from syntera.db.mongo import (
    MongoDatabase,
    create_mongo_client,
    ensure_indexes,
    index_status,
    prepare_database,
)
from syntera.embedded import StackUrls
from tests.conftest import StackDatabase


@pytest.fixture
async def database(stack: StackUrls, settings: Settings) -> AsyncIterator[MongoDatabase]:
    client = create_mongo_client(settings, stack.mongodb_uri)
    name = f"store_{uuid.uuid4().hex[:8]}"
    yield client[name]
    await client.drop_database(name)
    await client.close()


async def test_every_store_function_is_blind_to_other_companies(
    database: MongoDatabase,
) -> None:
    store = ConversationStore(database)
    mine, stranger = uuid.uuid4(), uuid.uuid4()
    conversation = await store.start(mine, agent_id=uuid.uuid4(), channel="chat")
    cid = conversation["_id"]
    thread = await store.add_thread(mine, cid, "T")
    assert thread is not None
    [message] = await store.append(mine, cid, [
        {"sender_type": "user", "role": "user", "content": "hi", "thread_id": thread["id"]}
    ])  # fmt: skip

    assert await store.get_conversation(stranger, cid) is None
    assert await store.end(stranger, cid) is None
    assert await store.archive(stranger, cid) is None
    assert await store.update(stranger, cid, {"summary": "x"}) is None
    assert (await store.list_conversations(stranger)).documents == []
    assert await store.add_thread(stranger, cid, "X") is None
    assert await store.rename_thread(stranger, cid, thread["id"], "X") is None
    assert (await store.list_messages(stranger, cid)).documents == []
    assert await store.react(stranger, cid, message["_id"], "x", None) is None
    assert await store.mark_read(stranger, cid, message["_id"], uuid.uuid4()) is None
    note = await store.add_note(mine, cid, None, "private")
    assert await store.assign(stranger, cid, uuid.uuid4()) is None
    assert await store.assign_if_unassigned(stranger, cid, uuid.uuid4()) is None
    assert await store.rate(stranger, cid, {"score": 1}) is None
    assert await store.hand_to(stranger, cid, "human") is None
    keeper = uuid.uuid4()
    await store.assign(mine, cid, keeper)
    assert [c async for c in store.release(stranger, keeper)] == []
    assert (await store.get_conversation(mine, cid) or {})["assignee_id"] == str(keeper)
    await store.assign(mine, cid, None)
    await store.give_back(stranger, cid, keeper)
    assert (await store.get_conversation(mine, cid) or {})["assignee_id"] is None
    await store.assign(mine, cid, keeper)
    await store.read_up_to(stranger, cid, uuid.uuid4(), 99)
    assert (await store.list_notes(stranger, cid)).documents == []
    assert await store.delete_note(stranger, cid, note["_id"]) is None
    someone = uuid.uuid4()
    await store.assign(mine, cid, someone)
    assert await store.open_conversations_of(stranger, [someone]) == {someone: 0}
    assert await store.open_conversations_of(mine, [someone]) == {someone: 1}
    since = datetime.now(UTC) - timedelta(days=1)
    assert await store.conversation_stats(stranger, since, "channel") == []
    assert await store.message_stats(stranger, since) == []

    unchanged = await store.get_conversation(mine, cid)
    assert unchanged is not None
    assert unchanged["status"] == "active"
    assert unchanged["summary"] is None
    assert [t["title"] for t in unchanged["threads"]] == ["T"]
    assert unchanged["threads"][0]["message_count"] == 1
    [kept] = (await store.list_messages(mine, cid)).documents
    assert kept["metadata"]["reactions"] == []
    assert kept["read_by"] == []
    assert unchanged["reads"] == {}
    assert unchanged["rating"] is None
    assert [n["body"] for n in (await store.list_notes(mine, cid)).documents] == ["private"]


async def test_the_activity_list_pages_through_windows_ties_and_archived_ones(
    database: MongoDatabase,
) -> None:
    """The inbox's windowed read returns exactly what one sorted query would: newest
    activity first, ties by id, archived ones left out, across windows from seconds to
    decades, each once."""
    store = ConversationStore(database)
    company = uuid.uuid4()
    moment = datetime.now(UTC).replace(microsecond=0)
    ages = [timedelta(0)] * 3 + [timedelta(seconds=s) for s in (1, 5, 70, 3600)] + [
        timedelta(days=d) for d in (1, 3, 40, 400, 4000, 9000)
    ]  # fmt: skip
    expected = []
    for index, age in enumerate(ages):
        started = await store.start(company, agent_id=uuid.uuid4(), channel="chat")
        at = moment - age
        await store.update(company, started["_id"], {"last_activity_at": at})
        if index % 4 == 3:
            await store.archive(company, started["_id"])
            await store.update(company, started["_id"], {"last_activity_at": at})
        else:
            expected.append((at, started["_id"]))
    expected.sort(reverse=True)
    for limit in (1, 2, 5, 50):
        seen, after = [], None
        while True:
            piece = await store.list_conversations(company, limit=limit, after=after)
            seen += [(d["last_activity_at"], d["_id"]) for d in piece.documents]
            if not piece.has_more:
                break
            last = piece.documents[-1]
            after = (last["last_activity_at"], last["_id"])
        assert seen == expected, limit
    archived = await store.list_conversations(company, status="archived", limit=50)
    assert len(archived.documents) == len(ages) - len(expected)
    everything = await store.list_conversations(company, include_archived=True, limit=50)
    assert len(everything.documents) == len(ages)


async def test_a_first_page_read_again_is_one_window_and_follows_what_moved(
    database: MongoDatabase,
) -> None:
    """A list's first page read again starts with the window where the last one ended
    (one read, not a walk back from now: SecantusDB reads every conversation of a
    window), and is still exactly the sorted list after conversations moved into it
    (new activity, a new assignee) or out of it (archived, unassigned)."""
    store = ConversationStore(database)
    company, member = uuid.uuid4(), uuid.uuid4()
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    ids = []
    for hours in range(12):
        started = await store.start(company, agent_id=uuid.uuid4(), channel="chat")
        await store.update(
            company, started["_id"], {"last_activity_at": moment - timedelta(hours=hours)}
        )
        ids.append(started["_id"])
    await store.assign(company, ids[9], member)
    finds = 0
    find = store._conversations.find

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal finds
        finds += 1
        return find(*args, **kwargs)  # type: ignore[arg-type]

    store._conversations.find = counted  # type: ignore[method-assign]

    async def check(limit: int, **view: object) -> None:
        """The page equals the one sorted query's, in one read when hinted."""
        nonlocal finds
        archived = view.pop("include_archived", False)
        query = {"company_id": str(company)} | {
            {"assignee": "assignee_id"}[k]: str(v) if v is not None else None
            for k, v in view.items()
        }
        everything = await find(query).sort([("last_activity_at", -1), ("_id", -1)]).to_list()
        if not archived:
            everything = [d for d in everything if d["status"] != "archived"]
        finds = 0
        piece = await store.list_conversations(company, limit=limit, **view)  # type: ignore[arg-type]
        assert [d["_id"] for d in piece.documents] == [d["_id"] for d in everything[:limit]]
        assert piece.has_more == (len(everything) > limit)

    await check(5)
    assert finds > 1  # the first time, a walk back from now
    await check(5)
    assert finds == 1  # then the window where the last page ended
    await store.update(company, ids[11], {"last_activity_at": moment + timedelta(hours=1)})
    await store.archive(company, ids[0])
    await check(5)
    await check(5)
    await check(5, assignee=member)
    await check(5, assignee=member)
    assert finds == 1  # a list shorter than a page: all of it, at once
    await store.assign(company, ids[10], member)  # older than what the hint holds
    await store.assign(company, ids[9], None)
    await check(5, assignee=member)
    await check(2, assignee=member)
    await check(2, assignee=member)
    assert finds == 1


async def test_a_missing_conversation_id_is_none_not_an_error(database: MongoDatabase) -> None:
    store = ConversationStore(database)
    assert await store.get_conversation(uuid.uuid4(), ObjectId()) is None


async def test_indexes_are_created_once_and_rebuilt_when_their_definition_changes(
    database: MongoDatabase,
) -> None:
    first = await ensure_indexes(database, indexes())
    assert len(first) == len(indexes())
    assert await ensure_indexes(database, indexes()) == []
    with_retention = indexes(message_retention_days=30)
    assert await ensure_indexes(database, with_retention) == ["messages.retention"]
    thirty = {i["name"]: i for i in await (await database["messages"].list_indexes()).to_list()}
    assert thirty["retention"]["expireAfterSeconds"] == 30 * 86_400
    assert thirty["company_conversation_thread_created"]["sparse"] is True
    assert await ensure_indexes(database, indexes(message_retention_days=7)) == [
        "messages.retention"
    ]
    states = await index_status(database, indexes(message_retention_days=7))
    assert {state.state for state in states} == {"present"}


@pytest.mark.slow
def test_syntera_migrate_creates_and_shows_the_mongodb_indexes(
    stack: StackUrls, database_for_cli: StackDatabase
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(
        SYNTERA_DATABASE_URL=database_for_cli.owner_url,
        SYNTERA_MONGODB_URI=stack.mongodb_uri,
        SYNTERA_MONGODB_DB=f"cli_{uuid.uuid4().hex[:8]}",
        COLUMNS="250",  # rich fits its tables to the terminal
    )

    def migrate(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "syntera", "migrate", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "MongoDB indexes: created" in migrate()
    assert "MongoDB indexes are up to date" in migrate()
    status = migrate("--status")
    assert "company_conversation_created" in status
    assert "missing" not in status


@pytest.fixture
def database_for_cli(stack: StackUrls) -> StackDatabase:
    from tests.conftest import create_database

    return create_database(stack, "cli")


@pytest.mark.unscoped_mongo("fill_inbox_fields looks across companies for old conversations")
async def test_conversations_stored_before_the_inbox_get_its_fields_and_are_listed(
    database: MongoDatabase,
) -> None:
    store = ConversationStore(database)
    company, agent = uuid.uuid4(), uuid.uuid4()
    started = datetime(2024, 5, 1, tzinfo=UTC)
    old_ids = [ObjectId(), ObjectId()]
    # As the store wrote them before the inbox: no activity, preview, count or reads.
    await database["conversations"].insert_many([
        {"company_id": str(company), "_id": old_id, "agent_id": str(agent), "contact_id": None,
         "user_id": None, "channel": "chat", "status": "active", "started_at": started,
         "ended_at": None, "tags": [], "threads": [], "summary": None,
         "summary_updated_at": None, "metadata": {}, "created_at": started,
         "updated_at": started}
        for old_id in old_ids
    ])  # fmt: skip
    said = [started + timedelta(minutes=minute) for minute in (1, 2)]
    await database["messages"].insert_many([
        {"company_id": str(company), "_id": ObjectId(), "conversation_id": str(old_ids[0]),
         "thread_id": None, "sender_type": "user", "role": "user", "content": text,
         "message_type": "text", "attachments": [], "ai_metadata": None,
         "metadata": {"reactions": []}, "sender_id": None, "read_by": [], "created_at": at}
        for text, at in (("Hello", said[0]), ("Where is my order?", said[1]))
    ])  # fmt: skip
    assert (await store.list_conversations(company)).documents == []  # not listed yet

    assert await fill_inbox_fields(database) == 2
    assert await fill_inbox_fields(database) == 0  # rerun: nothing left to fill

    talked = await store.get_conversation(company, old_ids[0])
    silent = await store.get_conversation(company, old_ids[1])
    assert talked is not None
    assert silent is not None
    assert talked["last_activity_at"] == said[1]
    assert talked["message_count"] == 2
    assert talked["last_message"]["content_preview"] == "Where is my order?"
    assert talked["reads"] == {}
    assert talked["assignee_id"] is None
    assert silent["last_activity_at"] == started
    assert silent["message_count"] == 0
    assert silent["last_message"] is None
    listed = await store.list_conversations(company)
    assert [document["_id"] for document in listed.documents] == [old_ids[0], old_ids[1]]


async def test_the_profiler_stays_off_on_the_embedded_server(database: MongoDatabase) -> None:
    """SecantusDB keeps system.profile capped by scanning all of it at every record, under
    its lock: with the profiler on, slow operations made the next ones slower."""
    await database.command("profile", 0)
    await prepare_database(database, indexes(), slow_ms=0)
    assert (await database.command("profile", -1))["was"] == 0


@pytest.mark.parametrize("surrogate", [True, False], ids=["update-then-read", "findAndModify"])
async def test_update_and_read_gives_the_document_after_in_both_forms(
    database: MongoDatabase, surrogate: bool
) -> None:
    # Both forms on the same server: the one SecantusDB is given, and MongoDB's.
    mongo._surrogates[database.client] = surrogate
    try:
        store = ConversationStore(database)
        mine, stranger = uuid.uuid4(), uuid.uuid4()
        started = await store.start(mine, agent_id=uuid.uuid4(), channel="chat")
        cid = started["_id"]
        collection = database["conversations"]
        ended = await mongo.update_and_read(
            collection, scoped(mine, _id=cid, status="active"), {"$set": {"status": "ended"}}
        )
        assert ended is not None
        assert ended["status"] == "ended"
        assert ended["_id"] == cid
        # A condition no longer met, another company's filter, an unknown id: nothing.
        again = scoped(mine, _id=cid, status="active")
        assert await mongo.update_and_read(collection, again, {"$set": {"x": 1}}) is None
        theirs = scoped(stranger, _id=cid)
        assert await mongo.update_and_read(collection, theirs, {"$set": {"x": 1}}) is None
        unknown = scoped(mine, _id=ObjectId())
        assert await mongo.update_and_read(collection, unknown, {"$set": {"x": 1}}) is None
        assert "x" not in (await store.get_conversation(mine, cid) or {"x": 1})
        # Array filters and a projection.
        thread = await store.add_thread(mine, cid, "Old")
        assert thread is not None
        renamed = await mongo.update_and_read(
            collection,
            scoped(mine, _id=cid, **{"threads.id": thread["id"]}),
            {"$set": {"threads.$[t].title": "New"}},
            array_filters=[{"t.id": thread["id"]}],
            projection={"threads": 1},
        )
        assert renamed is not None
        assert [t["title"] for t in renamed["threads"]] == ["New"]
        assert "status" not in renamed
        with pytest.raises(ValueError, match="_id"):
            await mongo.update_and_read(collection, scoped(mine), {"$set": {"x": 1}})
    finally:
        mongo._surrogates.pop(database.client, None)


@pytest.mark.parametrize("surrogate", [True, False], ids=["read-then-delete", "findAndModify"])
async def test_delete_and_read_gives_the_document_before_in_both_forms(
    database: MongoDatabase, surrogate: bool
) -> None:
    mongo._surrogates[database.client] = surrogate
    try:
        store = ConversationStore(database)
        mine, stranger = uuid.uuid4(), uuid.uuid4()
        cid = (await store.start(mine, agent_id=uuid.uuid4(), channel="chat"))["_id"]
        note = await store.add_note(mine, cid, uuid.uuid4(), "keep an eye on this one")
        collection = database["conversation_notes"]
        # Another company's filter and an unknown id delete nothing.
        of = {"conversation_id": str(cid)}  # the notes' shard key
        theirs = scoped(stranger, _id=note["_id"], **of)
        assert await mongo.delete_and_read(collection, theirs) is None
        unknown = scoped(mine, _id=ObjectId(), **of)
        assert await mongo.delete_and_read(collection, unknown) is None
        deleted = await mongo.delete_and_read(collection, scoped(mine, _id=note["_id"], **of))
        assert deleted is not None
        assert deleted["body"] == "keep an eye on this one"
        # Gone: a second delete finds nothing.
        assert await mongo.delete_and_read(collection, scoped(mine, _id=note["_id"], **of)) is None
        assert (await store.list_notes(mine, cid)).documents == []
        with pytest.raises(ValueError, match="_id"):
            await mongo.delete_and_read(collection, scoped(mine, **of))
        # Two deletes at once: one of them has it.
        for _ in range(5):
            raced = await store.add_note(mine, cid, uuid.uuid4(), "deleted twice at once")
            filter = scoped(mine, _id=raced["_id"], **of)
            answers = await asyncio.gather(
                *(mongo.delete_and_read(collection, filter) for _ in range(2))
            )
            assert sorted(answer is None for answer in answers) == [False, True]
    finally:
        mongo._surrogates.pop(database.client, None)


def test_scoped_names_one_document_by_id_first() -> None:
    company, oid = uuid.uuid4(), ObjectId()
    # SecantusDB plans from the first clause an index serves; MongoDB minds no order.
    assert list(scoped(company, status="active", _id=oid)) == ["_id", "company_id", "status"]
    assert list(scoped(company, status="active")) == ["company_id", "status"]


async def test_update_and_read_refuses_what_it_cannot_read_back_before_writing(
    database: MongoDatabase,
) -> None:
    store = ConversationStore(database)
    mine = uuid.uuid4()
    started = await store.start(mine, agent_id=uuid.uuid4(), channel="chat")
    collection = database["conversations"]
    for update in ([{"$set": {"x": 1}}], {"$rename": {"channel": "medium"}}):
        with pytest.raises(ValueError, match="updates by"):
            await mongo.update_and_read(collection, scoped(mine, _id=started["_id"]), update)  # type: ignore[arg-type]
    assert (await store.get_conversation(mine, started["_id"]) or {})["channel"] == "chat"


async def test_a_writers_read_position_stops_at_their_own_message(database: MongoDatabase) -> None:
    store = ConversationStore(database)
    mine, member = uuid.uuid4(), uuid.uuid4()
    started = await store.start(mine, agent_id=uuid.uuid4(), channel="chat")
    cid = started["_id"]
    await store.append(mine, cid, [{"sender_type": "user", "role": "user", "content": "a"}])
    [own] = await store.append(
        mine, cid, [{"sender_type": "agent", "role": "assistant", "content": "b"}], reader=member
    )
    await store.append(mine, cid, [{"sender_type": "user", "role": "user", "content": "c"}])
    after = await store.get_conversation(mine, cid)
    assert after is not None
    assert after["reads"][str(member)] == 2  # their own message and what came before it
    assert await store.position_of(mine, cid, own) == 2
