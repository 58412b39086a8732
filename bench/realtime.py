"""Live events: delivery latency and fan-out at 1,000 concurrent subscribers.

    python -m bench.realtime [--companies 100] [--subscribers 1000] [--rate 200]
                             [--duration 20] [--workers 2]

On an embedded stack of its own: ``syntera serve --workers 2`` (two API processes, so
events cross processes through Redis), 100 companies with one conversation each, and
``--subscribers`` streams of ``GET /v1/events`` spread evenly over the companies, held by
a separate client process (raw asyncio sockets, so the client is cheap). A poster sends
``POST /v1/conversations/{id}/messages`` at a steady rate, round-robin over the
companies; every subscriber of the company must receive each message once.

Figures:

* delivery latency from the POST's answer to the event's arrival at each subscriber,
  p50/p95/p99 (an event that arrives before the answer counts as 0 ms: it is published
  after commit, before the answer is sent), and from the POST's start;
* the same through bare Redis Pub/Sub in the same run (the anchor: one PUBLISH per
  message, the same number of subscriber connections and the same fan-out, read by
  the same client process) — the floor this design builds on;
* the most messages/s delivered with p99 under 100 ms, stepping the rate up;
* memory per idle stream: the API processes' resident memory with the streams open and
  idle, minus before they were opened, divided by the streams;
* events lost (expected deliveries minus received; must be 0).

Published anchor: Supabase Realtime broadcast, p50 6 ms / p95 28 ms / p99 213 ms
(32,000 users on a multi-node cluster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
import psycopg
import redis.asyncio as aioredis

from bench.api import access_token, start_server
from bench.common import ROOMY_LIMITS, bench_database, machine, report, summarize
from bench.rls import generate

SUPABASE = {"p50": 6.0, "p95": 28.0, "p99": 213.0}
GOAL_P99_MS = 100.0
GOAL_IDLE_KIB = 20.0


# ---- the subscriber process -------------------------------------------------------------


async def _event_stream(
    host: str, port: int, token: str, arrivals: list[Any], ready: Any, opening: asyncio.Semaphore
) -> None:
    """One SSE subscriber over a raw socket: records (message id, arrival time, the
    event's publication time). Streams open 50 at a time, as clients arriving do."""
    async with opening:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET /v1/events?types=message.created HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace") + (await reader.read(400)).decode())
        size = int((await reader.readline()).strip(), 16)
        await reader.readexactly(size + 2)  # the retry hint: the stream is live
    ready()
    while True:  # chunked transfer encoding: one chunk per frame
        size = int((await reader.readline()).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        at = time.time()
        start = chunk.find(b"\ndata: ")
        if start >= 0:
            envelope = orjson.loads(chunk[start + 7 : chunk.index(b"\n", start + 7)])
            published = datetime.fromisoformat(envelope["at"]).timestamp()
            arrivals.append((envelope["data"]["id"], at, published))


async def _pubsub_subscriber(url: str, channel: str, arrivals: list[Any], ready: Any) -> None:
    """One bare Redis Pub/Sub subscriber (the anchor), on its own connection."""
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    ready()
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        if message is not None:
            message_id, _, published = message["data"].decode().partition(" ")
            arrivals.append((message_id, time.time(), float(published)))


async def _subscribers(config: dict[str, Any]) -> None:
    arrivals: list[Any] = []
    opened = 0

    def ready() -> None:
        nonlocal opened
        opened += 1

    if config["mode"] == "events":
        opening = asyncio.Semaphore(50)
        tasks = [
            asyncio.create_task(
                _event_stream(config["host"], config["port"], token, arrivals, ready, opening)
            )
            for token in config["tokens"]
        ]
    else:
        tasks = [
            asyncio.create_task(_pubsub_subscriber(config["redis_url"], channel, arrivals, ready))
            for channel in config["channels"]
        ]
    while opened < len(tasks):
        failed = [task for task in tasks if task.done()]
        if failed:
            failed[0].result()
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.to_thread(Path(config["output"]).write_bytes, orjson.dumps(arrivals))
    print("done", flush=True)
    os._exit(0)


# ---- the driver -------------------------------------------------------------------------


@dataclass
class Subscribers:
    process: subprocess.Popen[str]
    output: Path

    @classmethod
    def start(cls, config: dict[str, Any]) -> Subscribers:
        output = Path(tempfile.mkstemp(suffix=".json")[1])
        # The configuration (tokens among it) goes in a file, not on a command line.
        config_file = Path(tempfile.mkstemp(suffix=".json")[1])
        config_file.write_text(json.dumps({**config, "output": str(output)}))
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.realtime", "--subscriber", str(config_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the subscribers did not start: {line!r}")
        return cls(process, output)

    def collect(self) -> dict[str, list[tuple[float, float]]]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        self.process.stdout.readline()
        self.process.wait(timeout=30)
        by_message: dict[str, list[tuple[float, float]]] = {}
        for message_id, at, published in orjson.loads(self.output.read_bytes()):
            by_message.setdefault(message_id, []).append((at, published))
        self.output.unlink()
        return by_message


@dataclass
class Sent:
    started: float
    answered: float


async def paced(
    rate: float, duration_s: float, start: Callable[[int], Coroutine[Any, Any, None]]
) -> None:
    """Start ``start(i)`` at a steady ``rate`` for ``duration_s``, then wait for all."""
    tasks = []
    begin = time.monotonic()
    for i in range(int(rate * duration_s)):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(start(i)))
    await asyncio.gather(*tasks)


class RawClient:
    """Keep-alive HTTP/1.1 connections over raw asyncio streams: the poster must not be
    the bottleneck (httpx costs about a millisecond of CPU per request)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def post(
        self, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str,
        token: str, body: bytes,
    ) -> tuple[int, bytes]:  # fmt: skip
        reader, writer = stream
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return status, await reader.readexactly(length)


async def post_messages(
    base_url: str, targets: list[tuple[str, str]], rate: float, duration_s: float
) -> dict[str, Sent]:
    """POST messages at a steady ``rate`` (round-robin over (token, conversation)) over
    up to 64 keep-alive connections."""
    host, port = base_url.removeprefix("http://").split(":")
    client = RawClient(host, int(port))
    # (connection, when last used): uvicorn closes a keep-alive connection idle for 5 s,
    # so one idle for 3 s is replaced before use rather than found closed.
    idle = [(await client.connect(), time.monotonic()) for _ in range(64)]
    sent: dict[str, Sent] = {}
    body = orjson.dumps({"sender_type": "user", "content": "Is this in stock?"})
    waiting = asyncio.Condition()

    async def one(token: str, conversation_id: str) -> None:
        async with waiting:
            await waiting.wait_for(lambda: bool(idle))
            stream, used = idle.pop()
        if time.monotonic() - used > 3:
            stream[1].close()
            stream = await client.connect()
        started = time.time()
        status, answer = await client.post(
            stream, f"/v1/conversations/{conversation_id}/messages", token, body
        )
        answered = time.time()
        async with waiting:
            idle.append((stream, time.monotonic()))
            waiting.notify()
        if status != 201:
            raise RuntimeError(f"{status} {answer[:300]!r}")
        sent[orjson.loads(answer)["id"]] = Sent(started, answered)

    await paced(rate, duration_s, lambda i: one(*targets[i % len(targets)]))
    for (_, writer), _ in idle:
        writer.close()
    return sent


async def publish_raw(
    url: str, channels: list[str], rate: float, duration_s: float
) -> dict[str, Sent]:
    """The anchor's poster: one PUBLISH per message at the same steady rate."""
    sent: dict[str, Sent] = {}
    client = aioredis.Redis.from_url(url)

    async def one(channel: str) -> None:
        message_id = uuid.uuid4().hex
        started = time.time()
        await client.publish(channel, f"{message_id} {started}")
        sent[message_id] = Sent(started, time.time())

    await paced(rate, duration_s, lambda i: one(channels[i % len(channels)]))
    await client.aclose()
    return sent


@dataclass(frozen=True)
class Delivery:
    rate: float
    p50: float
    p95: float
    p99: float
    after_answer_p99: float
    post_p99: float
    lost: int
    delivered: int


def deliveries(
    sent: dict[str, Sent], arrivals: dict[str, list[tuple[float, float]]], fan_out: int,
    rate: float,
) -> Delivery:  # fmt: skip
    """Latency from the event's publication (its ``at``, stamped by the API just before
    the commit) to its arrival; and after the POST's answer (0 when the event came
    first); and the POSTs' own latency."""
    latencies, after_answer = [], []
    lost = 0
    for message_id, times in sent.items():
        got = arrivals.get(message_id, [])
        lost += max(0, fan_out - len(got))
        for at, published in got:
            latencies.append(max(0.0, (at - published) * 1000))
            after_answer.append(max(0.0, (at - times.answered) * 1000))
    timing = summarize(latencies)
    posts = summarize([(t.answered - t.started) * 1000 for t in sent.values()])
    return Delivery(
        rate, timing.median_ms, timing.p95_ms, timing.p99_ms,
        summarize(after_answer).p99_ms, posts.p99_ms, lost, len(latencies),
    )  # fmt: skip


def api_memory_bytes(pid: int) -> int:
    """Resident memory of the API's worker processes (not the supervisor)."""
    parent = psutil.Process(pid)
    return sum(child.memory_info().rss for child in parent.children(recursive=True))


def seed(base_url: str, owner_ids: list[uuid.UUID]) -> list[tuple[str, str]]:
    """An agent and a conversation per company: (owner's token, conversation id)."""
    targets = []
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for owner_id in owner_ids:
            token = access_token(owner_id)
            headers = {"Authorization": f"Bearer {token}"}
            agent = http.post(
                "/v1/agents", headers=headers,
                json={"name": "Bench agent", "system_prompt": "You help."},
            )  # fmt: skip
            agent.raise_for_status()
            conversation = http.post(
                "/v1/conversations", headers=headers, json={"agent_id": agent.json()["id"]}
            )
            conversation.raise_for_status()
            targets.append((token, conversation.json()["id"]))
    return targets


def row(name: str, d: Delivery, anchor: Delivery | None) -> list[str]:
    ratio = f"{d.p99 / anchor.p99:.1f}x" if anchor and anchor.p99 > 0 else "-"
    return [
        name, f"{d.rate:.0f}", str(d.delivered), f"{d.p50:.1f}", f"{d.p95:.1f}", f"{d.p99:.1f}",
        f"{d.after_answer_p99:.1f}", f"{d.post_p99:.1f}", str(d.lost), ratio,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200, help="messages/s")
    parser.add_argument("--duration", type=float, default=20, help="seconds per load")
    parser.add_argument("--step-duration", type=float, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--subscriber", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        config_file = Path(args.subscriber)
        config = json.loads(config_file.read_text())
        config_file.unlink()
        asyncio.run(_subscribers(config))
        return

    fan_out = args.subscribers // args.companies
    with bench_database(services=("postgres", "mongodb", "redis")) as db:
        generate(db, contacts=args.companies, companies=args.companies)
        with psycopg.connect(db.owner_url) as conn:
            owners = [r[0] for r in conn.execute("SELECT owner_id FROM public.companies")]
        env = {
            **ROOMY_LIMITS,
            "SYNTERA_EVENTS_STREAMS_PER_USER": str(fan_out + 10),
            "SYNTERA_EVENTS_STREAMS_PER_COMPANY": str(fan_out + 10),
        }
        data_dir = Path(tempfile.mkdtemp(prefix="syntera-bench-realtime-"))
        server = start_server(db, args.workers, data_dir, env)
        try:
            targets = seed(server.base_url, owners)
            host, port = server.base_url.removeprefix("http://").split(":")
            tokens = [token for token, _ in targets for _ in range(fan_out)]
            idle_before = api_memory_bytes(server.process.pid)
            subscribers = Subscribers.start(
                {"mode": "events", "host": host, "port": int(port), "tokens": tokens}
            )
            time.sleep(3)  # settle: the streams are open and idle
            idle_after = api_memory_bytes(server.process.pid)
            steady = asyncio.run(post_messages(server.base_url, targets, args.rate, args.duration))
            steps: list[tuple[float, dict[str, Sent]]] = []
            for factor in (1.5, 2, 3, 4, 6, 8):
                rate = args.rate * factor
                began = time.monotonic()
                sent = asyncio.run(
                    post_messages(server.base_url, targets, rate, args.step_duration)
                )
                steps.append((rate, sent))
                achieved = len(sent) / (time.monotonic() - began)
                print(f"step {rate:.0f} msg/s: posted at {achieved:.0f} msg/s", flush=True)
                if achieved < 0.9 * rate:
                    break  # the API cannot take more posts: the rate is not the events'
            time.sleep(2)  # the last events drain
            arrivals = subscribers.collect()
        finally:
            server.process.terminate()
            server.process.wait(timeout=30)

        channels = [f"bench:{i % args.companies}" for i in range(args.subscribers)]
        raw = Subscribers.start(
            {"mode": "pubsub", "redis_url": db.stack.redis_url, "channels": channels}
        )
        raw_sent = asyncio.run(
            publish_raw(db.stack.redis_url, channels[: args.companies], args.rate, args.duration)
        )
        time.sleep(1)
        raw_arrivals = raw.collect()

    anchor = deliveries(raw_sent, raw_arrivals, fan_out, args.rate)
    ours = deliveries(steady, arrivals, fan_out, args.rate)
    stepped = [deliveries(sent, arrivals, fan_out, rate) for rate, sent in steps]
    best = max([d for d in [ours, *stepped] if d.p99 <= GOAL_P99_MS and d.lost == 0] or [ours],
               key=lambda d: d.rate)  # fmt: skip
    idle_kib = (idle_after - idle_before) / 1024 / args.subscribers
    rows = [
        row(f"Syntera SSE, steady {args.rate:.0f} msg/s", ours, anchor),
        row("anchor: bare Redis Pub/Sub, same fan-out and rate", anchor, None),
        *(row(f"Syntera SSE, step {d.rate:.0f} msg/s", d, anchor) for d in stepped),
        [
            "Supabase Realtime broadcast (published)",
            "-",
            "-",
            f"{SUPABASE['p50']:.0f}",
            f"{SUPABASE['p95']:.0f}",
            f"{SUPABASE['p99']:.0f}",
            "-",
            "-",
            "-",
            "-",
        ],
    ]
    report(
        "realtime_delivery",
        f"{machine()}; {args.workers} API processes, {args.subscribers} subscribers over "
        f"{args.companies} companies ({fan_out} each), PostgreSQL, MongoDB-wire, Valkey, "
        f"the poster and the subscriber process on the same cores; {args.duration:.0f} s "
        f"steady, {args.step_duration:.0f} s per step",
        [
            "load",
            "msg/s",
            "deliveries",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p99 after the POST's answer",
            "POST p99 ms",
            "lost",
            "p99 vs anchor",
        ],
        rows,
    )
    report(
        "realtime_capacity",
        f"{machine()}; goal p99 <= {GOAL_P99_MS:.0f} ms, 0 lost; <= {GOAL_IDLE_KIB:.0f} KiB "
        "per idle stream",
        ["figure", "value", "goal"],
        [
            [
                "most msg/s with p99 under 100 ms and 0 lost",
                f"{best.rate:.0f} ({best.rate * fan_out:.0f} deliveries/s)",
                f"p99 {best.p99:.1f} ms",
            ],
            ["memory per idle stream (KiB)", f"{idle_kib:.1f}", f"<= {GOAL_IDLE_KIB:.0f}"],
            ["events lost at the steady rate", str(ours.lost), "0"],
        ],
    )


if __name__ == "__main__":
    main()
