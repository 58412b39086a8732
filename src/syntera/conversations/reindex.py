"""Rebuild the message search index from MongoDB, the source of truth.

``syntera maintenance reindex-messages`` runs this, for one company or all. Each company's
rows are replaced in batches: the conversations are read from MongoDB one by one, their
messages indexed (``private.index_messages``, an upsert) one batch per transaction, and
rows that name no message MongoDB still holds are deleted at the end (a message removed
while the index was not kept, or a purge that ran before the index existed). A rerun
does the same work again and ends in the same state, so an interrupted rebuild is simply
started again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.conversations.search import INDEX, index_rows, messages_json
from syntera.conversations.store import ConversationStore
from syntera.db.mongo import create_mongo_client
from syntera.db.postgres import TenantConnection, create_api_pool
from syntera.embedded import StackUrls
from syntera.unit_of_work import system_transaction

BATCH = 2000
Progress = Callable[[str, int, int | None], None]  # (step, done, total), as cli.common's bars

COMPANIES = "SELECT id FROM public.companies ORDER BY created_at, id"
STARTED = "SELECT now() AS started"
# Rows of the company the rebuild did not write (nor a post meanwhile): their message is
# gone from MongoDB.
STALE = """
DELETE FROM public.message_search
 WHERE company_id = %(company)s AND indexed_at < %(started)s
"""


async def companies(pool: AsyncConnectionPool[TenantConnection]) -> list[UUID]:
    """Every company of the deployment."""
    async with system_transaction(pool) as conn:
        return [row["id"] for row in await (await conn.execute(COMPANIES)).fetchall()]


async def reindex_company(
    pool: AsyncConnectionPool[TenantConnection],
    store: ConversationStore,
    company_id: UUID,
    progress: Progress,
) -> int:
    """Index every message of the company again; how many were indexed."""
    async with system_transaction(pool) as conn:
        row = await (await conn.execute(STARTED)).fetchone()
    assert row is not None  # SELECT now() returns a row
    started = row["started"]
    total = await store.count_messages(company_id)
    step = f"company {company_id}"
    progress(step, 0, total)
    done = 0
    batch: list[dict[str, Any]] = []

    async def flush() -> None:
        nonlocal batch, done
        if batch:
            async with system_transaction(pool) as conn:
                await conn.execute(INDEX, {"company": company_id, "messages": messages_json(batch)})
            done += len(batch)
            batch = []
            progress(step, done, total)

    # Conversation by conversation: each read names the messages' shard key.
    async for conversation in store.conversation_headers(company_id):
        async for message in store.all_messages(company_id, conversation["_id"]):
            batch += index_rows(conversation, [message])
            if len(batch) >= BATCH:
                await flush()
    await flush()
    async with system_transaction(pool) as conn:
        await conn.execute(STALE, {"company": company_id, "started": started})
    progress(step, done, max(total, done))
    return done


async def reindex(
    settings: Settings,
    urls: StackUrls,
    company_id: UUID | None,
    progress: Progress,
) -> dict[UUID, int]:
    """Rebuild the index of one company (or of every company): messages indexed per
    company. ValueError for a company that does not exist."""
    client = create_mongo_client(settings, urls.mongodb_uri)
    store = ConversationStore(client[settings.mongodb_db])
    try:
        async with create_api_pool(
            settings, urls.api_database_url, system_conninfo=urls.system_url()
        ) as pool:
            known = await companies(pool)
            if company_id is not None and company_id not in known:
                raise ValueError(f"there is no company {company_id}")
            chosen = [company_id] if company_id is not None else known
            return {c: await reindex_company(pool, store, c, progress) for c in chosen}
    finally:
        await client.close()
