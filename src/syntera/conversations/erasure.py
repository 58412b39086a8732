"""What the conversations domain keeps outside PostgreSQL, and how it leaves: the purge
steps of a deleted company and of an erased contact, and a contact's conversations in
their export. ``syntera.purges.registry`` lists these beside the other stores' steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

from pydantic import BaseModel

from syntera.conversations.service import conversation_cache_keys, conversation_out, message_out
from syntera.conversations.store import ConversationStore
from syntera.db.redis import RedisClient
from syntera.events.bus import stream_key

MESSAGE_BATCH = 1000


async def purge_company(store: ConversationStore, company_id: UUID) -> dict[str, int]:
    """Every conversation and message of a deleted company; how many went."""
    conversations, messages = await store.purge_company(company_id)
    return {"conversations": conversations, "messages": messages}


async def erase_contact(
    store: ConversationStore, redis: RedisClient, company_id: UUID, contact_id: UUID
) -> dict[str, int]:
    """An erased contact's conversations and messages, the caches of those
    conversations, and the company's event stream, which holds copies of their messages
    (a resume from before the erasure then gets ``reset``, as after any lost position)."""
    ids, messages = await store.purge_contact(company_id, contact_id)
    keys = [key for oid in ids for key in conversation_cache_keys(company_id, oid)]
    if keys:  # one company: one hash tag, one call
        await redis.unlink(*keys, stream_key(company_id))
    return {"conversations": len(ids), "messages": messages}


def _json(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


async def export_contact(
    store: ConversationStore, company_id: UUID, contact_id: UUID
) -> AsyncIterator[bytes]:
    """A contact's conversations, each with every message, as the elements of a JSON
    array (without its brackets), streamed from MongoDB in batches."""
    first = True
    async for conversation in store.conversations_of_contact(company_id, contact_id):
        header = _json(conversation_out(conversation))
        yield (b"" if first else b",") + header[:-1] + b',"messages":['
        first = False
        batch: list[bytes] = []
        started = False
        async for message in store.all_messages(company_id, conversation["_id"]):
            batch.append(_json(message_out(message)))
            if len(batch) >= MESSAGE_BATCH:
                yield (b"," if started else b"") + b",".join(batch)
                started, batch = True, []
        if batch:
            yield (b"," if started else b"") + b",".join(batch)
        yield b"]}"
