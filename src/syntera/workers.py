"""The runtime of every background worker: the poll loop, LISTEN/NOTIFY wake-ups, and
starting and stopping them all.

Each worker claims jobs under leases (``syntera.db.leases``) in system transactions
(``syntera.unit_of_work.system_transaction``) and says, per round, whether it found work.
Workers run inside each API process (``syntera serve``) or alone (``syntera worker``);
both build them with ``syntera.app.build_workers`` and start them through ``run_workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from syntera.config import Settings
from syntera.embedded import StackUrls

log = logging.getLogger(__name__)

LISTEN_RETRY_S = 5


async def poll(
    name: str,
    run_once: Callable[[], Awaitable[bool]],
    stop: asyncio.Event,
    poll_s: float,
    wake: asyncio.Event | None = None,
    settle_s: float = 0,
) -> None:
    """Call ``run_once`` while it finds work; when it finds none, wait ``poll_s`` seconds
    or until ``wake`` is set (a NOTIFY) or ``stop`` is, then ``settle_s`` more after a
    NOTIFY (background work: the work that arrives meanwhile is done in the same round,
    and the foreground work recorded beside it goes first). An error (the database went
    away) is logged and waited out like an idle round."""
    signal = wake or stop
    woken = False
    while not stop.is_set():
        if woken and settle_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settle_s)
            if stop.is_set():
                return
        # Cleared before the round, not after it: a NOTIFY that comes while the round
        # looks for work (too late for it to see) then ends the wait at once.
        if wake is not None:
            wake.clear()
        try:
            worked = await run_once()
        except Exception:
            log.exception("%s worker: a round failed; trying again", name)
            worked = False
        woken = False
        if not worked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), poll_s)
                woken = wake is not None


async def listen(conninfo: str, channel: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set ``wake`` whenever a NOTIFY on ``channel`` arrives (delivered at commit). A
    dedicated connection: LISTEN needs a session, which a pooled one does not keep."""
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                while not stop.is_set():
                    async for _ in conn.notifies(timeout=1.0, stop_after=1):
                        wake.set()
        except psycopg.Error:
            log.warning("LISTEN %s failed; polling until it is back", channel)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LISTEN_RETRY_S)


def listen_url(settings: Settings, urls: StackUrls) -> str:
    """Where the workers LISTEN: a direct connection, since LISTEN needs a session that
    a transaction pooler in front of the API's URL would not keep."""
    return settings.worker_database_url or urls.database_url


@dataclass(frozen=True)
class Worker:
    """One kind of background work: a round that says whether it found work, how long to
    wait when it found none, the NOTIFY channel that ends the wait early, and how many
    copies run at once."""

    name: str
    run_once: Callable[[], Awaitable[bool]]
    poll_s: float
    channel: str | None = None
    copies: int = 1
    # After a NOTIFY, how long the worker waits before its round (see ``poll``).
    settle_s: float = 0
    # Called once the loops have stopped: ends work a round left running in tasks.
    finish: Callable[[], Awaitable[None]] | None = None
    # Called as soon as the workers are told to stop: a round claims nothing more.
    halt: Callable[[], None] | None = None


async def run_workers(workers: Sequence[Worker], listen_url: str, stop: asyncio.Event) -> None:
    """Run every worker (its copies sharing one LISTEN on its channel) until ``stop`` is
    set: then each is halted (it claims nothing more), its loops end, and it is finished
    (work in flight stopped, left under its lease or released)."""

    async def halt_when_stopped() -> None:
        await stop.wait()
        for worker in workers:
            if worker.halt is not None:
                worker.halt()

    jobs: list[Coroutine[Any, Any, None]] = [halt_when_stopped()]
    for worker in workers:
        wake = None
        if worker.channel is not None:
            wake = asyncio.Event()
            jobs.append(listen(listen_url, worker.channel, wake, stop))
        jobs += [
            poll(worker.name, worker.run_once, stop, worker.poll_s, wake, worker.settle_s)
            for _ in range(worker.copies)
        ]
    try:
        await asyncio.gather(*jobs)
    finally:
        for worker in workers:
            if worker.finish is not None:
                await worker.finish()
