"""A finished reply wakes the reply workers (every process's claiming loop: a NOTIFY
reaches them all) only when its company has a reply waiting, which its freed slot may
let through; not for nothing."""

from __future__ import annotations

import httpx
import psycopg

from syntera.conversations.replies import CHANNEL, ReplyWorker
from tests.agents.chats import ASK, AgentChat, MakeWorker, open_agent_chat
from tests.conftest import StackDatabase


def wake_ups(listener: psycopg.Connection) -> int:
    return sum(1 for _ in listener.notifies(timeout=0.5))


async def two_visitors_asking(
    http: httpx.AsyncClient, headers: dict[str, str], agent_chat: AgentChat,
    make_worker: MakeWorker,
) -> tuple[ReplyWorker, AgentChat]:  # fmt: skip
    """A worker, and two chats whose visitors have asked (``agent_chat``, then the other)."""
    worker = make_worker()
    other = await open_agent_chat(http, headers)
    await agent_chat.say(ASK)
    await other.say(ASK)
    return worker, other


async def test_a_finished_reply_wakes_the_workers_only_for_waiting_work(
    http: httpx.AsyncClient, headers: dict[str, str], agent_chat: AgentChat,
    make_worker: MakeWorker, database: StackDatabase,
) -> None:  # fmt: skip
    worker, _ = await two_visitors_asking(http, headers, agent_chat, make_worker)
    first = await worker.claim()
    assert first is not None
    with psycopg.connect(database.owner_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        await worker.carry_out(first)
        assert wake_ups(listener) == 1, "the other visitor's reply waits: wake the workers"

        second = await worker.claim()
        assert second is not None
        await worker.carry_out(second)
        assert wake_ups(listener) == 0, "nothing waits: no one is woken"


async def test_a_finished_reply_wakes_the_workers_for_one_whose_worker_died(
    http: httpx.AsyncClient, headers: dict[str, str], agent_chat: AgentChat,
    make_worker: MakeWorker, database: StackDatabase,
) -> None:  # fmt: skip
    # The other reply was claimed by a worker that died: once its lease has run out it
    # is anyone's, and a slot freed by a finished reply must not leave it to the poll.
    worker, other = await two_visitors_asking(http, headers, agent_chat, make_worker)
    first, dead = await worker.claim(), await worker.claim()
    assert first is not None
    assert dead is not None
    with psycopg.connect(database.owner_url, autocommit=True) as listener:
        listener.execute(
            "UPDATE syntera.agent_replies SET lease_expires_at = now() - interval '1 second'"
            " WHERE company_id = %s AND id = %s",
            (dead.company_id, dead.id),
        )
        listener.execute(f"LISTEN {CHANNEL}")
        await worker.carry_out(first)
        assert wake_ups(listener) == 1, "the dead worker's reply waits: wake the workers"
        again = await worker.claim()
        assert again is not None
        assert again.id == dead.id
        await worker.carry_out(again)
        assert wake_ups(listener) == 0, "nothing waits: no one is woken"
    assert await other.senders() == ["user", "agent"]
