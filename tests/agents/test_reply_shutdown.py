"""A reply worker told to stop claims nothing more, and gives back at once what it
claimed but had not started (instead of leaving it under a lease until that runs out)."""

from __future__ import annotations

import asyncio

import httpx
import psycopg

from syntera.workers import Worker, run_workers
from tests.agents.chats import ASK, AgentChat, MakeWorker, open_agent_chat, until
from tests.agents.standin import StandIn

JOBS = """
SELECT conversation_id, status, attempts, lease_token IS NULL AS released,
       lease_expires_at <= now() AS due
FROM syntera.agent_replies ORDER BY created_at
"""


async def test_a_job_claimed_but_not_started_is_released_when_the_worker_stops(
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker,
    owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    worker = make_worker()
    await agent_chat.say(ASK)
    assert await worker.run_spawning()  # claimed; its answer not yet begun
    await worker.stop()

    [(_, status, attempts, released, due)] = owner_conn.execute(JOBS).fetchall()
    assert (status, attempts, released, due) == ("running", 0, True, True)
    assert standin.requests == []
    claimed = await make_worker().claim()
    assert claimed is not None, "anyone's again at once, not after the lease"
    assert claimed.attempts == 1


async def test_a_stopping_worker_claims_nothing_more(
    http: httpx.AsyncClient, headers: dict[str, str], agent_chat: AgentChat,
    standin: StandIn, make_worker: MakeWorker, owner_conn: psycopg.Connection,
) -> None:  # fmt: skip
    # One slot, taken by an answer that takes a few seconds to write.
    standin.reset(deltas=["word "] * 8, delta_gap_s=0.4)
    worker = make_worker(reply_worker_concurrency=1)
    stop = asyncio.Event()
    replies = Worker("agent reply", worker.run_spawning, 0.05, finish=worker.stop,
                     halt=worker.halt)  # fmt: skip
    running = asyncio.ensure_future(run_workers([replies], "unused: no channel", stop))
    try:
        await agent_chat.say(ASK)

        async def asked() -> bool:
            return len(standin.requests) == 1

        await until(asked)
        second = await open_agent_chat(http, headers)
        await second.say(ASK)
        await asyncio.sleep(0.3)  # its claim waits for the slot
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)

    first_job, second_job = owner_conn.execute(JOBS).fetchall()
    assert second_job[1:3] == ("pending", 0), "the second visitor's job was never claimed"
    assert first_job[1] == "running"  # its answer was begun: left to its lease
    assert len(standin.requests) == 1
