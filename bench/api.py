"""HTTP API throughput and database round trips per request.

    python -m bench.api [--contacts 100000] [--companies 100] [--workers 2]
                        [--connections 32] [--duration 20]

Generates contacts into a fresh database on an embedded stack of its own, serves the API
with ``syntera serve --workers N`` (uvicorn) and drives it with wrk (``apt install wrk``)
from the same machine, so the load generator competes with the server for the CPUs; both
CPU uses are reported. Two figures, each against PostgREST's published 2,600 req/s for a
single-row read on a 2-vCPU machine (with its database on a second machine):

* ``GET /v1/contacts/{id}`` for random contacts of one company;
* ``GET /v1/contacts?limit=20``, the newest page of that company.

Then the PostgreSQL round trips one request costs, counted from libpq's protocol trace
(each Sync or simple Query message sent is one round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
from tests.pgbouncer import start_pgbouncer

from bench.common import ROOMY_LIMITS, BenchDatabase, bench_database, machine, report
from bench.rls import generate, pick_tenant
from syntera.app import create_app
from syntera.auth.tokens import issue_access_token, load_keys
from syntera.config import Settings

ANCHOR_REQUESTS_PER_S = 2600
JWT_SECRET = "bench-jwt-secret-of-at-least-thirty-two-bytes"  # noqa: S105 (a throw-away stack)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def access_token(user_id: uuid.UUID) -> str:
    keys = load_keys(Settings(jwt_secret=JWT_SECRET))
    return issue_access_token(
        keys, user_id=user_id, email=None, session_id=uuid.uuid4(), lifetime_s=3600,
        issuer="bench", user_metadata={}, app_metadata={},
    ).token  # fmt: skip


def company_contact_ids(db: BenchDatabase, company_id: uuid.UUID, limit: int) -> list[str]:
    with psycopg.connect(db.owner_url) as conn:
        rows = conn.execute(
            "SELECT id FROM public.contacts WHERE company_id = %s ORDER BY random() LIMIT %s",
            (company_id, limit),
        ).fetchall()
    return [str(row[0]) for row in rows]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str

    def cpu_seconds(self) -> float:
        """CPU used so far by the server and its worker processes."""
        parent = psutil.Process(self.process.pid)
        total = 0.0
        for proc in [parent, *parent.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
        return total

    def stop(self, log: Path | None = None) -> None:
        """SIGTERM, as Ctrl-C would; a server that has not stopped 30 s later is killed
        with its processes, and the end of its ``log`` is shown, so a hung shutdown is
        reported rather than left running."""
        if self.process.poll() is not None:
            return  # it has already ended (its failure is the error being reported)
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.terminate()
        try:
            self.process.wait(30)
            return
        except subprocess.TimeoutExpired:
            pass
        alive = [child for child in children if child.is_running()]
        names = [" ".join(child.cmdline()[-4:]) for child in alive]
        print(f"the server did not stop within 30 s of SIGTERM; still running: {names}",
              file=sys.stderr)  # fmt: skip
        if log is not None and log.exists():
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
        for proc in [*alive, self.process]:
            proc.kill()
        self.process.wait(10)


def start_server(
    db: BenchDatabase, workers: int, data_dir: Path, settings: dict[str, str] | None = None
) -> Server:
    """``syntera serve`` on the bench stack; ``settings`` are extra SYNTERA_* variables."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(db.api_stack().as_env())
    env.update(SYNTERA_JWT_SECRET=JWT_SECRET, SYNTERA_PG_POOL_MAX_SIZE="20")
    # The request path alone: no document or workflow worker beside it (`--no-worker`).
    env.update(SYNTERA_KB_WORKER_ENABLED="false", SYNTERA_WORKFLOW_WORKER_ENABLED="false")
    # No model loading in the background while the clock runs (a search loads it).
    env.update(SYNTERA_KB_PRELOAD_MODEL="false")
    env.update(settings or {})
    # The server's own output, for when a run goes wrong.
    log = (data_dir / "server.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "syntera", "serve", "--workers", str(workers),
         "--port", str(port), "--data-dir", str(data_dir)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return Server(process, base_url)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the API did not become ready")


@dataclass(frozen=True)
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    requests: int
    server_cpu_s: float
    wrk_cpu_s: float


WRK_SCRIPT = """
local ids = {%s}
request = function()
  return wrk.format("GET", "/v1/contacts/" .. ids[math.random(#ids)])
end
"""


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    server: Server, url: str, token: str, connections: int, duration_s: int, script: Path | None
) -> LoadResult:
    command = [
        "wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency",
        "-H", f"Authorization: Bearer {token}",
    ]  # fmt: skip
    if script is not None:
        command += ["-s", str(script)]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = server.cpu_seconds()
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    server_cpu = server.cpu_seconds() - server_before
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    if len(percentiles) < 3:
        raise RuntimeError(f"wrk gave no latency distribution:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        print(f"wrk: socket errors: {socket_errors.group(1)}")
    requests = re.search(r"(\d+) requests in", output)
    return LoadResult(
        requests_per_s=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        p50_ms=_milliseconds(percentiles["50"]),
        p90_ms=_milliseconds(percentiles["90"]),
        p99_ms=_milliseconds(percentiles["99"]),
        errors=int(errors.group(1)) if errors else 0,
        requests=int(requests.group(1)) if requests else 0,
        server_cpu_s=server_cpu,
        wrk_cpu_s=wrk_cpu,
    )


async def round_trips_per_request(db: BenchDatabase, token: str, contact_id: str) -> int:
    """Round trips of one GET /v1/contacts/{id}, from libpq's trace of the only pooled
    connection (one Sync or simple Query message per round trip)."""
    settings = Settings(jwt_secret=JWT_SECRET, pg_pool_min_size=1, pg_pool_max_size=1)
    app = create_app(settings, db.api_stack())
    with tempfile.NamedTemporaryFile("w+b", suffix=".trace") as trace:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                headers = {"Authorization": f"Bearer {token}"}
                await http.get(f"/v1/contacts/{contact_id}", headers=headers)  # warm up
                async with app.state.stores.postgres.connection() as conn:
                    conn.pgconn.trace(trace.fileno())
                    conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
                response = await http.get(f"/v1/contacts/{contact_id}", headers=headers)
                assert response.status_code == 200, response.text
                async with app.state.stores.postgres.connection() as conn:
                    conn.pgconn.untrace()
        trace.seek(0)
        lines = trace.read().decode(errors="replace").splitlines()
    sent = [line.split("\t")[2] for line in lines if line.startswith("F\t")]
    return sum(1 for message in sent if message in ("Sync", "Query"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--companies", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument(
        "--through-pgbouncer", action="store_true",
        help="also serve through PgBouncer (transaction mode) and report the ratio",
    )  # fmt: skip
    args = parser.parse_args()

    with bench_database(services=("mongodb", "redis")) as db:
        generate(db, args.contacts, args.companies)
        company_id, owner_id = pick_tenant(db)
        token = access_token(owner_id)
        ids = company_contact_ids(db, company_id, 1000)
        trips = asyncio.run(round_trips_per_request(db, token, ids[0]))
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "ids.lua"
            script.write_text(WRK_SCRIPT % ", ".join(f'"{i}"' for i in ids))
            single, page = read_loads(db, args, Path(tmp), token, script, ROOMY_LIMITS)
            anchored = side_by_side(db, args, Path(tmp), token, company_id, script)
            pooled: list[list[str]] = []
            if args.through_pgbouncer:
                pooled = _through_pgbouncer(db, args, Path(tmp), token, script, single, page)

    conditions = (
        f"{machine()}; {args.contacts:,} contacts in {args.companies} companies; "
        f"`syntera serve --workers {args.workers}` (uvicorn, uvloop, httptools), "
        f"PostgreSQL 18 embedded on the same machine; wrk -t2 -c{args.connections} "
        f"-d{args.duration}s on the same machine; anchor: PostgREST 2,600 req/s "
        f"(2 vCPU, database on another machine)"
    )
    rows = [
        _row("GET /v1/contacts/{id}", single, args),
        _row("GET /v1/contacts?limit=20", page, args),
    ]
    report(
        "api_throughput",
        conditions,
        ["request", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "API CPU s",
         "wrk CPU s", "vs anchor"],
        rows,
    )  # fmt: skip
    if pooled:
        report(
            "api_through_pgbouncer",
            conditions + "; PgBouncer 1.18, pool_mode = transaction, 20 server connections",
            ["request", "direct req/s", "through PgBouncer req/s", "p99 ms (direct / pooled)",
             "ratio"],
            pooled,
        )  # fmt: skip
    report(
        "api_vs_anchor",
        f"{machine()}; the same database ({args.contacts:,} contacts); the API (`syntera "
        f"serve --workers {args.workers}`, limiter on with room) and bench/anchor.py (a bare "
        f"ASGI app: PyJWT, one pipelined round trip, orjson; uvicorn --workers "
        f"{args.workers}), one after the other; wrk -t2 -c{args.connections} "
        f"-d{args.duration}s on the same machine",
        ["request", "API req/s", "anchor req/s", "API vs anchor", "API p50 / p99 ms",
         "anchor p50 / p99 ms", "API p99 / p50", "CPU ms per request (API / anchor)",
         "errors (API / anchor)"],
        anchored,
    )  # fmt: skip
    report(
        "api_round_trips",
        f"{machine()}; libpq protocol trace of one GET /v1/contacts/{{id}}",
        ["request", "round trips to PostgreSQL"],
        [["GET /v1/contacts/{id}", str(trips)]],
    )


CREATE_SCRIPT = """
local n = 0
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local body = '{"email": "bench-' .. n .. '-' .. math.random(1000000000) .. '@example.com", ' ..
               '"first_name": "Bench", "last_name": "Contact"}'
  return wrk.format("POST", "/v1/contacts", nil, body)
end
"""

POST_SCRIPT = """
local ids = {%s}
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"sender_type": "user", "content": "Is this in stock?"}'
  return wrk.format("POST", "/v1/conversations/" .. ids[math.random(#ids)] .. "/messages",
                    nil, body)
end
"""


def start_anchor(
    db: BenchDatabase, workers: int, company_id: uuid.UUID, log: Path, model: bool = False
) -> Server:
    """``bench.anchor`` under uvicorn (uvloop, httptools), as ``syntera serve`` runs;
    ``model``: with the embedding model loaded for its search route."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(ANCHOR_DATABASE_URL=db.api_url, ANCHOR_MONGODB_URI=db.stack.mongodb_uri,
               ANCHOR_JWT_SECRET=JWT_SECRET, ANCHOR_COMPANY_ID=str(company_id),
               ANCHOR_MODEL="1" if model else "0")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.anchor:app", "--workers", str(workers),
         "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
         "--log-level", "warning"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/v1/contacts", timeout=2)
            return Server(process, base_url)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the anchor did not start")


def side_by_side(
    db: BenchDatabase, args: argparse.Namespace, folder: Path, token: str, company_id: uuid.UUID,
    ids_script: Path,
) -> list[list[str]]:  # fmt: skip
    """The four hot requests on the API and on the bare anchor, one after the other in
    this run: each figure beside its anchor's."""
    create = folder / "create.lua"
    create.write_text(CREATE_SCRIPT)
    api = start_server(db, args.workers, folder, ROOMY_LIMITS)
    anchor = start_anchor(db, args.workers, company_id, folder / "anchor.log")
    try:
        agent = _agent(db, company_id)
        chats = [_conversation(api.base_url, token, agent) for _ in range(50)]
        post = folder / "post.lua"
        post.write_text(POST_SCRIPT % ", ".join(f'"{c}"' for c in chats))
        loads = [("GET /v1/contacts/{id}", "", ids_script),
                 ("GET /v1/contacts?limit=20", "/v1/contacts?limit=20", None),
                 ("POST /v1/contacts", "", create),
                 ("POST /v1/conversations/{id}/messages", "", post)]  # fmt: skip
        rows = []
        for name, path, script in loads:
            for server in (api, anchor):  # warm both
                run_wrk(server, f"{server.base_url}{path}", token, 8, 2, script)
            ours = run_wrk(api, f"{api.base_url}{path}", token, args.connections,
                           args.duration, script)  # fmt: skip
            floor = run_wrk(anchor, f"{anchor.base_url}{path}", token, args.connections,
                            args.duration, script)  # fmt: skip
            rows.append([
                name, f"{ours.requests_per_s:,.0f}", f"{floor.requests_per_s:,.0f}",
                f"{ours.requests_per_s / floor.requests_per_s:.2f}x",
                f"{ours.p50_ms:.1f} / {ours.p99_ms:.1f}",
                f"{floor.p50_ms:.1f} / {floor.p99_ms:.1f}",
                f"{ours.p99_ms / ours.p50_ms:.1f}",
                f"{1000 * ours.server_cpu_s / max(1, ours.requests):.2f} / "
                f"{1000 * floor.server_cpu_s / max(1, floor.requests):.2f}",
                f"{ours.errors} / {floor.errors}",
            ])  # fmt: skip
    finally:
        api.stop(folder / "server.log")
        anchor.stop(folder / "anchor.log")
    return rows


def _agent(db: BenchDatabase, company_id: uuid.UUID) -> str:
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO public.agent_configs (company_id, name, system_prompt)"
            " VALUES (%s, 'Bench', 'Be brief') RETURNING id", (company_id,),
        ).fetchone()  # fmt: skip
    assert row is not None
    return str(row[0])


def _conversation(base_url: str, token: str, agent: str) -> str:
    answer = httpx.post(f"{base_url}/v1/conversations", json={"agent_id": agent},
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    answer.raise_for_status()
    return str(answer.json()["id"])


def _row(name: str, result: LoadResult, args: argparse.Namespace) -> list[str]:
    return [
        name,
        f"{result.requests_per_s:,.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p90_ms:.1f}",
        f"{result.p99_ms:.1f}",
        f"{result.errors} of {result.requests:,}",
        f"{result.server_cpu_s:.1f}",
        f"{result.wrk_cpu_s:.1f}",
        f"{result.requests_per_s / ANCHOR_REQUESTS_PER_S:.2f}x",
    ]


def read_loads(
    db: BenchDatabase,
    args: argparse.Namespace,
    folder: Path,
    token: str,
    script: Path,
    settings: dict[str, str],
) -> tuple[LoadResult, LoadResult]:
    """Serve with ``settings``; wrk on single-row reads, then on pages of 20."""
    server = start_server(db, args.workers, folder, settings)
    try:
        run_wrk(server, f"{server.base_url}/v1/contacts", token, 8, 3, script)  # warm
        single = run_wrk(server, server.base_url, token, args.connections, args.duration, script)
        page = run_wrk(
            server, f"{server.base_url}/v1/contacts?limit=20", token,
            args.connections, args.duration, None,
        )  # fmt: skip
    finally:
        server.stop(folder / "server.log")
    return single, page


def _through_pgbouncer(
    db: BenchDatabase,
    args: argparse.Namespace,
    folder: Path,
    token: str,
    script: Path,
    single: LoadResult,
    page: LoadResult,
) -> list[list[str]]:
    """The same two runs with the API's connections going through PgBouncer."""
    bouncer = start_pgbouncer(db.api_url, folder / "pgbouncer", pool_size=20)
    url = next(bouncer)
    settings = {**ROOMY_LIMITS, "SYNTERA_API_DATABASE_URL": url,
                "SYNTERA_PG_TRANSACTION_POOLER": "true"}  # fmt: skip
    try:
        pooled_single, pooled_page = read_loads(db, args, folder, token, script, settings)
    finally:
        bouncer.close()
    return [
        [name, f"{direct.requests_per_s:,.0f}", f"{pooled.requests_per_s:,.0f}",
         f"{direct.p99_ms:.1f} / {pooled.p99_ms:.1f}",
         f"{pooled.requests_per_s / direct.requests_per_s:.2f}x"]
        for name, direct, pooled in (
            ("GET /v1/contacts/{id}", single, pooled_single),
            ("GET /v1/contacts?limit=20", page, pooled_page),
        )
    ]  # fmt: skip


if __name__ == "__main__":
    main()
