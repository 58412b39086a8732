"""Row-level security at scale: the cost of letting the database enforce tenancy.

    python -m bench.rls [--contacts 1000000] [--companies 1000] [--runs 300]

Generates the contacts into a fresh database on its own embedded PostgreSQL, then times
the newest 20 contacts of one company and the tenant's count(*) three ways:

* explicit ``WHERE company_id = …`` as the table owner (RLS not applied) - the baseline;
* RLS alone, as an ``authenticated`` user, with this project's policy
  ``company_id = (SELECT m.company_id FROM private.caller_membership m)``;
* RLS alone with the seed's policy form
  ``company_id IN (SELECT company_id FROM users WHERE id = auth.uid())``, swapped in
  inside a transaction that is rolled back.

Then one tenant transaction (BEGIN + claims + role, an indexed query, COMMIT) against the
same indexed query sent bare.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import psycopg

from bench.common import (
    BenchDatabase,
    Timing,
    bench_database,
    machine,
    report,
    summarize,
    time_runs,
    timing_row,
)
from syntera.config import Settings
from syntera.db.postgres import (
    BECOME_PRINCIPAL,
    READ_MEMBERSHIP,
    create_api_pool,
    principal_settings,
    transaction_as,
)
from syntera.tenancy import Principal

GENERATE = [
    "INSERT INTO auth.users (email)"
    " SELECT format('bench-%%s@example.com', g) FROM generate_series(1, %(companies)s) g",
    # The company trigger makes each owner a member with role 'owner'.
    "INSERT INTO public.companies (name, owner_id) SELECT 'Company ' || email, id FROM auth.users",
    "INSERT INTO public.contacts (company_id, email, first_name, last_name, created_at)"
    " SELECT c.id, format('c%%s@example.com', g), 'First', 'Last',"
    "        now() - random() * interval '365 days'"
    "   FROM public.companies c CROSS JOIN generate_series(1, %(per_company)s) g",
    "VACUUM (ANALYZE) public.contacts",
    "VACUUM (ANALYZE) public.users",
]

NEWEST_RLS = (
    "SELECT id, email, first_name, last_name, created_at FROM public.contacts"
    " ORDER BY created_at DESC, id DESC LIMIT 20"
)
NEWEST_EXPLICIT = (
    "SELECT id, email, first_name, last_name, created_at FROM public.contacts"
    " WHERE company_id = %(company_id)s ORDER BY created_at DESC, id DESC LIMIT 20"
)
COUNT_RLS = "SELECT count(*) FROM public.contacts"
COUNT_EXPLICIT = "SELECT count(*) FROM public.contacts WHERE company_id = %(company_id)s"

# (name, explicit filter without RLS, RLS alone)
QUERY_PAIRS = [("newest20", NEWEST_EXPLICIT, NEWEST_RLS), ("count", COUNT_EXPLICIT, COUNT_RLS)]

SEED_POLICY = """
DROP POLICY contacts_select ON public.contacts;
CREATE POLICY seed_form ON public.contacts FOR SELECT TO authenticated
  USING (company_id IN (SELECT company_id FROM public.users WHERE id = auth.uid()));
"""


def generate(db: BenchDatabase, contacts: int, companies: int) -> None:
    started = time.perf_counter()
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        for statement in GENERATE:
            conn.execute(statement, {"companies": companies, "per_company": contacts // companies})
    print(f"generated {contacts:,} contacts in {time.perf_counter() - started:.1f}s")


def pick_tenant(db: BenchDatabase) -> tuple[uuid.UUID, uuid.UUID]:
    with psycopg.connect(db.owner_url) as conn:
        row = conn.execute(
            "SELECT id, owner_id FROM public.companies ORDER BY id OFFSET"
            " (SELECT count(*) / 2 FROM public.companies) LIMIT 1"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def check_returns_rows(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> None:
    assert conn.execute(query, params).fetchall(), "no rows: the data or RLS is wrong"


def timed_pair(
    first: tuple[psycopg.Connection, str, dict[str, Any]],
    second: tuple[psycopg.Connection, str, dict[str, Any]],
    runs: int,
    warmup: int = 50,
) -> tuple[Timing, Timing]:
    """Time two queries alternately, so drift of the machine affects both alike."""
    for conn, query, params in (first, second):
        check_returns_rows(conn, query, params)
    samples: tuple[list[float], list[float]] = ([], [])
    for i in range(warmup + runs):
        for (conn, query, params), bucket in zip((first, second), samples, strict=True):
            start = time.perf_counter()
            conn.execute(query, params).fetchall()
            if i >= warmup:
                bucket.append((time.perf_counter() - start) * 1000)
    return summarize(samples[0]), summarize(samples[1])


def timed(conn: psycopg.Connection, query: str, params: dict[str, Any], runs: int) -> Timing:
    check_returns_rows(conn, query, params)
    return time_runs(lambda: conn.execute(query, params).fetchall(), runs)


def server_mean_ms(conn: psycopg.Connection, query: str, role: str) -> float:
    """Mean execution time inside the server, from pg_stat_statements (planning excluded),
    which the client-side figures, dominated by the round trip, cannot show."""
    row = conn.execute(
        "SELECT sum(total_exec_time) / sum(calls) FROM pg_stat_statements s"
        " JOIN pg_roles r ON r.oid = s.userid"
        " WHERE r.rolname = %s AND s.query LIKE %s",
        # pg_stat_statements replaces constants (LIMIT 20) by $n: compare what precedes.
        (role, query.replace("%(company_id)s", "$1").split(" LIMIT")[0] + "%"),
    ).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError(f"not in pg_stat_statements: {query}")
    return float(row[0])


def plan(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> str:
    rows = conn.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + query, params).fetchall()
    return " / ".join(row[0].strip() for row in rows[:3])


def measure_queries(
    db: BenchDatabase, runs: int
) -> tuple[dict[str, Timing], dict[str, tuple[float, float]]]:
    """Client-side timings of every query, and the server-side mean execution times
    (explicit, ours) of each pair."""
    company_id, user_id = pick_tenant(db)
    params = {"company_id": company_id}
    settings = principal_settings(Principal.user(user_id))
    results: dict[str, Timing] = {}
    server: dict[str, tuple[float, float]] = {}
    with psycopg.connect(db.owner_url, autocommit=True) as owner:
        owner.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        owner.execute("SELECT pg_stat_statements_reset()")
    with psycopg.connect(db.owner_url) as owner, psycopg.connect(db.api_url) as api:
        api.execute(BECOME_PRINCIPAL, settings)  # exactly what a request does
        api.execute(READ_MEMBERSHIP)
        for name, explicit, rls_only in QUERY_PAIRS:
            baseline, ours = timed_pair((owner, explicit, params), (api, rls_only, {}), runs)
            results[f"{name} explicit, no RLS"] = baseline
            results[f"{name} RLS only (ours)"] = ours
        print("plan, explicit:", plan(owner, NEWEST_EXPLICIT, params))
        print("plan, RLS (ours):", plan(api, NEWEST_RLS, {}))
        api.rollback()
        owner.rollback()
        for name, explicit, rls_only in QUERY_PAIRS:
            server[name] = (
                server_mean_ms(owner, explicit, "postgres"),
                server_mean_ms(owner, rls_only, "authenticated"),
            )
    with psycopg.connect(db.owner_url) as owner:
        owner.execute(SEED_POLICY)
        owner.execute(BECOME_PRINCIPAL, settings)
        seed_runs = max(5, runs // 20)
        results["newest20 RLS only (seed's policy)"] = timed(owner, NEWEST_RLS, {}, seed_runs)
        results["count RLS only (seed's policy)"] = timed(owner, COUNT_RLS, {}, seed_runs)
        print("plan, RLS (seed's policy):", plan(owner, NEWEST_RLS, {}))
        owner.rollback()  # the seed's policy never outlives this transaction
    return results, server


async def measure_round_trips(db: BenchDatabase, runs: int) -> dict[str, Timing]:
    company_id, user_id = pick_tenant(db)
    with psycopg.connect(db.owner_url) as conn:
        row = conn.execute(
            "SELECT id FROM public.contacts WHERE company_id = %s LIMIT 1", (company_id,)
        ).fetchone()
    assert row is not None
    contact_id = row[0]
    query = "SELECT id, email, first_name FROM public.contacts WHERE id = %(id)s"
    principal = Principal.user(user_id)
    pool = create_api_pool(Settings(pg_pool_min_size=1, pg_pool_max_size=1), db.api_url)
    await pool.open(wait=True)
    bare = await psycopg.AsyncConnection.connect(db.owner_url, autocommit=True)
    try:
        bare_samples, tenant_samples = [], []
        for i in range(runs + 50):
            start = time.perf_counter()
            await (await bare.execute(query, {"id": contact_id})).fetchone()
            middle = time.perf_counter()
            async with transaction_as(pool, principal) as conn:
                found = await (await conn.execute(query, {"id": contact_id})).fetchone()
            end = time.perf_counter()
            assert found is not None
            if i >= 50:  # warm-up
                bare_samples.append((middle - start) * 1000)
                tenant_samples.append((end - middle) * 1000)
    finally:
        await bare.close()
        await pool.close()
    return {
        "bare indexed query (autocommit)": summarize(bare_samples),
        "tenant transaction (BEGIN+claims+role+membership, query, COMMIT)": summarize(
            tenant_samples
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--companies", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    with bench_database() as db:
        generate(db, args.contacts, args.companies)
        queries, server = measure_queries(db, args.runs)
        trips = asyncio.run(measure_round_trips(db, args.runs * 5))
    baseline = {
        "newest20": queries["newest20 explicit, no RLS"].median_ms,
        "count": queries["count explicit, no RLS"].median_ms,
    }
    conditions = (
        f"{args.contacts:,} contacts over {args.companies:,} companies; one connection over a "
        f"Unix socket; embedded PostgreSQL 18; {machine()}"
    )
    rows = [
        timing_row(name, timing, timing.median_ms / baseline[name.split(" ", 1)[0]])
        for name, timing in queries.items()
    ]
    report(
        "rls_at_scale",
        conditions,
        ["query", "runs", "median ms", "p95 ms", "p99 ms", "vs explicit filter"],
        rows,
    )
    report(
        "rls_server_time",
        conditions + "; mean execution time inside PostgreSQL (pg_stat_statements)",
        ["query", "explicit filter, no RLS (ms)", "RLS only, ours (ms)", "ratio"],
        [
            [name, f"{explicit:.4f}", f"{ours:.4f}", f"{ours / explicit:.2f}x"]
            for name, (explicit, ours) in server.items()
        ],
    )
    bare = trips["bare indexed query (autocommit)"].median_ms
    report(
        "tenant_transaction",
        f"{args.contacts:,} contacts; pool of 1 connection as authenticator; {machine()}",
        ["what", "runs", "median ms", "p95 ms", "p99 ms", "vs bare"],
        [timing_row(name, t, t.median_ms / bare) for name, t in trips.items()],
    )


if __name__ == "__main__":
    main()
