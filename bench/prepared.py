"""What server-side prepared statements save: the hot reads with them on and off.

    python -m bench.prepared [--contacts 100000] [--companies 100] [--requests 1000]
                             [--rounds 6] [--concurrency 4]

A transaction pooler (PgBouncer before 1.21, Supavisor in transaction mode) needs
``SYNTERA_DATABASE_PREPARED_STATEMENTS=false``; this is what that costs on a direct
connection. Two API applications in this process, one with prepared statements and one
without, on the same database and stores; ``GET /v1/contacts/{id}`` (random contacts of
one company) and ``GET /v1/contacts?limit=20`` are sent to each in-process (httpx's ASGI
transport, ``--concurrency`` at a time), in alternating blocks of ``--requests`` so that
whatever else the machine does weighs on both alike. Reported per request: the median
and p99 latency, the CPU of this process (the API and the client) and of the database's
backends, and the ratio without / with.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import psutil
from psycopg.conninfo import conninfo_to_dict

from bench.api import JWT_SECRET, access_token, company_contact_ids
from bench.common import BenchDatabase, bench_database, machine, report
from bench.rls import generate, pick_tenant
from syntera.app import create_app
from syntera.config import Settings


@dataclass
class Samples:
    """What one mode and route measured, over every block."""

    latencies_ms: list[float] = field(default_factory=list)
    api_cpu_s: float = 0.0
    database_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    def p(self, quantile: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[quantile - 1]

    def cpu_ms(self, seconds: float) -> float:
        return 1000 * seconds / max(1, self.requests)


@asynccontextmanager
async def serving(db: BenchDatabase, prepared: bool) -> AsyncIterator[httpx.AsyncClient]:
    """The API with prepared statements on or off, called in-process."""
    settings = Settings(
        jwt_secret=JWT_SECRET,
        pg_pool_min_size=4,
        pg_pool_max_size=4,
        rate_limits_enabled=False,
        kb_worker_enabled=False,
        workflow_worker_enabled=False,
        purge_worker_enabled=False,
        mail_worker_enabled=False,
        kb_preload_model=False,
        database_prepared_statements=prepared,
    )
    app = create_app(settings, db.api_stack())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            yield http


def backends(database: str) -> list[psutil.Process]:
    """The PostgreSQL processes serving ``database`` (their title names it)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if line.startswith("postgres:") and f" {database} " in f"{line} ":
            found.append(process)
    return found


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def block(
    http: httpx.AsyncClient, paths: list[str], token: str, concurrency: int, into: Samples,
    database: str,
) -> None:  # fmt: skip
    """Send every path, ``concurrency`` at a time; add what it cost to ``into``."""
    headers = {"Authorization": f"Bearer {token}"}
    queue = list(paths)
    servers = backends(database)
    api_before, database_before = time.process_time(), cpu_seconds(servers)

    async def worker() -> None:
        while queue:
            path = queue.pop()
            started = time.perf_counter()
            answer = await http.get(path, headers=headers)
            into.latencies_ms.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    into.api_cpu_s += time.process_time() - api_before
    into.database_cpu_s += cpu_seconds(servers) - database_before


async def measure(
    db: BenchDatabase, token: str, ids: list[str], args: argparse.Namespace
) -> list[list[str]]:
    database = conninfo_to_dict(db.api_url)["dbname"]
    routes = {
        "GET /v1/contacts/{id}": lambda: [f"/v1/contacts/{random.choice(ids)}"
                                          for _ in range(args.requests)],
        "GET /v1/contacts?limit=20": lambda: ["/v1/contacts?limit=20"] * args.requests,
    }  # fmt: skip
    samples = {(route, mode): Samples() for route in routes for mode in (True, False)}
    async with serving(db, True) as on, serving(db, False) as off:
        apps = {True: on, False: off}
        for http in apps.values():  # warm: past the prepare threshold on every connection
            for paths in routes.values():
                await block(http, paths()[:100], token, args.concurrency, Samples(), database)
        for round_ in range(args.rounds):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for route, paths in routes.items():
                for mode in order:
                    await block(apps[mode], paths(), token, args.concurrency,
                                samples[(route, mode)], database)  # fmt: skip
    rows = []
    for route in routes:
        with_, without = samples[(route, True)], samples[(route, False)]
        rows.append([
            route,
            f"{with_.p(50):.2f} / {with_.p(99):.2f}",
            f"{without.p(50):.2f} / {without.p(99):.2f}",
            f"{with_.cpu_ms(with_.api_cpu_s):.2f} / {without.cpu_ms(without.api_cpu_s):.2f}",
            f"{with_.cpu_ms(with_.database_cpu_s):.3f} / "
            f"{without.cpu_ms(without.database_cpu_s):.3f}",
            f"{without.p(50) / with_.p(50):.2f}x",
            f"{without.database_cpu_s / with_.database_cpu_s:.2f}x",
        ])  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--companies", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1000, help="per block")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with bench_database(services=("mongodb", "redis")) as db:
        generate(db, args.contacts, args.companies)
        company_id, owner_id = pick_tenant(db)
        ids = company_contact_ids(db, company_id, 1000)
        rows = asyncio.run(measure(db, access_token(owner_id), ids, args))
    report(
        "prepared_statements",
        f"{machine()}; {args.contacts:,} contacts in {args.companies} companies; PostgreSQL "
        f"18 embedded on the same machine; the API in-process (httpx ASGI transport), "
        f"{args.concurrency} requests at a time, {args.rounds} alternating blocks of "
        f"{args.requests} per mode; CPU per request: this process (API and client) and the "
        f"database's backends",
        ["request", "p50 / p99 ms, prepared", "p50 / p99 ms, not prepared",
         "API CPU ms (prepared / not)", "database CPU ms (prepared / not)",
         "p50 ratio (not / prepared)", "database CPU ratio (not / prepared)"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
