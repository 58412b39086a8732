"""The data API (/rest/v1) beside its anchor.

    python -m bench.rest [--contacts 10000] [--companies 10] [--workers 2]
                         [--connections 32] [--duration 10]

Generates contacts (and deals linked to them) into a fresh database on an embedded stack
of its own, serves the API with ``syntera serve --workers N`` and ``bench/anchor.py`` (a
bare ASGI app doing the same one round trip with the same statement), one after the
other, and drives each with wrk from the same machine, as a signed-in member of one
company:

* ``GET /rest/v1/contacts?id=eq.<id>`` for random contacts of the company;
* ``GET /rest/v1/contacts?order=created_at.desc&limit=20`` with ``Prefer: count=exact``;
* ``GET /rest/v1/deals?select=*,contacts(*)&limit=20``: deals with their contact embedded;
* ``POST /rest/v1/contacts`` of one new contact with ``Prefer: return=representation``.

Goal: each at least 0.8x of its anchor, and the single-row read at least 2,068 req/s
(PostgREST's best published figure for it on a small instance, its database on another
machine).
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

import psycopg

from bench.api import (
    access_token,
    company_contact_ids,
    run_wrk,
    start_anchor,
    start_server,
)
from bench.common import ROOMY_LIMITS, BenchDatabase, bench_database, machine, report
from bench.rls import generate, pick_tenant

POSTGREST_SINGLE_ROW = 2068

SINGLE = """
local ids = {%s}
request = function()
  return wrk.format("GET", "/rest/v1/contacts?id=eq." .. ids[math.random(#ids)])
end
"""
PAGE = """
wrk.headers["Prefer"] = "count=exact"
request = function()
  return wrk.format("GET", "/rest/v1/contacts?order=created_at.desc&limit=20")
end
"""
EMBED = """
request = function()
  return wrk.format("GET", "/rest/v1/deals?select=*,contacts(*)&limit=20")
end
"""

INSERT = """
local n = 0
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Prefer"] = "return=representation"
request = function()
  n = n + 1
  local body = '{"company_id": "%s", "email": "rest-' .. n .. '-' .. math.random(1000000000) ..
               '@example.com", "first_name": "Bench"}'
  return wrk.format("POST", "/rest/v1/contacts", nil, body)
end
"""


def add_deals(db: BenchDatabase, company_id: uuid.UUID, count: int) -> None:
    """``count`` deals of the company, each with one of its contacts."""
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.deals (company_id, contact_id, title, value)"
            " SELECT %(c)s, (SELECT id FROM public.contacts WHERE company_id = %(c)s"
            "                 ORDER BY random() + n LIMIT 1), 'Deal ' || n, n * 10"
            "   FROM generate_series(1, %(n)s) n",
            {"c": company_id, "n": count},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--companies", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()

    rows = []
    with bench_database(services=("mongodb", "redis")) as db, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        generate(db, args.contacts, args.companies)
        company_id, owner_id = pick_tenant(db)
        add_deals(db, company_id, 200)
        token = access_token(owner_id)
        ids = company_contact_ids(db, company_id, 1000)
        scripts = {
            "GET /rest/v1/contacts?id=eq.<id>": SINGLE % ", ".join(f'"{i}"' for i in ids),
            "GET /rest/v1/contacts?order=created_at.desc&limit=20, count=exact": PAGE,
            "GET /rest/v1/deals?select=*,contacts(*)&limit=20": EMBED,
            "POST /rest/v1/contacts, return=representation": INSERT % company_id,
        }
        api = start_server(db, args.workers, folder, ROOMY_LIMITS)
        anchor = start_anchor(db, args.workers, company_id, folder / "anchor.log")
        try:
            for name, text in scripts.items():
                script = folder / f"{len(rows)}.lua"
                script.write_text(text)
                for server in (api, anchor):  # warm both
                    run_wrk(server, server.base_url, token, 8, 2, script)
                ours = run_wrk(api, api.base_url, token, args.connections, args.duration, script)
                floor = run_wrk(anchor, anchor.base_url, token, args.connections,
                                args.duration, script)  # fmt: skip
                goal = ""
                if name.startswith("GET /rest/v1/contacts?id"):
                    goal = f"; {ours.requests_per_s / POSTGREST_SINGLE_ROW:.2f}x of 2,068"
                rows.append([
                    name, f"{ours.requests_per_s:,.0f}", f"{floor.requests_per_s:,.0f}",
                    f"{ours.requests_per_s / floor.requests_per_s:.2f}x{goal}",
                    f"{ours.p50_ms:.1f} / {ours.p99_ms:.1f}",
                    f"{floor.p50_ms:.1f} / {floor.p99_ms:.1f}",
                    f"{1000 * ours.server_cpu_s / max(1, ours.requests):.2f} / "
                    f"{1000 * floor.server_cpu_s / max(1, floor.requests):.2f}",
                    f"{ours.errors} / {floor.errors}",
                ])  # fmt: skip
        finally:
            api.stop(folder / "server.log")
            anchor.stop(folder / "anchor.log")
    report(
        "rest_vs_anchor",
        f"{machine()}; {args.contacts:,} contacts in {args.companies} companies, 200 deals "
        f"in the company asked; `syntera serve --workers {args.workers}` (limiter on, with "
        f"room) and bench/anchor.py (bare ASGI, PyJWT, the same statement in one pipelined "
        f"round trip; uvicorn --workers {args.workers}), one after the other; wrk -t2 "
        f"-c{args.connections} -d{args.duration}s on the same machine; goal >= 0.8x of the "
        f"anchor, single row >= 2,068 req/s (PostgREST, t3a.nano, database elsewhere)",
        ["request", "API req/s", "anchor req/s", "API vs anchor", "API p50 / p99 ms",
         "anchor p50 / p99 ms", "CPU ms per request (API / anchor)", "errors (API / anchor)"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
