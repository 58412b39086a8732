"""Acknowledged means durable, under the mixed load: each store SIGKILLed in turn while
contacts are browsed and created, deals moved, messages posted and the knowledge base
searched; then every write the API acknowledged is looked for.

    python -m bench.durability [--connections 32] [--before 5] [--after 2]

On a throw-away embedded stack, ``syntera serve --workers 2 --no-worker`` serves one
company (2,000 contacts, 400 deals, 100 conversations, a knowledge base of real MiniLM
chunks). For each of MongoDB (SecantusDB), PostgreSQL and Valkey: the load runs
``--before`` seconds, the store is sent SIGKILL, the load goes on ``--after`` seconds
(answers are then mostly 503s), stops, the store is started again on its data and the
API answers ``/readyz``. Then:

- every message answered 201 must be in MongoDB with its analytics event in PostgreSQL;
- every contact answered 201 must be in PostgreSQL;
- every deal must hold the stage of its last move answered 200 (or of a later move whose
  answer was lost: an error or a timeout does not say whether it was committed).

The anchor, in the same run: the MongoDB kill repeated with ``w: 1, j: false``
(``SYNTERA_MONGODB_WRITE_CONCERN=1``, ``SYNTERA_MONGODB_JOURNAL=false``), which shows
whether the count can find a loss at all, and what the default write concern buys.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from bson import ObjectId
from pymongo import MongoClient
from tests.kb.corpus import QUESTIONS

from bench.api import ROOMY_LIMITS, access_token, start_server
from bench.common import BenchDatabase, bench_database, machine, report
from bench.mixed import STAGES, conversations, crm_rows, knowledge_base
from bench.rls import generate, pick_tenant
from syntera.config import Settings
from syntera.embedded import EmbeddedStack

VICTIMS = ("mongodb", "postgres", "redis")


@dataclass
class Acks:
    """What the API acknowledged during one kill, and what it answered."""

    messages: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    # deal id -> the stages it may hold: the last acknowledged one, then later attempts.
    deals: dict[str, list[str]] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)  # "2xx", "503", "timeout", ...
    moves: int = 0  # deal moves answered 200

    def answered(self, what: str) -> None:
        self.answers[what] = self.answers.get(what, 0) + 1


@dataclass(frozen=True)
class Fixture:
    base_url: str
    headers: dict[str, str]
    contacts: list[str]
    deals: list[str]
    chats: list[str]


async def load(fixture: Fixture, connections: int, stop: asyncio.Event, acks: Acks) -> None:
    """The mixed load: a quarter of ``connections`` each browsing, creating contacts and
    moving deals, posting messages, searching; writes recorded in ``acks``."""
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(
        base_url=fixture.base_url, headers=fixture.headers, timeout=5, limits=limits
    ) as http:

        async def call(method: str, path: str, body: object = None) -> httpx.Response | None:
            try:
                answer = await http.request(method, path, json=body)
            except httpx.HTTPError as error:
                acks.answered(type(error).__name__)
                await asyncio.sleep(0.05)
                return None
            acks.answered(f"{answer.status_code // 100}xx" if answer.status_code < 500
                          else str(answer.status_code))  # fmt: skip
            if answer.status_code >= 500:
                await asyncio.sleep(0.05)
            return answer

        async def browse() -> None:
            while not stop.is_set():
                await call("GET", f"/v1/contacts/{random.choice(fixture.contacts)}")
                await call("GET", "/v1/contacts?limit=20")

        async def create_and_move(deals: list[str]) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                body = {"email": f"new-{uuid.uuid4().hex}@example.com", "first_name": "New"}
                created = await call("POST", "/v1/contacts", body)
                if created is not None and created.status_code == 201:
                    acks.contacts.append(created.json()["id"])
                deal, stage = deals[n % len(deals)], random.choice(STAGES)
                moved = await call("PATCH", f"/v1/deals/{deal}", {"stage": stage})
                if moved is not None and moved.status_code == 200:
                    acks.deals[deal] = [stage]
                    acks.moves += 1
                else:  # perhaps committed, perhaps not
                    acks.deals.setdefault(deal, []).append(stage)

        async def post() -> None:
            while not stop.is_set():
                chat = random.choice(fixture.chats)
                body = {"sender_type": "user", "content": "Is this in stock?"}
                answer = await call("POST", f"/v1/conversations/{chat}/messages", body)
                if answer is not None and answer.status_code == 201:
                    acks.messages.append(answer.json()["id"])

        async def search() -> None:
            while not stop.is_set():
                question = random.choice(QUESTIONS)[0]
                await call("POST", "/v1/kb/search", {"query": question, "top_k": 5})

        quarter = max(1, connections // 4)
        # Each mover owns its deals, so a deal's moves are sequential and the last
        # acknowledged one is well defined.
        shares = [fixture.deals[i::quarter] for i in range(quarter)]
        await asyncio.gather(
            *(browse() for _ in range(quarter)),
            *(create_and_move(share) for share in shares),
            *(post() for _ in range(quarter)),
            *(search() for _ in range(quarter)),
        )


def missing(db: BenchDatabase, settings: Settings, company: uuid.UUID, acks: Acks) -> dict:
    """Acknowledged writes not found, per kind."""
    client: MongoClient[dict] = MongoClient(db.stack.mongodb_uri)
    with client:
        found = client[settings.mongodb_db]["messages"].count_documents(
            {"company_id": str(company), "_id": {"$in": [ObjectId(i) for i in acks.messages]}}
        )
    with psycopg.connect(db.owner_url) as conn:
        events = conn.execute(
            "SELECT count(*) FROM public.analytics_events WHERE company_id = %s"
            " AND event_type = 'message.received' AND properties ->> 'message_id' = ANY(%s)",
            (company, acks.messages),
        ).fetchone()
        contacts = conn.execute(
            "SELECT count(*) FROM public.contacts WHERE id = ANY(%s::uuid[])", (acks.contacts,)
        ).fetchone()
        stages = dict(
            conn.execute(  # type: ignore[arg-type]
                "SELECT id::text, stage FROM public.deals WHERE id = ANY(%s::uuid[])",
                (list(acks.deals),),
            ).fetchall()
        )
    wrong_deals = sum(1 for deal, allowed in acks.deals.items() if stages.get(deal) not in allowed)
    return {
        "messages": len(acks.messages) - found,
        "message events": len(acks.messages) - (events[0] if events else 0),
        "contacts": len(acks.contacts) - (contacts[0] if contacts else 0),
        "deal moves": wrong_deals,
    }


async def kill_under_load(
    stack: EmbeddedStack,
    fixture: Fixture,
    victim: str,
    stages: dict[str, str],
    args: argparse.Namespace,
) -> tuple[Acks, float]:
    """One kill of ``victim`` under the load (``stages``: each deal's stage before); the
    acknowledgements and the seconds the API took to be ready again once the store was
    restarted."""
    acks = Acks(deals={deal: [stage] for deal, stage in stages.items()})
    stop = asyncio.Event()
    running = asyncio.create_task(load(fixture, args.connections, stop, acks))
    await asyncio.sleep(args.before)
    pid = stack.pid_of(victim)
    assert pid is not None, victim
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(args.after)
    stop.set()
    await running
    started = time.perf_counter()
    await asyncio.to_thread(stack.start, (victim,))
    async with httpx.AsyncClient(base_url=fixture.base_url, timeout=5) as http:
        for _ in range(600):
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    return acks, time.perf_counter() - started


def prepare(db: BenchDatabase) -> tuple[uuid.UUID, str, list[str], list[str], str]:
    generate(db, 2000, 1)
    company, owner = pick_tenant(db)
    contacts, deals, agent = crm_rows(db, company, 400)
    asyncio.run(knowledge_base(db, company))
    return company, access_token(owner), contacts, deals, agent


def run_variant(
    db: BenchDatabase,
    stack: EmbeddedStack,
    prepared: tuple[uuid.UUID, str, list[str], list[str], str],
    victims: tuple[str, ...],
    extra: dict[str, str],
    args: argparse.Namespace,
) -> list[tuple[str, Acks, float, dict]]:
    company, token, contacts, deals, agent = prepared
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(db, 2, Path(tmp), {**ROOMY_LIMITS, **extra})
        try:
            chats = conversations(server.base_url, token, agent, 100)
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
                for question, _ in QUESTIONS * 2:  # every process has its model loaded
                    http.post("/v1/kb/search", json={"query": question}).raise_for_status()
            fixture = Fixture(server.base_url, headers, contacts, deals, chats)
            for victim in victims:
                with psycopg.connect(db.owner_url) as conn:
                    now = conn.execute(
                        "SELECT id::text, stage FROM public.deals WHERE company_id = %s",
                        (company,),
                    ).fetchall()
                acks, ready_s = asyncio.run(
                    kill_under_load(stack, fixture, victim, dict(now), args)
                )
                results.append((victim, acks, ready_s, missing(db, Settings(), company, acks)))
        finally:
            server.process.terminate()
            server.process.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=2.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="syntera-bench-durability-", dir="/tmp"))
    stack = EmbeddedStack(folder)
    try:
        with bench_database(folder, services=("mongodb", "redis")) as db:
            prepared = prepare(db)
            durable = run_variant(db, stack, prepared, VICTIMS, {}, args)
            fast = run_variant(db, stack, prepared, ("mongodb",), {
                "SYNTERA_MONGODB_WRITE_CONCERN": "1", "SYNTERA_MONGODB_JOURNAL": "false",
            }, args)  # fmt: skip
    finally:
        stack.stop()
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for label, results in (("w: majority, j: true", durable), ("anchor: w: 1, j: false", fast)):
        for victim, acks, ready_s, lost in results:
            acknowledged = (f"{len(acks.messages):,} messages, {len(acks.contacts):,} contacts, "
                            f"{acks.moves:,} deal moves")  # fmt: skip
            answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(acks.answers.items()))
            lost_text = ", ".join(f"{k} {v}" for k, v in lost.items())
            rows.append([f"{victim} ({label})", acknowledged, lost_text, answers,
                         f"{ready_s:.1f} s"])  # fmt: skip
    report(
        "store_kills",
        f"{machine()}; `syntera serve --workers 2`, {args.connections} connections of mixed "
        f"load (browse, contact create + deal move, message post, kb search); SIGKILL after "
        f"{args.before:.0f} s, load {args.after:.0f} s more, restart",
        ["store killed (write concern)", "acknowledged", "lost after restart",
         "answers during the run", "ready again"],
        rows,
    )  # fmt: skip


if __name__ == "__main__":
    main()
