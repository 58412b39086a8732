"""Retention: old analytics events, long-archived conversations and the workers' long
finished jobs are deleted in batches (each batch its own short transaction, so a long
purge never holds locks long and an interrupted one is simply resumed by the next run)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

import psycopg
from bson import ObjectId

from syntera.config import Settings
from syntera.conversations.store import ConversationStore
from syntera.db.mongo import create_mongo_client

DELETE_EVENTS = """
DELETE FROM public.analytics_events
 WHERE id IN (SELECT id FROM public.analytics_events
               WHERE created_at < %(cutoff)s
               LIMIT %(batch)s)
"""

# The search index follows MongoDB: the rows of purged conversations, and of messages past
# SYNTERA_MESSAGE_RETENTION_DAYS (which MongoDB's TTL index removes by itself).
UNINDEX_CONVERSATIONS = """
DELETE FROM public.message_search
 WHERE company_id = %(company)s AND conversation_id = ANY (%(conversations)s)
"""
UNINDEX_EXPIRED = """
DELETE FROM public.message_search
 WHERE (company_id, id) IN (SELECT company_id, id FROM public.message_search
                             WHERE created_at < %(cutoff)s LIMIT %(batch)s)
"""

# Finished work of the workers (migration 031's indexes). A reply that used tokens stays
# through its month: the company's monthly budget sums them (conversations/replies.py).
DELETE_FINISHED_FREE_REPLIES = """
DELETE FROM syntera.agent_replies
 WHERE (company_id, id) IN (SELECT company_id, id FROM syntera.agent_replies
                             WHERE status IN ('done', 'failed') AND tokens_used = 0
                               AND finished_at < %(cutoff)s LIMIT %(batch)s)
"""
DELETE_FINISHED_PAID_REPLIES = """
DELETE FROM syntera.agent_replies
 WHERE (company_id, id) IN (SELECT company_id, id FROM syntera.agent_replies
                             WHERE status IN ('done', 'failed') AND tokens_used > 0
                               AND finished_at < %(cutoff)s LIMIT %(batch)s)
"""
DELETE_FINISHED_INSIGHT_JOBS = """
DELETE FROM syntera.insight_jobs
 WHERE (company_id, id) IN (SELECT company_id, id FROM syntera.insight_jobs
                             WHERE status IN ('done', 'failed')
                               AND finished_at < %(cutoff)s LIMIT %(batch)s)
"""

Report = Callable[[str], None]


def purge_events(url: str, older_than: timedelta, batch: int = 10_000) -> int:
    """Delete analytics events created before now - ``older_than``; how many."""
    return _delete_before(url, DELETE_EVENTS, datetime.now(UTC) - older_than, batch)


def unindex_expired_messages(url: str, older_than: timedelta, batch: int = 10_000) -> int:
    """Delete the search index's rows of messages created before now - ``older_than``
    (expired from MongoDB by its TTL index); how many."""
    return _delete_before(url, UNINDEX_EXPIRED, datetime.now(UTC) - older_than, batch)


def purge_finished_work(
    url: str, older_than: timedelta, batch: int = 10_000, now: datetime | None = None
) -> tuple[int, int]:
    """Delete the agent replies and insight jobs finished (done or failed) before
    ``now`` - ``older_than``, but for replies that used tokens this month (UTC), which the
    company's budget counts; how many of each."""
    now = now or datetime.now(UTC)
    cutoff = now - older_than
    month = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    replies = _delete_before(url, DELETE_FINISHED_FREE_REPLIES, cutoff, batch)
    replies += _delete_before(url, DELETE_FINISHED_PAID_REPLIES, min(cutoff, month), batch)
    return replies, _delete_before(url, DELETE_FINISHED_INSIGHT_JOBS, cutoff, batch)


def _delete_before(url: str, statement: str, cutoff: datetime, batch: int) -> int:
    """Run ``statement`` (a DELETE of at most ``batch`` rows older than ``cutoff``) until
    it deletes a short batch, each batch its own transaction; how many rows in all."""
    deleted = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            count = conn.execute(statement, {"cutoff": cutoff, "batch": batch}).rowcount
            deleted += count
            if count < batch:
                return deleted


def _unindex(url: str, company_id: UUID, conversations: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(UNINDEX_CONVERSATIONS, {"company": company_id, "conversations": conversations})


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
            removed: list[ObjectId] = []
            counts = await store.purge_archived(company_id, cutoff, removed=removed)
            if removed:
                await asyncio.to_thread(_unindex, url, company_id, [str(i) for i in removed])
            if any(counts):
                purged[company_id] = counts
                report(f"company {company_id}: {counts[0]} conversations, {counts[1]} messages")
    finally:
        await client.close()
    return purged
