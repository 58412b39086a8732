"""The agents' report's reading on MongoDB (the period's conversations, and for those
stored before their figures were kept, their messages) and the rows put together, for a
30-day report of one company among others, as the number of its conversations grows.

    python -m bench.reports [--sizes 1000,3000] [--runs 5]

Each conversation has six messages (visitor, agent, alternately; tokens, cost and
sentiment on them) and the company has three agents; another company holds as many
conversations again. On a throw-away embedded stack (SecantusDB), with the store's
indexes.

Each size is measured twice in the same run: conversations as stored before their
figures were kept (the report aggregates their messages), and with the figures the
platform now keeps on each conversation (the report reads the conversations only).
Figures: docs/reports.md.
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


async def fill(database: MongoDatabase, company: uuid.UUID, count: int, kept: bool) -> None:
    """``count`` conversations of six messages; ``kept``: with the figures the platform
    now keeps on each conversation, else as stored before them."""
    agents = [str(uuid.uuid4()) for _ in range(3)]
    rng = random.Random(count)
    conversations, messages = [], []
    for _ in range(count):
        started = START + timedelta(seconds=rng.randrange(30 * 86_400))
        oid = ObjectId()
        handled_by = rng.choice(["agent", "agent", "human"])
        conversation = {
            "company_id": str(company), "_id": oid, "agent_id": rng.choice(agents),
            "status": "ended", "started_at": started, "ended_at": started + timedelta(minutes=5),
            "handled_by": handled_by,
            "rating": {"score": rng.randint(1, 5)} if rng.random() < 0.3 else None,
        }  # fmt: skip
        scores = []
        for n in range(6):
            visitor = n % 2 == 0
            score = rng.uniform(-1, 1)
            if visitor:
                scores.append((started + timedelta(seconds=10 * n), score))
            messages.append({
                "company_id": str(company), "conversation_id": str(oid),
                "sender_type": "user" if visitor else "agent",
                "created_at": started + timedelta(seconds=10 * n),
                "ai_metadata": None if visitor else {"tokens_used": 120, "cost": "0.0002"},
                "metadata": {"sentiment": {"label": "neutral", "score": score}}
                if visitor else {},
            })  # fmt: skip
        if kept:
            conversation["handoff_count"] = int(handled_by == "human")
            conversation["figures"] = {
                "first_visitor_at": started, "first_answer_at": started + timedelta(seconds=10),
                "tokens": 360, "cost": 0.0006, "complete": True,
                "sentiment_start": {"at": scores[0][0], "score": scores[0][1]},
                "sentiment_end": {"at": scores[-1][0], "score": scores[-1][1]},
            }  # fmt: skip
        conversations.append(conversation)
    await database["conversations"].insert_many(conversations)
    for start in range(0, len(messages), 2_000):
        await database["messages"].insert_many(messages[start : start + 2_000])


async def measure(sizes: list[int], runs: int, uri: str) -> None:
    settings = Settings()
    client = create_mongo_client(settings, uri)
    rows = []
    try:
        for size in sizes:
            for kept in (False, True):
                name = f"bench_reports_{size}_{int(kept)}"
                database = client[name]
                await ensure_indexes(database, indexes())
                company, other = uuid.uuid4(), uuid.uuid4()
                await fill(database, company, size, kept)
                await fill(database, other, size, kept)
                store = InsightStore(ConversationStore(database))
                samples = []
                end = START + timedelta(days=30)
                for _ in range(runs):
                    started = time.perf_counter()
                    found, per = await gather(store, company, START, end, None)
                    report_rows = rows_of(found, per, {})
                    samples.append((time.perf_counter() - started) * 1000)
                timing = summarize(samples * 2 if len(samples) < 2 else samples)
                rows.append([f"{size:,}", f"{size * 6:,}",
                             "figures kept" if kept else "from the messages",
                             str(len(report_rows)), f"{timing.median_ms:.0f}",
                             f"{max(samples):.0f}"])  # fmt: skip
                await client.drop_database(name)
    finally:
        await client.close()
    report(
        "reports_agents",
        f"{machine()}; SecantusDB; a 30-day report, 3 agents, {runs} runs per size",
        ["conversations", "messages", "read", "rows", "median ms", "max ms"],
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
