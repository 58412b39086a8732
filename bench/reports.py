"""The agents' report's reading on MongoDB: the two aggregations (the period's
conversations, then their messages by conversation) and the rows put together, for a
30-day report of one company among others, as the number of its conversations grows.

    python -m bench.reports [--sizes 1000,3000] [--runs 5]

Each conversation has six messages (visitor, agent, alternately; tokens, cost and
sentiment on them) and the company has three agents; another company holds as many
conversations again. On a throw-away embedded stack (SecantusDB), with the store's
indexes.

Measured here (2 CPUs, load average about 12 from other work, 3 runs each): 1,000
conversations (6,000 messages) 5.7 s, 3,000 (18,000) 16.2 s, median: linear, about 5 ms
per conversation, nearly all of it SecantusDB's aggregation (pure Python). Before the
messages were read as one range, a $in of 1,000 conversation ids did not answer within
PyMongo's 45 s timeout. Fine for a console chart of a small company; a large company on
the embedded default would want per-conversation figures kept as conversations end (not
done).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from bench.common import bench_database, machine, report, summarize
from syntera.config import Settings
from syntera.conversations.store import ConversationStore, indexes
from syntera.db.mongo import MongoDatabase, create_mongo_client, ensure_indexes
from syntera.insights.reports import gather, rows_of
from syntera.insights.store import InsightStore

START = datetime(2026, 1, 1, tzinfo=UTC)


async def fill(database: MongoDatabase, company: uuid.UUID, count: int) -> None:
    agents = [str(uuid.uuid4()) for _ in range(3)]
    rng = random.Random(count)
    conversations, messages = [], []
    for _ in range(count):
        started = START + timedelta(seconds=rng.randrange(30 * 86_400))
        oid = ObjectId()
        conversations.append({
            "company_id": str(company), "_id": oid, "agent_id": rng.choice(agents),
            "status": "ended", "started_at": started, "ended_at": started + timedelta(minutes=5),
            "handled_by": rng.choice(["agent", "agent", "human"]),
            "rating": {"score": rng.randint(1, 5)} if rng.random() < 0.3 else None,
        })  # fmt: skip
        for n in range(6):
            visitor = n % 2 == 0
            messages.append({
                "company_id": str(company), "conversation_id": str(oid),
                "sender_type": "user" if visitor else "agent",
                "created_at": started + timedelta(seconds=10 * n),
                "ai_metadata": None if visitor else {"tokens_used": 120, "cost": "0.0002"},
                "metadata": {"sentiment": {"label": "neutral", "score": rng.uniform(-1, 1)}}
                if visitor else {},
            })  # fmt: skip
    await database["conversations"].insert_many(conversations)
    for start in range(0, len(messages), 2_000):
        await database["messages"].insert_many(messages[start : start + 2_000])


async def measure(sizes: list[int], runs: int, uri: str) -> None:
    settings = Settings()
    client = create_mongo_client(settings, uri)
    rows = []
    try:
        for size in sizes:
            database = client[f"bench_reports_{size}"]
            await ensure_indexes(database, indexes())
            company, other = uuid.uuid4(), uuid.uuid4()
            await fill(database, company, size)
            await fill(database, other, size)
            store = InsightStore(ConversationStore(database))
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                found, per = await gather(store, company, START, START + timedelta(days=30), None)
                report_rows = rows_of(found, per, {})
                samples.append((time.perf_counter() - started) * 1000)
            timing = summarize(samples * 2 if len(samples) < 2 else samples)
            rows.append([f"{size:,}", f"{size * 6:,}", str(len(report_rows)),
                         f"{timing.median_ms:.0f}", f"{max(samples):.0f}"])  # fmt: skip
            await client.drop_database(f"bench_reports_{size}")
    finally:
        await client.close()
    report(
        "reports_agents",
        f"{machine()}; SecantusDB; a 30-day report, 3 agents, {runs} runs per size",
        ["conversations", "messages", "rows", "median ms", "max ms"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,3000")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(part) for part in args.sizes.split(",")]
    with bench_database(services=("mongodb",)) as db:
        asyncio.run(measure(sizes, args.runs, db.stack.mongodb_uri))


if __name__ == "__main__":
    main()
