"""The team's inbox: the first page of conversations with their previews, names and the
member's unread counts, for a member of a company with many conversations.

    python -m bench.inbox [--conversations 100000] [--runs 300]

Runs on a throw-away embedded stack (SecantusDB as the MongoDB-wire server); the API is
`syntera serve --workers 1`, asked by one sequential client on the same machine.

* ``GET /v1/conversations?limit=20`` (the inbox's first page: newest activity first, each
  with its contact's name, its last message and its sender's name, and the member's
  unread count) and the same page through its views (``mine``, ``needs_person``) and a
  status filter. Goal: p95 <= 50 ms at 100,000 conversations.
* Each view's first request after the server started, once: the list has no hint yet of
  where its first page ends (``ConversationStore._by_activity``), so it walks back from
  now in windows across the minutes the data set took to build.
* Anchors, in the same run and the same way: ``GET /v1/contacts?limit=20`` (the API's
  newest page of a PostgreSQL table: one round trip, RLS deciding), and the raw MongoDB
  read of the 20 newest conversations by activity from a Python client (the store's
  floor).

The company's conversations are written straight into MongoDB, as the API leaves them
(``last_message``, ``last_activity_at``, ``message_count``; half with a contact, one in
five assigned, one in ten waiting for a person), and the member has a read position in
half of them (on the conversation, as the API keeps it).

Measured (2 shared CPUs, load average 8.8 at the start and 5.7 at the end, 100,000
conversations, 100 runs): first page median 11.5 ms, p95 17.9 ms; ``mine`` 11.9 / 16.7;
``needs_person`` 12.9 / 25.1; ``status=active`` 10.5 / 19.4; each view's first request
after start median 31.6 ms, at most 59.5 ms; anchors: contacts page 2.6 / 7.3, raw
MongoDB read 10.2 / 17.8. Before, the same command failed (the first page over the
client's 30 s) for two reasons: the size sampler's collStats, which holds SecantusDB's
lock while it reads the whole collection (40 s, measured), ran as the server started;
and each first page walked back from now in windows growing 8 times after an empty one,
while SecantusDB reads every conversation of a window (py-spy: fetched, decoded, matched
and sorted before the limit), so once the newest activity was minutes old one window held
2,000 conversations (0.8-1.3 s under load), and later the whole inbox.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bson import ObjectId

from bench.api import JWT_SECRET, access_token, start_server
from bench.common import bench_database, machine, report, summarize, timing_row
from bench.rls import generate, pick_tenant
from syntera.config import Settings
from syntera.conversations.store import CONVERSATIONS, indexes
from syntera.db.mongo import MongoDatabase, create_mongo_client, ensure_indexes

BATCH = 5000
PAGE = 20


def conversation(
    company_id: uuid.UUID, agent_id: str, contacts: list[str], owner: str, at: datetime, i: int
) -> dict[str, Any]:
    """One conversation document as the API leaves it after a few messages."""
    oid = ObjectId()
    count = 1 + i % 12
    handled_by = "human" if i % 10 == 0 else "agent"
    last = {
        "id": str(ObjectId()),
        "content_preview": f"Hello, I have a question about order #{i} " + "lorem " * 10,
        "sender_type": "user" if i % 3 else "agent",
        "sender_id": owner if i % 3 == 0 and i % 2 else None,
        "created_at": at,
    }
    return {
        "company_id": str(company_id),
        "_id": oid,
        "agent_id": agent_id,
        "contact_id": contacts[i % len(contacts)] if i % 2 else None,
        "user_id": None,
        "channel": "chat",
        "status": "ended" if i % 7 == 0 else "active",
        "started_at": at - timedelta(minutes=5),
        "ended_at": None,
        "tags": [],
        "threads": [],
        "summary": None,
        "summary_updated_at": None,
        "metadata": {},
        "handled_by": handled_by,
        "assignee_id": owner if i % 5 == 0 and handled_by == "agent" else None,
        "last_message": last,
        "last_activity_at": at,
        "message_count": count,
        "reads": {owner: count - 1} if i % 2 == 0 else {},
        "rating": None,
        "created_at": at - timedelta(minutes=5),
        "updated_at": at,
    }


async def fill(
    database: MongoDatabase,
    company_id: uuid.UUID,
    agent_id: str,
    contacts: list[str],
    owner: str,
    total: int,
) -> None:
    """``total`` conversations of the company, one a second up to now, the owner's read
    position in half; the indexes are built afterwards (faster than with every insert)."""
    started = time.perf_counter()
    newest = datetime.now(UTC).replace(microsecond=0)
    for first in range(0, total, BATCH):
        documents = [
            conversation(company_id, agent_id, contacts, owner,
                         newest - timedelta(seconds=total - i), i)
            for i in range(first, min(total, first + BATCH))
        ]  # fmt: skip
        await database[CONVERSATIONS].insert_many(documents, ordered=False)
    print(f"{total:,} conversations in {time.perf_counter() - started:.0f}s", flush=True)
    await ensure_indexes(database, indexes())
    print(f"indexes built: {time.perf_counter() - started:.0f}s", flush=True)


def timed(client: httpx.Client, path: str, params: dict[str, Any], runs: int) -> Any:
    for _ in range(20):
        client.get(path, params=params).raise_for_status()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(path, params=params).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    return summarize(samples)


async def raw_newest(database: MongoDatabase, company_id: uuid.UUID, runs: int) -> Any:
    """The store's floor: the 21 newest conversations by activity, read raw as one
    index range (the last minute, which holds them here)."""
    collection = database[CONVERSATIONS]
    newest = await collection.find_one(
        {"company_id": str(company_id)}, sort=[("last_activity_at", -1)]
    )
    assert newest is not None
    since = newest["last_activity_at"] - timedelta(seconds=60)
    query = {"company_id": str(company_id), "last_activity_at": {"$gte": since}}
    samples = []
    for i in range(runs + 20):
        started = time.perf_counter()
        found = (
            await collection.find(query)
            .sort([("last_activity_at", -1), ("_id", -1)])
            .limit(PAGE + 1)
            .to_list()
        )
        if i >= 20:
            samples.append((time.perf_counter() - started) * 1000)
        assert len(found) == PAGE + 1
    return summarize(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    settings = Settings(jwt_secret=JWT_SECRET)
    with bench_database(services=("mongodb", "redis")) as db:
        generate(db, 1000, 10)
        company_id, owner_id = pick_tenant(db)
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            agent = conn.execute(
                "INSERT INTO agent_configs (company_id, name, system_prompt)"
                " VALUES (%s, 'Concierge', 'Be brief') RETURNING id",
                (company_id,),
            ).fetchone()
            contacts = conn.execute(
                "SELECT id FROM public.contacts WHERE company_id = %s LIMIT 500", (company_id,)
            ).fetchall()
        assert agent is not None
        assert contacts
        contact_ids = [str(row[0]) for row in contacts]

        async def prepare() -> Any:
            client = create_mongo_client(settings, db.stack.mongodb_uri)
            try:
                database = client[settings.mongodb_db]
                await fill(database, company_id, str(agent[0]), contact_ids, str(owner_id),
                           args.conversations)  # fmt: skip
                return await raw_newest(database, company_id, args.runs)
            finally:
                await client.close()

        raw = asyncio.run(prepare())
        with tempfile.TemporaryDirectory() as tmp:
            # The request path alone: no size sampler, whose collStats reads the whole
            # collection on SecantusDB holding its lock (40 s at 100,000 conversations,
            # measured) and stalled the first requests past the client's 30 s.
            server = start_server(db, 1, Path(tmp), {"SYNTERA_SIZE_SAMPLE_S": "0"})
            try:
                headers = {"Authorization": f"Bearer {access_token(owner_id)}"}
                with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
                    cold = []  # each view's first request: no hint yet, the walk from now
                    for view in ({}, {"view": "mine"}, {"view": "needs_person"},
                                 {"status": "active"}):  # fmt: skip
                        started = time.perf_counter()
                        client.get("/v1/conversations", params={"limit": PAGE, **view})
                        cold.append((time.perf_counter() - started) * 1000)
                    first = client.get("/v1/conversations", params={"limit": PAGE}).json()
                    assert len(first["data"]) == PAGE
                    assert first["data"][0]["unread_count"] is not None
                    assert any(c["contact_name"] for c in first["data"])
                    figures = {
                        "GET /v1/conversations?limit=20 (first page)":
                            timed(client, "/v1/conversations", {"limit": PAGE}, args.runs),
                        "… view=mine": timed(client, "/v1/conversations",
                                             {"limit": PAGE, "view": "mine"}, args.runs),
                        "… view=needs_person": timed(client, "/v1/conversations",
                                                     {"limit": PAGE, "view": "needs_person"},
                                                     args.runs),
                        "… status=active": timed(client, "/v1/conversations",
                                                 {"limit": PAGE, "status": "active"}, args.runs),
                        "anchor: GET /v1/contacts?limit=20":
                            timed(client, "/v1/contacts", {"limit": PAGE}, args.runs),
                    }  # fmt: skip
            finally:
                server.stop()
    anchor = figures["anchor: GET /v1/contacts?limit=20"]
    rows = [timing_row(name, t, t.median_ms / anchor.median_ms) for name, t in figures.items()]
    rows.append(timing_row("anchor: raw MongoDB find, 21 newest (one index range)", raw,
                           raw.median_ms / anchor.median_ms))  # fmt: skip
    cold_views = summarize(cold)
    rows.append(timing_row("each view's first request after start (the four above)",
                           cold_views, cold_views.median_ms / anchor.median_ms))  # fmt: skip
    report(
        "inbox_first_page",
        f"{machine()}; SecantusDB (MongoDB wire) and PostgreSQL embedded on the same machine; "
        f"a member of a company with {args.conversations:,} conversations; `syntera serve "
        f"--workers 1`, one sequential client; ratio: median to the contacts page's. "
        f"Goal: first page p95 <= 50 ms",
        ["what", "runs", "median ms", "p95 ms", "p99 ms", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
