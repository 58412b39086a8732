"""Messages on MongoDB: the store's write cost, the API's message rate, and how the newest
page of a conversation behaves as the collection grows.

    python -m bench.conversations [--sizes 10000,100000,1000000] [--runs 300]

Everything runs on a throw-away embedded stack (SecantusDB as the MongoDB-wire server).

* Appending through ``ConversationStore.append`` against raw ``insert_one`` (single
  messages) and ``insert_many`` (batches of 500) of the same documents on the same server,
  alternated so drift affects both alike. Goal: within 1.1x.
* ``POST /v1/conversations/{id}/messages`` under wrk (32 connections, 2 API workers).
* The newest 50 messages of a conversation (20 probe conversations of 100 messages each)
  while filler grows the collection to each size over 10,000 conversations. Goal: flat.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bson import ObjectId

from bench.api import JWT_SECRET, run_wrk, start_server
from bench.cache import agents_of
from bench.common import (
    ROOMY_LIMITS,
    BenchDatabase,
    bench_database,
    machine,
    report,
    summarize,
    timing_row,
)
from bench.mixed import conversations
from syntera.config import Settings
from syntera.conversations.store import ConversationStore, indexes, now
from syntera.db.mongo import MongoDatabase, create_mongo_client, ensure_indexes

FILLER_CONVERSATIONS = 10_000
PROBES = 20
PROBE_MESSAGES = 100
PAGE = 50

POST_MESSAGE_SCRIPT = """
local ids = {%s}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"sender_type": "user", "role": "user", "content": "Hello, is this in stock?"}'
request = function()
  return wrk.format(nil, "/v1/conversations/" .. ids[math.random(#ids)] .. "/messages")
end
"""


def message(company_id: uuid.UUID, conversation_id: ObjectId, i: int) -> dict[str, Any]:
    return {
        "sender_type": "user" if i % 2 else "agent",
        "role": "user" if i % 2 else "assistant",
        "content": f"message {i} " + "lorem ipsum " * 8,
    }


async def append_vs_raw(database: MongoDatabase, runs: int) -> list[list[str]]:
    """Store append against raw inserts of the same documents, alternated."""
    store = ConversationStore(database)
    raw = database["messages"]
    company_id = uuid.uuid4()
    conversation = await store.start(company_id, agent_id=uuid.uuid4(), channel="chat")
    cid = conversation["_id"]
    single_store: list[float] = []
    single_raw: list[float] = []
    for i in range(runs * 2 + 50):
        values = message(company_id, cid, i)
        document = store._message(company_id, cid, {**values, "_id": ObjectId()}, now())
        started = time.perf_counter()
        await store.append(company_id, cid, [values])
        store_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        await raw.insert_one(document)
        raw_ms = (time.perf_counter() - started) * 1000
        if i >= 50:
            single_store.append(store_ms)
            single_raw.append(raw_ms)
    batch_store: list[float] = []
    batch_raw: list[float] = []
    for round_ in range(12):
        values_batch = [message(company_id, cid, i) for i in range(500)]
        documents = [
            store._message(company_id, cid, {**v, "_id": ObjectId()}, now()) for v in values_batch
        ]
        started = time.perf_counter()
        await store.append(company_id, cid, values_batch)
        store_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        await raw.insert_many(documents, ordered=True)
        raw_ms = (time.perf_counter() - started) * 1000
        if round_ >= 2:
            batch_store.append(store_ms)
            batch_raw.append(raw_ms)
    store_single, raw_single = summarize(single_store), summarize(single_raw)
    store_batch, raw_batch = summarize(batch_store), summarize(batch_raw)
    return [
        timing_row("store append, 1 message", store_single,
                   store_single.median_ms / raw_single.median_ms),
        timing_row("raw insert_one", raw_single, 1.0),
        timing_row("store append, 500 messages", store_batch,
                   store_batch.median_ms / raw_batch.median_ms),
        timing_row("raw insert_many, 500", raw_batch, 1.0),
    ]  # fmt: skip


async def raw_concurrent_rate(database: MongoDatabase, concurrency: int, total: int) -> float:
    """Messages per second of raw ``insert_one`` from ``concurrency`` tasks: the server's
    own ceiling for the API's message rate."""
    store = ConversationStore(database)
    company_id, cid = uuid.uuid4(), ObjectId()

    async def insert(count: int) -> None:
        for i in range(count):
            values = message(company_id, cid, i)
            await database["messages"].insert_one(store._message(company_id, cid, values, now()))

    started = time.perf_counter()
    await asyncio.gather(*(insert(total // concurrency) for _ in range(concurrency)))
    return total / (time.perf_counter() - started)


async def grow_and_probe(database: MongoDatabase, sizes: list[int], runs: int) -> list[list[str]]:
    """Newest page of the probe conversations as filler grows the collection."""
    store = ConversationStore(database)
    company_id = uuid.uuid4()
    probes = []
    for _ in range(PROBES):
        conversation = await store.start(company_id, agent_id=uuid.uuid4(), channel="chat")
        await store.append(
            company_id, conversation["_id"],
            [message(company_id, conversation["_id"], i) for i in range(PROBE_MESSAGES)],
        )  # fmt: skip
        probes.append(conversation["_id"])
    fillers = [ObjectId() for _ in range(FILLER_CONVERSATIONS)]
    other_company = uuid.uuid4()
    inserted = PROBES * PROBE_MESSAGES
    rows = []
    for size in sizes:
        started = time.perf_counter()
        while inserted < size:
            batch = []
            for _ in range(min(10_000, size - inserted)):
                values = message(other_company, fillers[inserted % FILLER_CONVERSATIONS], inserted)
                batch.append(store._message(
                    other_company, fillers[inserted % FILLER_CONVERSATIONS], values, now()
                ))  # fmt: skip
                inserted += 1
            await database["messages"].insert_many(batch, ordered=False)
        print(f"messages: {inserted:,} (+{time.perf_counter() - started:.0f}s)")
        samples = []
        for i in range(runs + 20):
            probe = random.choice(probes)
            t0 = time.perf_counter()
            page = await store.list_messages(company_id, probe, limit=PAGE)
            elapsed = (time.perf_counter() - t0) * 1000
            assert len(page.documents) == PAGE
            if i >= 20:
                samples.append(elapsed)
        rows.append((size, summarize(samples)))
    base = rows[0][1].median_ms
    return [timing_row(f"newest {PAGE} at {size:,} messages", t, t.median_ms / base)
            for size, t in rows]  # fmt: skip


def api_message_rate(db: BenchDatabase, duration_s: int) -> tuple[list[str], int]:
    """POST /v1/conversations/{id}/messages under wrk; the row and the messages stored."""
    token, [agent_id] = agents_of(db, 1)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(db, 2, Path(tmp), ROOMY_LIMITS)  # measure the path, not limits
        try:
            ids = conversations(server.base_url, token, agent_id, 100)
            script = Path(tmp) / "post.lua"
            script.write_text(POST_MESSAGE_SCRIPT % ", ".join(f'"{i}"' for i in ids))
            result = run_wrk(server, server.base_url, token, 32, duration_s, script)
        finally:
            server.process.terminate()
            server.process.wait(30)
    return [
        "POST /v1/conversations/{id}/messages",
        f"{result.requests_per_s:,.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p99_ms:.1f}",
        f"{result.errors} of {result.requests:,}",
        f"{result.server_cpu_s:.1f}",
        f"{result.wrk_cpu_s:.1f}",
    ], result.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--duration", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    with bench_database(services=("mongodb", "redis")) as db:
        settings = Settings(jwt_secret=JWT_SECRET)

        async def mongo_figures() -> tuple[list[list[str]], list[list[str]], float]:
            client = create_mongo_client(settings, db.stack.mongodb_uri)
            try:
                database = client[f"bench_{uuid.uuid4().hex[:8]}"]
                await ensure_indexes(database, indexes())
                append_rows = await append_vs_raw(database, args.runs)
                raw_rate = await raw_concurrent_rate(database, 32, 4000)
                page_rows = await grow_and_probe(database, sizes, args.runs)
                # No drop: the whole throw-away stack goes (dropping 1M documents can
                # outlast the socket timeout on SecantusDB).
                return append_rows, page_rows, raw_rate
            finally:
                await client.close()

        append_rows, page_rows, raw_rate = asyncio.run(mongo_figures())
        api_row, _ = api_message_rate(db, args.duration)
        api_row.append(f"{float(api_row[1].replace(',', '')) / raw_rate:.2f}x")

    where = f"{machine()}; SecantusDB (MongoDB wire) embedded on the same machine"
    header = ["what", "runs", "median ms", "p95 ms", "p99 ms", "ratio"]
    report("messages_append", f"{where}; one client, sequential", header, append_rows)
    report(
        "messages_newest_page",
        f"{where}; {PROBES} probe conversations of {PROBE_MESSAGES} messages, filler over "
        f"{FILLER_CONVERSATIONS:,} conversations; ratio to the smallest size",
        header,
        page_rows,
    )
    report(
        "messages_api",
        f"{where}; `syntera serve --workers 2`; wrk -t2 -c32 -d{args.duration}s, same machine; "
        f"anchor: raw insert_one from 32 concurrent tasks on the same server, "
        f"{raw_rate:,.0f} messages/s",
        [
            "request",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "API CPU s",
            "wrk CPU s",
            "vs raw inserts",
        ],
        [api_row],
    )


if __name__ == "__main__":
    main()
