"""The runtime of every background worker: the poll loop, LISTEN/NOTIFY wake-ups, and
starting and stopping them all.

Each worker claims jobs under leases (``syntera.db.leases``) in system transactions
(``syntera.db.postgres.system_transaction``) and says, per round, whether it found work.
Workers run inside each API process (``syntera serve``) or alone (``syntera worker``);
both start them through ``run_workers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from syntera.auth.mail import CHANNEL as MAIL_CHANNEL
from syntera.auth.mail import MailWorker
from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.embedded import StackUrls
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.processing import DocumentWorker
from syntera.purges.worker import CHANNEL as PURGES_CHANNEL
from syntera.purges.worker import PurgeWorker
from syntera.workflows.engine import CHANNEL, WorkflowWorker

log = logging.getLogger(__name__)

LISTEN_RETRY_S = 5


async def poll(
    name: str,
    run_once: Callable[[], Awaitable[bool]],
    stop: asyncio.Event,
    poll_s: float,
    wake: asyncio.Event | None = None,
) -> None:
    """Call ``run_once`` while it finds work; when it finds none, wait ``poll_s`` seconds
    or until ``wake`` is set (a NOTIFY) or ``stop`` is. An error (the database went away)
    is logged and waited out like an idle round."""
    signal = wake or stop
    while not stop.is_set():
        try:
            worked = await run_once()
        except Exception:
            log.exception("%s worker: a round failed; trying again", name)
            worked = False
        if not worked:
            if wake is not None:
                wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), poll_s)


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


async def run_workers(
    pool: AsyncConnectionPool[TenantConnection],
    listen_url: str,
    settings: Settings,
    kb: KnowledgeBase,
    stop: asyncio.Event,
    *,
    documents: int,
    workflows: int,
    purger: PurgeWorker | None = None,
    mailer: MailWorker | None = None,
    sampler: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Run ``documents`` document workers and ``workflows`` workflow runners (none for
    a count of 0), and ``purger``, ``mailer`` and the size ``sampler`` when given, until
    ``stop`` is set; work in flight is left under its lease."""
    async with httpx.AsyncClient(follow_redirects=False) as http:
        jobs: list[Coroutine[Any, Any, None]] = []
        if purger is not None:
            purge_wake = asyncio.Event()
            jobs.append(listen(listen_url, PURGES_CHANNEL, purge_wake, stop))
            jobs.append(poll("purge", purger.run_once, stop, settings.kb_poll_s, purge_wake))
        if mailer is not None:
            mail_wake = asyncio.Event()
            jobs.append(listen(listen_url, MAIL_CHANNEL, mail_wake, stop))
            jobs.append(poll("mail", mailer.run_once, stop, settings.kb_poll_s, mail_wake))
        if sampler is not None:
            jobs.append(poll("size sampler", sampler, stop, settings.size_sample_s))
        if documents:
            document_worker = DocumentWorker(pool, kb)
            jobs += [
                poll("knowledge-base", document_worker.run_once, stop, settings.kb_poll_s)
                for _ in range(documents)
            ]
        if workflows:
            wake = asyncio.Event()
            workflow_worker = WorkflowWorker(pool, settings, http)
            jobs.append(listen(listen_url, CHANNEL, wake, stop))
            jobs += [
                poll("workflow", workflow_worker.run_once, stop, settings.workflow_poll_s, wake)
                for _ in range(workflows)
            ]
        await asyncio.gather(*jobs)
