"""The mixed workload of a real tenant: browsing contacts, moving deals, chat messages and
knowledge-base search at once, with per-route throughput and latency.

    python -m bench.mixed [--duration 60] [--connections 64] [--workers 2]

On a throw-away embedded stack (PostgreSQL, the MongoDB-wire server, Valkey), one company
with ``--contacts`` contacts, 1,000 deals, 200 conversations and a knowledge base of
real embedded chunks is served by ``syntera serve --workers N --no-worker``. Four wrk
processes run at once, a quarter of the connections each, one per kind of request; each
reports its own throughput and latency. The same load then runs on bench/anchor.py (the
same routes done bare: PyJWT, one pipelined psycopg round trip, orjson; its search embeds
with the model in-process), and every figure is reported beside the anchor's of this run.
Also reported: errors (the goal is zero), CPU per request, the CPU of the load generators,
and the peak resident memory of the server's processes.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from tests.kb.corpus import DOCUMENTS, QUESTIONS
from tests.pgbouncer import start_pgbouncer

from bench.api import (
    ROOMY_LIMITS,
    Server,
    _milliseconds,
    access_token,
    start_anchor,
    start_server,
)
from bench.common import BenchDatabase, bench_database, machine, report
from bench.kb import sentences, stdlib_prose
from bench.rls import generate, pick_tenant
from syntera.config import Settings
from syntera.db.postgres import create_api_pool
from syntera.kb.embeddings import LocalMiniLM
from syntera.kb.vectors import PgVectorStore
from syntera.unit_of_work import system_transaction

STAGES = ["lead", "qualified", "proposal", "negotiation", "closed-won", "closed-lost"]

SCRIPTS = {
    "browse contacts (GET list / GET one)": """
local ids = {%(contacts)s}
local n = 0
request = function()
  n = n + 1
  if n %% 2 == 0 then return wrk.format("GET", "/v1/contacts?limit=20") end
  return wrk.format("GET", "/v1/contacts/" .. ids[math.random(#ids)])
end
""",
    "move deals (PATCH stage)": """
local ids = {%(deals)s}
local stages = {%(stages)s}
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"stage": "' .. stages[math.random(#stages)] .. '"}'
  return wrk.format("PATCH", "/v1/deals/" .. ids[math.random(#ids)], nil, body)
end
""",
    "chat messages (POST)": """
local ids = {%(conversations)s}
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"sender_type": "user", "role": "user", "content": "Is this in stock?"}'
  return wrk.format("POST", "/v1/conversations/" .. ids[math.random(#ids)] .. "/messages",
                    nil, body)
end
""",
    "knowledge-base search (POST, top 5)": """
local questions = {%(questions)s}
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"query": "' .. questions[math.random(#questions)] .. '", "top_k": 5}'
  return wrk.format("POST", "/v1/kb/search", nil, body)
end
""",
}


def lua_list(values: list[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


@dataclass(frozen=True)
class Outcome:
    name: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


def parse(name: str, output: str) -> Outcome:
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if len(percentiles) < 2:
        raise RuntimeError(f"wrk gave no latency distribution for {name}:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    requests = re.search(r"(\d+) requests in", output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert requests is not None
    assert rate is not None
    errors = (int(bad.group(1)) if bad else 0) + (
        sum(int(x) for x in sockets.groups()) if sockets else 0
    )
    return Outcome(
        name, float(rate.group(1)), _milliseconds(percentiles["50"]),
        _milliseconds(percentiles["99"]), int(requests.group(1)), errors,
    )  # fmt: skip


class PeakMemory:
    """The largest resident set of the server's processes seen while sampling."""

    def __init__(self, server: Server) -> None:
        self.root = psutil.Process(server.process.pid)
        self.peak_per_process = 0
        self.peak_total = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stop.wait(0.25):
            sizes = [p.memory_info().rss for p in [self.root, *self.root.children(recursive=True)]]
            self.peak_per_process = max(self.peak_per_process, *sizes)
            self.peak_total = max(self.peak_total, sum(sizes))

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


async def knowledge_base(db: BenchDatabase, company_id: uuid.UUID) -> int:
    """The corpus and 3,000 stdlib sentences as chunks of the company, really embedded."""
    model = LocalMiniLM(64)
    texts = list(DOCUMENTS.values()) + sentences(stdlib_prose())[:3000]
    vectors = model.encode(texts)
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        [(document_id,)] = conn.execute(
            "INSERT INTO public.knowledge_base_documents (company_id, name, file_path, status)"
            " VALUES (%s, 'handbook', 'none', 'completed') RETURNING id",
            (company_id,),
        ).fetchall()
    async with (
        create_api_pool(Settings(), db.api_url) as pool,
        system_transaction(pool) as conn,
    ):
        await PgVectorStore().replace_document(
            conn, company_id, document_id, None, "handbook", texts, vectors
        )
    return len(texts)


def conversations(base_url: str, token: str, agent_id: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    ids = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        for _ in range(count):
            response = http.post(
                "/v1/conversations", json={"agent_id": agent_id, "channel": "chat"}
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument(
        "--through-pgbouncer", action="store_true",
        help="run the workload a second time through PgBouncer and report the ratio",
    )  # fmt: skip
    parser.add_argument("--embedding-threads", type=int, default=0,
                        help="torch threads of the model process (default: 1)")  # fmt: skip
    parser.add_argument("--without", action="append", default=[], metavar="WORD",
                        help="leave out the routes named with WORD (search, ...)")  # fmt: skip
    args = parser.parse_args()
    routes = {name: script for name, script in SCRIPTS.items()
              if not any(word in name for word in args.without)}  # fmt: skip
    per_route = max(1, args.connections // len(routes))

    with bench_database(services=("mongodb", "redis")) as db:
        generate(db, args.contacts, 100)
        company_id, owner_id = pick_tenant(db)
        token = access_token(owner_id)
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            contacts = [str(r[0]) for r in conn.execute(
                "SELECT id FROM public.contacts WHERE company_id = %s LIMIT 1000", (company_id,)
            )]  # fmt: skip
            deals = [str(r[0]) for r in conn.execute(
                "INSERT INTO public.deals (company_id, title, value)"
                " SELECT %s, 'Deal ' || g, g FROM generate_series(1, 1000) g RETURNING id",
                (company_id,),
            )]  # fmt: skip
            [(agent_id,)] = conn.execute(
                "INSERT INTO public.agent_configs (company_id, name, system_prompt)"
                " VALUES (%s, 'Support', 'Be helpful') RETURNING id",
                (company_id,),
            ).fetchall()
        chunks = asyncio.run(knowledge_base(db, company_id))
        variants = [("direct", {})]
        bouncer = None
        if args.through_pgbouncer:
            bouncer = start_pgbouncer(db.api_url, Path(tempfile.mkdtemp()), pool_size=20)
            pooled = {"SYNTERA_API_DATABASE_URL": next(bouncer),
                      "SYNTERA_PG_TRANSACTION_POOLER": "true"}  # fmt: skip
            variants.append(("through PgBouncer", pooled))
        values = {
            "contacts": lua_list(contacts), "deals": lua_list(deals),
            "stages": lua_list(STAGES),
            "questions": lua_list([q.replace('"', "") for q, _ in QUESTIONS]),
        }  # fmt: skip
        results: list[tuple[str, Drive]] = []
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            chats: list[str] = []
            for variant, extra in variants:
                # As `syntera serve` runs by default: the model process loads its model
                # before the API accepts requests (bench/startup.py).
                served = {**ROOMY_LIMITS, "SYNTERA_KB_PRELOAD_MODEL": "true", **extra}
                if args.embedding_threads:
                    served["SYNTERA_KB_EMBEDDING_THREADS"] = str(args.embedding_threads)
                server = start_server(db, args.workers, folder, served)
                try:
                    chats = chats or conversations(server.base_url, token, str(agent_id), 200)
                    scripts = write_scripts(folder, routes, {**values,
                                            "conversations": lua_list(chats)})  # fmt: skip
                    results.append((variant, drive(server, token, scripts, args, per_route)))
                finally:
                    server.process.terminate()
                    server.process.wait(30)
            # The anchor: the same load on bench/anchor.py, the same routes done bare.
            anchor = start_anchor(db, args.workers, company_id, folder / "anchor.log", True)
            try:
                floor = drive(anchor, token, scripts, args, per_route)
            finally:
                anchor.process.terminate()
                anchor.process.wait(30)
        if bouncer is not None:
            bouncer.close()

    totals = {variant: _report_variant(args, per_route, chunks, variant, run, floor)
              for variant, run in results}  # fmt: skip
    if "through PgBouncer" in totals:
        direct, pooled_rate = totals["direct"], totals["through PgBouncer"]
        report(
            "mixed_workload_pgbouncer",
            f"{machine()}; the mixed workload above, direct and with the API's connections "
            "through PgBouncer 1.18 (pool_mode = transaction, 20 server connections), "
            "one after the other in this run",
            ["variant", "req/s, all routes", "ratio"],
            [["direct", f"{direct:,.0f}", "1.00x"],
             ["through PgBouncer", f"{pooled_rate:,.0f}", f"{pooled_rate / direct:.2f}x"]],
        )  # fmt: skip


def write_scripts(folder: Path, routes: dict[str, str], values: dict[str, str]) -> list[Any]:
    scripts = []
    for index, (name, script) in enumerate(routes.items()):
        path = folder / f"route{index}.lua"
        path.write_text(script % values)
        scripts.append((name, path))
    return scripts


@dataclass(frozen=True)
class Drive:
    outcomes: list[Outcome]
    server_cpu_s: float
    wrk_cpu_s: float
    peak_per_process: int
    peak_total: int

    @property
    def requests_per_s(self) -> float:
        return sum(o.requests_per_s for o in self.outcomes)

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / max(1, sum(o.requests for o in self.outcomes))


def drive(
    server: Server, token: str, scripts: list[Any], args: argparse.Namespace, per_route: int
) -> Drive:
    """Every route's wrk at once against ``server``, after a warm-up of each (a search
    per question twice, so every process has embedded before the clock starts)."""
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        for question, _ in QUESTIONS * 2:
            http.post("/v1/kb/search", json={"query": question}, headers=auth).raise_for_status()
    warm = [["wrk", "-t1", "-c2", "-d3s", "-H", f"Authorization: Bearer {token}",
             "-s", str(path), server.base_url] for _, path in scripts]  # fmt: skip
    for process in [subprocess.Popen(c, stdout=subprocess.DEVNULL) for c in warm]:
        process.wait()
    # A response slower than wrk's default 2 s would count as a socket error; with 10 s
    # it is counted as what it is, a slow answer (see the p99).
    commands = [["wrk", "-t1", f"-c{per_route}", f"-d{args.duration}s", "--latency",
                 "--timeout", "10s", "-H", f"Authorization: Bearer {token}", "-s", str(path),
                 server.base_url] for _, path in scripts]  # fmt: skip
    cpu_before = server.cpu_seconds()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with PeakMemory(server) as memory:
        running = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
        outputs = [process.communicate()[0] for process in running]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (children.ru_utime - children_before.ru_utime) + (
        children.ru_stime - children_before.ru_stime
    )
    outcomes = [parse(name, out) for (name, _), out in zip(scripts, outputs, strict=True)]
    return Drive(outcomes, server.cpu_seconds() - cpu_before, wrk_cpu,
                 memory.peak_per_process, memory.peak_total)  # fmt: skip


def _report_variant(
    args: argparse.Namespace, per_route: int, chunks: int, variant: str, run: Drive, floor: Drive
) -> float:
    """Report one run of the mixed workload beside the anchor's; its total request rate."""
    rows = [
        [o.name, f"{o.requests_per_s:,.0f}", f"{a.requests_per_s:,.0f}",
         f"{o.requests_per_s / max(a.requests_per_s, 1e-9):.2f}x",
         f"{o.p50_ms:.0f} / {o.p99_ms:.0f}", f"{a.p50_ms:.0f} / {a.p99_ms:.0f}",
         f"{o.errors} of {o.requests:,}"]
        for o, a in zip(run.outcomes, floor.outcomes, strict=True)
    ]  # fmt: skip
    errors = sum(o.errors for o in run.outcomes)
    rows.append([f"all {len(run.outcomes)} at once", f"{run.requests_per_s:,.0f}",
                 f"{floor.requests_per_s:,.0f}",
                 f"{run.requests_per_s / floor.requests_per_s:.2f}x", "", "",
                 f"{errors} of {sum(o.requests for o in run.outcomes):,}"])  # fmt: skip
    report(
        "mixed_workload" if variant == "direct" else "mixed_workload_through_pgbouncer",
        f"{machine()}; {args.contacts:,} contacts in 100 companies, one company driven: 1,000 "
        f"deals, 200 conversations, {chunks:,} knowledge-base chunks (MiniLM); `syntera serve "
        f"--workers {args.workers} --no-worker` (its model process included) and, after it "
        f"in this run, bench/anchor.py (the same routes bare, its model in-process); "
        f"{len(run.outcomes)} wrk -t1 processes at once, {per_route} connections each, "
        f"{args.duration} s, 10 s timeout; CPU ms per request {run.cpu_ms_per_request:.2f} "
        f"(anchor {floor.cpu_ms_per_request:.2f}); wrk CPU {run.wrk_cpu_s:.1f} s; peak RSS "
        f"of one process {run.peak_per_process / 2**20:.0f} MB, all "
        f"{run.peak_total / 2**20:.0f} MB (anchor {floor.peak_total / 2**20:.0f} MB)",
        ["route", "req/s", "anchor req/s", "vs anchor", "p50 / p99 ms",
         "anchor p50 / p99 ms", "errors"],
        rows,
    )  # fmt: skip
    return run.requests_per_s


if __name__ == "__main__":
    main()
