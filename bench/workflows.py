"""Workflows: events per second from the triggering commit to the finished execution,
and the delay between the two.

    python -m bench.workflows [--events 2000] [--rate 20] [--concurrency 2]

On a throw-away embedded PostgreSQL, a company has one enabled three-node workflow
(trigger → condition on the contact's email → add a tag) on ``contact_created``. The
worker runs as ``syntera worker`` in its own process (woken by NOTIFY). Contacts are
inserted one per transaction from this process:

* burst: ``--events`` contacts as fast as one connection commits them; throughput is
  events / (last execution finished - first event committed);
* paced: contacts at ``--rate`` per second for 15 s (below capacity), the delay from each
  event's commit to its execution's end (p50/p95/p99).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bench.common import BenchDatabase, bench_database, machine, report, summarize
from bench.kb import company_with_owner

NODES = [
    {"id": "start", "type": "trigger", "config": {}},
    {
        "id": "has_email",
        "type": "condition",
        "config": {"when": {"field": "contact.email", "op": "exists"}},
    },
    {"id": "tag", "type": "add_tag", "config": {"tag": "welcomed"}},
]
EDGES = [
    {"source": "start", "target": "has_email"},
    {"source": "has_email", "target": "tag", "condition": True},
]


def insert_contacts(
    conn: psycopg.Connection, company_id: Any, count: int, rate: float | None
) -> None:
    started = time.perf_counter()
    for i in range(count):
        if rate:
            wait = started + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        conn.execute(
            "INSERT INTO public.contacts (company_id, email) VALUES (%s, %s)",
            (company_id, f"c{i}-{time.monotonic_ns()}@bench.local"),
        )


def wait_until_done(conn: psycopg.Connection, workflow_id: Any, expected: int) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        [(done,)] = conn.execute(
            "SELECT count(*) FROM public.workflow_executions"
            " WHERE workflow_id = %s AND status IN ('success', 'failed', 'cancelled')",
            (workflow_id,),
        ).fetchall()
        if done >= expected:
            return
        time.sleep(0.05)
    raise TimeoutError("executions did not finish")


def delays(conn: psycopg.Connection, workflow_id: Any) -> tuple[list[float], float, int]:
    rows = conn.execute(
        "SELECT extract(epoch FROM x.finished_at - e.created_at) * 1000, x.status,"
        "       extract(epoch FROM e.created_at)"
        " FROM public.workflow_executions x JOIN public.workflow_events e ON e.id = x.event_id"
        " WHERE x.workflow_id = %s",
        (workflow_id,),
    ).fetchall()
    [(span,)] = conn.execute(
        "SELECT extract(epoch FROM max(x.finished_at) - min(e.created_at))"
        " FROM public.workflow_executions x JOIN public.workflow_events e ON e.id = x.event_id"
        " WHERE x.workflow_id = %s",
        (workflow_id,),
    ).fetchall()
    failed = sum(1 for _, status, _ in rows if status != "success")
    return [float(ms) for ms, _, _ in rows], float(span), failed


def workflow(conn: psycopg.Connection, company_id: Any) -> Any:
    [(workflow_id,)] = conn.execute(
        "INSERT INTO public.workflows (company_id, name, trigger_type, nodes, edges)"
        " VALUES (%s, 'Welcome', 'contact_created', %s, %s) RETURNING id",
        (company_id, Jsonb(NODES), Jsonb(EDGES)),
    ).fetchall()
    return workflow_id


def run(db: BenchDatabase, events: int, rate: float, concurrency: int) -> None:
    env = {
        **os.environ,
        **db.api_stack().as_env(),
        "SYNTERA_WORKFLOW_WORKER_CONCURRENCY": str(concurrency),
        "SYNTERA_DATA_DIR": tempfile.mkdtemp(prefix="syntera-bench-workflows-"),
    }
    syntera = Path(sys.executable).with_name("syntera")
    worker = subprocess.Popen([str(syntera), "worker"], env=env, stdout=subprocess.DEVNULL)
    rows = []
    try:
        time.sleep(3)  # the worker is up and LISTENing
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            company_id, _ = company_with_owner(conn, "flows")
            burst = workflow(conn, company_id)
            insert_contacts(conn, company_id, events, None)
            wait_until_done(conn, burst, events)
            _, span, failed = delays(conn, burst)
            rows.append(["burst: events/s, commit to finished execution", f"{events:,}",
                         f"{events / span:.0f} events/s", "", "", "", str(failed)])  # fmt: skip
            conn.execute("UPDATE public.workflows SET enabled = false WHERE id = %s", (burst,))
            paced = workflow(conn, company_id)
            count = int(rate * 15)
            insert_contacts(conn, company_id, count, rate)
            wait_until_done(conn, paced, count)
            samples, _, failed = delays(conn, paced)
            timing = summarize(samples)
            rows.append([f"paced at {rate:g}/s: delay, commit to execution end", f"{count:,}",
                         "", f"{timing.median_ms:.1f}", f"{timing.p95_ms:.1f}",
                         f"{timing.p99_ms:.1f}", str(failed)])  # fmt: skip
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    report(
        "workflow_throughput",
        f"{machine()}; PostgreSQL 18 embedded; workflow trigger → condition → add_tag on "
        f"contact_created; `syntera worker` in its own process, {concurrency} workflow "
        "runners woken by NOTIFY; contacts inserted one per transaction from another process",
        ["measured", "events", "throughput", "median ms", "p95 ms", "p99 ms", "not success"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with bench_database(services=("mongodb", "redis")) as db:  # syntera worker needs all three
        run(db, args.events, args.rate, args.concurrency)


if __name__ == "__main__":
    main()
