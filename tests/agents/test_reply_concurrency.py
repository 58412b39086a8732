"""Many chats at once, answered by two reply workers (as two processes would run them:
one claiming loop each, the answers as tasks): every visitor turn gets exactly one
reply, none lost, none doubled."""

from __future__ import annotations

import asyncio

import httpx

from syntera.workers import poll
from tests.agents.chats import AgentChat, MakeWorker, open_agent_chat, until
from tests.agents.standin import StandIn

CHATS = 6
TURNS = 4


async def test_concurrent_chats_get_exactly_one_reply_per_turn(
    http: httpx.AsyncClient, headers: dict[str, str], standin: StandIn, make_worker: MakeWorker
) -> None:
    standin.reset(first_token_delay_s=0.05)
    # A cap that lets the six chats of one company be answered at once.
    workers = [make_worker(reply_company_concurrency=CHATS) for _ in range(2)]
    stop = asyncio.Event()
    loops = [asyncio.ensure_future(poll("reply", w.run_spawning, stop, 0.05)) for w in workers]
    chats = [await open_agent_chat(http, headers) for _ in range(CHATS)]

    async def talk(chat: AgentChat) -> None:
        for turn in range(TURNS):
            await chat.say(f"Question {turn}: how do refunds work?")

            async def answered(replies: int = turn + 1) -> bool:
                return (await chat.senders()).count("agent") == replies

            await until(answered, within=60)

    try:
        await asyncio.gather(*(talk(chat) for chat in chats))
        await asyncio.sleep(0.5)  # a doubled reply would be stored by now
    finally:
        stop.set()
        await asyncio.gather(*loops)
        for worker in workers:
            await worker.stop()
    for chat in chats:
        assert await chat.senders() == ["user", "agent"] * TURNS
    assert len(standin.requests) == CHATS * TURNS
