"""A finished reply wakes the reply workers (every process's claiming loop: a NOTIFY
reaches them all) only when its company has a reply waiting, which its freed slot may
let through; not for nothing."""

from __future__ import annotations

import httpx
import psycopg

from syntera.conversations.replies import CHANNEL
from tests.agents.chats import ASK, AgentChat, MakeWorker, open_agent_chat
from tests.conftest import StackDatabase


def wake_ups(listener: psycopg.Connection) -> int:
    return sum(1 for _ in listener.notifies(timeout=0.5))


async def test_a_finished_reply_wakes_the_workers_only_for_waiting_work(
    http: httpx.AsyncClient, headers: dict[str, str], agent_chat: AgentChat,
    make_worker: MakeWorker, database: StackDatabase,
) -> None:  # fmt: skip
    worker = make_worker()
    other = await open_agent_chat(http, headers)
    await agent_chat.say(ASK)
    await other.say(ASK)
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
