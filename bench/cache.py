"""What Redis buys and costs: the agent cache warm against cold, and the widget's message
path with its rate limiter on against off.

    python -m bench.cache [--agents 200] [--duration 15]

Runs on a throw-away embedded stack; the API is `syntera serve --workers 2` and the load
is wrk from the same machine.

* ``GET /v1/agents/{id}`` over random agents: cold (``SYNTERA_CACHE_ENABLED=false``, every
  read from PostgreSQL) against warm (the cache filled by a first pass); the hit ratio is
  read from the server's own counters at ``/metrics``.
* ``POST /v1/public/conversations/{id}/messages`` (key check, session check, message
  stored) with the rate limits on against off. Goal: the limiter costs under 10%.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from bench.api import LoadResult, access_token, run_wrk, start_server
from bench.common import ROOMY_LIMITS, BenchDatabase, bench_database, machine, report
from bench.rls import generate, pick_tenant

AGENT_SCRIPT = """
local ids = {%s}
request = function()
  return wrk.format("GET", "/v1/agents/" .. ids[math.random(#ids)])
end
"""

WIDGET_SCRIPT = """
local chats = {%s}
request = function()
  local chat = chats[math.random(#chats)]
  return wrk.format("%s", "/v1/public/conversations/" .. chat[1] .. "/messages",
    {["Content-Type"] = "application/json", ["X-Api-Key"] = "%s",
     ["X-Widget-Session"] = chat[2]}, %s)
end
"""
POST_BODY = """'{"content": "Is this in stock?"}'"""


def hit_ratio(base_url: str) -> float:
    """Hits / lookups of the agent cache, from one worker's /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    counts = dict(re.findall(
        r'^syntera_cache_requests_total\{cache="agent",result="(hit|miss)"\} (\S+)$',
        text, re.MULTILINE,
    ))  # fmt: skip
    hits, misses = float(counts.get("hit", 0)), float(counts.get("miss", 0))
    return hits / (hits + misses) if hits + misses else 0.0


def agents_of(db: BenchDatabase, count: int) -> tuple[str, list[str]]:
    """A tenant's owner token and ``count`` agents of its company."""
    generate(db, 1000, 10)
    company_id, owner_id = pick_tenant(db)
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        rows = conn.execute(
            "INSERT INTO agent_configs (company_id, name, system_prompt)"
            " SELECT %s, 'Agent ' || g, 'Be brief' FROM generate_series(1, %s) g RETURNING id",
            (company_id, count),
        ).fetchall()
    return access_token(owner_id), [str(row[0]) for row in rows]


def widget_script(base_url: str, token: str, agent: str, folder: Path, method: str) -> Path:
    """A wrk script sending ``method`` to the messages of 50 fresh chats of the agent's
    widget (each chat with 20 messages already)."""
    headers = {"Authorization": f"Bearer {token}"}
    key = httpx.post(f"{base_url}/v1/agents/{agent}/public-key", headers=headers).json()
    chats = []
    for _ in range(50):
        chat = httpx.post(
            f"{base_url}/v1/public/conversations", headers={"X-Api-Key": key["public_key"]}
        ).json()
        chats.append((chat["conversation"]["id"], chat["session_token"]))
        for _ in range(20):
            httpx.post(
                f"{base_url}/v1/public/conversations/{chats[-1][0]}/messages",
                headers={"X-Api-Key": key["public_key"], "X-Widget-Session": chats[-1][1]},
                json={"content": "earlier message"},
            )
    script = folder / f"widget-{method}.lua"
    script.write_text(WIDGET_SCRIPT % (
        ", ".join(f'{{"{c}", "{s}"}}' for c, s in chats), method, key["public_key"],
        POST_BODY if method == "POST" else "nil",
    ))  # fmt: skip
    return script


def limiter_check_cost(redis_url: str, checks: int = 3000) -> tuple[float, float]:
    """Microseconds per check of both widget windows, and per plain Redis GET
    (sequential, one client: wall time including the round trip)."""
    import asyncio

    import redis.asyncio as aioredis

    from syntera.config import Settings
    from syntera.ratelimit import Limiters

    async def measure() -> tuple[float, float]:
        redis = aioredis.Redis.from_url(redis_url)
        limiters = Limiters.from_settings(
            Settings(rate_limit_widget_key_per_minute=10**9,
                     rate_limit_widget_session_per_minute=10**9), redis,
        )  # fmt: skip
        limits = [(limiters.widget_key, "t:bench:key", "key"),
                  (limiters.widget_session, "t:bench:session", "session")]  # fmt: skip
        try:
            for _ in range(200):
                await limiters.enforce_all(limits)
            started = time.perf_counter()
            for _ in range(checks):
                await limiters.enforce_all(limits)
            per_check = (time.perf_counter() - started) / checks * 1e6
            started = time.perf_counter()
            for _ in range(checks):
                await redis.get("g:bench:nothing")
            per_get = (time.perf_counter() - started) / checks * 1e6
        finally:
            await redis.aclose()
        return per_check, per_get

    return asyncio.run(measure())


def merged(results: list[LoadResult]) -> LoadResult:
    """Several runs as one: requests and errors summed, rates and latencies averaged."""
    count = len(results)
    return LoadResult(
        requests_per_s=sum(r.requests_per_s for r in results) / count,
        p50_ms=sum(r.p50_ms for r in results) / count,
        p90_ms=sum(r.p90_ms for r in results) / count,
        p99_ms=sum(r.p99_ms for r in results) / count,
        errors=sum(r.errors for r in results),
        requests=sum(r.requests for r in results),
        server_cpu_s=sum(r.server_cpu_s for r in results),
        wrk_cpu_s=sum(r.wrk_cpu_s for r in results),
    )


def row(name: str, result: LoadResult, extra: str) -> list[str]:
    return [
        name, f"{result.requests_per_s:,.0f}", f"{result.p50_ms:.1f}", f"{result.p99_ms:.1f}",
        f"{result.errors} of {result.requests:,}", extra,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--duration", type=int, default=15)
    args = parser.parse_args()

    with bench_database(services=("mongodb", "redis")) as db, tempfile.TemporaryDirectory() as tmp:
        per_check, per_get = limiter_check_cost(db.stack.redis_url)
        token, agents = agents_of(db, args.agents)
        script = Path(tmp) / "agents.lua"
        script.write_text(AGENT_SCRIPT % ", ".join(f'"{a}"' for a in agents))
        cache_rows = []
        for label, settings in [("cold (cache off)", {"SYNTERA_CACHE_ENABLED": "false"}),
                                ("warm", {})]:  # fmt: skip
            server = start_server(db, 2, Path(tmp), {**ROOMY_LIMITS, **settings})
            try:
                run_wrk(server, server.base_url, token, 8, 3, script)  # fills the cache
                result = run_wrk(server, server.base_url, token, 32, args.duration, script)
                ratio = hit_ratio(server.base_url)
            finally:
                server.process.terminate()
                server.process.wait(30)
            cache_rows.append(row(f"GET /v1/agents/{{id}}, {label}", result, f"{ratio:.3f}"))

        # Off, on, on, off: the path slows down as the message collection grows (an off/off
        # control showed 12% between the slots of off, on, off, on), and this order cancels
        # a steady drift.
        limiter_rows = []
        for method in ("POST", "GET"):
            runs: dict[str, list[LoadResult]] = {"off": [], "on": []}
            for label in ("off", "on", "on", "off"):
                enabled = "true" if label == "on" else "false"
                server = start_server(
                    db, 2, Path(tmp), {**ROOMY_LIMITS, "SYNTERA_RATE_LIMITS_ENABLED": enabled}
                )
                try:
                    widget = widget_script(server.base_url, token, agents[0], Path(tmp), method)
                    runs[label].append(
                        run_wrk(server, server.base_url, token, 32, args.duration, widget)
                    )
                finally:
                    server.process.terminate()
                    server.process.wait(30)
            for label, results in runs.items():
                limiter_rows.append(
                    row(f"widget {method} messages, limiter {label}", merged(results), "")
                )

    conditions = (
        f"{machine()}; `syntera serve --workers 2`, PostgreSQL, SecantusDB and Valkey embedded "
        f"on the same machine; wrk -t2 -c32 -d{args.duration}s on the same machine"
    )
    header = ["request", "req/s", "p50 ms", "p99 ms", "errors", "agent cache hit ratio"]
    report("agent_cache", f"{conditions}; {args.agents} agents read at random", header, cache_rows)
    for off_row, on_row in (limiter_rows[0:2], limiter_rows[2:4]):
        off, on = (float(r[1].replace(",", "")) for r in (off_row, on_row))
        on_row[5] = f"costs {(off - on) / off:.1%}"
    report("widget_rate_limiter", conditions, [*header[:5], "limiter cost"], limiter_rows)
    report(
        "limiter_check",
        f"{machine()}; Valkey embedded; one client, sequential, 3,000 calls each",
        ["call", "microseconds each"],
        [["both widget windows checked and counted (one EVALSHA)", f"{per_check:.0f}"],
         ["plain GET, for scale", f"{per_get:.0f}"]],
    )  # fmt: skip


if __name__ == "__main__":
    main()
