"""Retention: old analytics events and long-archived conversations are deleted in
batches (each batch its own short transaction, so a long purge never holds locks long and
an interrupted one is simply resumed by the next run)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg

from syntera.config import Settings
from syntera.conversations.store import ConversationStore
from syntera.db.mongo import create_mongo_client

DELETE_EVENTS = """
DELETE FROM public.analytics_events
 WHERE id IN (SELECT id FROM public.analytics_events
               WHERE created_at < %(cutoff)s
               LIMIT %(batch)s)
"""

Report = Callable[[str], None]


def purge_events(url: str, older_than: timedelta, batch: int = 10_000) -> int:
    """Delete analytics events created before now - ``older_than``; how many."""
    cutoff = datetime.now(UTC) - older_than
    deleted = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            count = conn.execute(DELETE_EVENTS, {"cutoff": cutoff, "batch": batch}).rowcount
            deleted += count
            if count < batch:
                return deleted


def _companies(url: str) -> list[UUID]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM public.companies")]


async def purge_archived_conversations(
    url: str, settings: Settings, mongodb_uri: str, older_than: timedelta, report: Report
) -> dict[UUID, tuple[int, int]]:
    """Delete conversations archived longer than ``older_than`` (and their messages),
    company by company (each named in the report); what was deleted where."""
    companies = await asyncio.to_thread(_companies, url)
    cutoff = datetime.now(UTC) - older_than
    client = create_mongo_client(settings, mongodb_uri)
    store = ConversationStore(client[settings.mongodb_db])
    purged: dict[UUID, tuple[int, int]] = {}
    try:
        for company_id in companies:
            counts = await store.purge_archived(company_id, cutoff)
            if any(counts):
                purged[company_id] = counts
                report(f"company {company_id}: {counts[0]} conversations, {counts[1]} messages")
    finally:
        await client.close()
    return purged
