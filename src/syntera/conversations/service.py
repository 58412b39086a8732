"""Conversations as the API serves them: checks against PostgreSQL (the agent and contact
must be the company's), the MongoDB store, and the analytics events the platform records.

Order of writes: the analytics event is inserted into the request's PostgreSQL transaction
first (with the document id chosen beforehand), then the document is written to MongoDB,
then the transaction commits. A MongoDB failure therefore rolls the event back; the one
window left (MongoDB acknowledged, the commit then failed) leaves a document without its
event, never an event without its document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from bson import ObjectId, json_util
from bson.json_util import JSONMode, JSONOptions

from syntera.agents.service import AGENTS
from syntera.analytics.service import EVENTS
from syntera.api.crud import check_reference
from syntera.api.deps import Tenant
from syntera.api.errors import Problem, field_error, not_found
from syntera.api.pagination import Cursor, Page
from syntera.cache import CACHE_VERSION
from syntera.conversations.schemas import (
    ChannelStats,
    Conversation,
    ConversationCreate,
    ConversationStats,
    ConversationUpdate,
    Message,
    MessageCreate,
    SenderStats,
    Thread,
)
from syntera.conversations.store import ConversationStore, Direction, Slice
from syntera.crm.service import CONTACTS
from syntera.db.mongo import Document
from syntera.db.redis import tenant_key


def object_id(text: str, what: str) -> ObjectId:
    """The ObjectId in a path; a malformed one is simply not found."""
    if not ObjectId.is_valid(text):
        raise not_found(what)
    return ObjectId(text)


def conversation_out(document: Document) -> Conversation:
    return Conversation.model_validate({**document, "id": str(document["_id"])})


def message_out(document: Document) -> Message:
    return Message.model_validate({**document, "id": str(document["_id"])})


def page_of(
    piece: Slice, convert: Any, time_field: str
) -> Page[Any]:  # the page type follows ``convert``
    next_cursor = None
    if piece.has_more and piece.documents:
        next_cursor = Cursor.after(piece.documents[-1], time_field, "_id").encode()
    return Page(data=[convert(d) for d in piece.documents], next_cursor=next_cursor)


def keyset(cursor: Cursor | None) -> tuple[datetime, ObjectId] | None:
    """A page cursor as a MongoDB keyset (time, ObjectId)."""
    if cursor is None:
        return None
    if not ObjectId.is_valid(cursor.id):
        raise field_error("cursor", "not a cursor returned by this API")
    return cursor.at, ObjectId(cursor.id)


async def record_event(
    tenant: Tenant,
    event_type: str,
    conversation: Document,
    properties: dict[str, Any] | None = None,
) -> None:
    """An analytics_events row about the conversation, in the request's transaction."""
    await EVENTS.table.insert(
        tenant.conn,
        tenant.company_id,
        {
            "event_type": event_type,
            "agent_id": conversation.get("agent_id"),
            "contact_id": conversation.get("contact_id"),
            "user_id": tenant.user_id,
            "conversation_id": str(conversation["_id"]),
            "properties": properties or {},
        },
    )


# Cache: a conversation's header and its newest page of messages, each under its own
# generation. A message post replaces the messages' generation only (and the header's
# when a thread's count moves), so the header that every post checks stays cached.
_BSON = JSONOptions(json_mode=JSONMode.CANONICAL, tz_aware=True, tzinfo=UTC)
NEWEST_PAGE = 50


HEADER, MESSAGES = "conversation", "messages"


def _generation(company_id: UUID, conversation_id: ObjectId, part: str) -> str:
    return tenant_key(company_id, "generation", part, str(conversation_id))


def _header_entry(company_id: UUID, conversation_id: ObjectId) -> str:
    return tenant_key(company_id, CACHE_VERSION, "conversation", str(conversation_id))


def _newest_page_entry(company_id: UUID, conversation_id: ObjectId) -> str:
    return tenant_key(company_id, CACHE_VERSION, "messages", str(conversation_id), "newest")


def changed(tenant: Tenant, conversation_id: ObjectId, *parts: str) -> None:
    """These parts (HEADER, MESSAGES) of the conversation changed: their cached copies
    are stale once the transaction commits."""
    tenant.invalidate_after_commit(
        *(_generation(tenant.company_id, conversation_id, part) for part in parts)
    )


async def _cached(
    tenant: Tenant,
    part: str,
    entry: str,
    conversation_id: ObjectId,
    ttl_s: int,
    load: Callable[[], Awaitable[Any]],
) -> Any:
    """``load()`` through the cache; values travel as canonical extended JSON, so
    ObjectIds and dates come back as they were."""
    if tenant.cache is None:
        return await load()

    async def load_text() -> str | None:
        value = await load()
        return None if value is None else json_util.dumps(value, json_options=_BSON)

    text = await tenant.cache.read(
        part, entry, _generation(tenant.company_id, conversation_id, part), ttl_s, load_text
    )
    return None if text is None else json_util.loads(text, json_options=_BSON)


async def access_conversation(
    tenant: Tenant, store: ConversationStore, conversation_id: str
) -> Document:
    """The caller's company's conversation, or 404 (also for another company's)."""
    oid = object_id(conversation_id, "Conversation")
    document: Document | None = await _cached(
        tenant, HEADER, _header_entry(tenant.company_id, oid), oid,
        conversation_ttl_s(tenant), lambda: store.get(tenant.company_id, oid),
    )  # fmt: skip
    if document is None:
        raise not_found("Conversation")
    return document


def conversation_ttl_s(tenant: Tenant) -> int:
    return tenant.cache.ttl.conversation_s if tenant.cache is not None else 0


def messages_ttl_s(tenant: Tenant) -> int:
    return tenant.cache.ttl.messages_s if tenant.cache is not None else 0


async def start(tenant: Tenant, store: ConversationStore, body: ConversationCreate) -> Conversation:
    """Start a conversation with one of the company's agents."""
    await check_reference(tenant, AGENTS, body.agent_id, "agent_id")
    await check_reference(tenant, CONTACTS, body.contact_id, "contact_id")
    conversation_id = ObjectId()
    await record_event(
        tenant,
        "conversation.started",
        {"_id": conversation_id, "agent_id": body.agent_id, "contact_id": body.contact_id},
        {"channel": body.channel},
    )
    document = await store.start(
        tenant.company_id,
        conversation_id=conversation_id,
        agent_id=body.agent_id,
        channel=body.channel,
        contact_id=body.contact_id,
        user_id=tenant.user_id,
        tags=body.tags,
        metadata=body.metadata,
    )
    return conversation_out(document)


async def end(tenant: Tenant, store: ConversationStore, conversation_id: str) -> Conversation:
    """End an active conversation (an ended or archived one is returned unchanged)."""
    current = await access_conversation(tenant, store, conversation_id)
    if current["status"] != "active":
        return conversation_out(current)
    await record_event(tenant, "conversation.ended", current)
    changed(tenant, current["_id"], HEADER)
    ended = await store.end(tenant.company_id, current["_id"])
    if ended is None:
        raise not_found("Conversation")
    return conversation_out(ended)


async def archive(tenant: Tenant, store: ConversationStore, conversation_id: str) -> Conversation:
    current = await access_conversation(tenant, store, conversation_id)
    changed(tenant, current["_id"], HEADER)
    archived = await store.archive(tenant.company_id, current["_id"])
    if archived is None:
        raise not_found("Conversation")
    return conversation_out(archived)


async def update(
    tenant: Tenant, store: ConversationStore, conversation_id: str, body: ConversationUpdate
) -> Conversation:
    current = await access_conversation(tenant, store, conversation_id)
    changes = body.changes()
    if "contact_id" in changes:
        await check_reference(tenant, CONTACTS, body.contact_id, "contact_id")
        changes["contact_id"] = str(body.contact_id) if body.contact_id else None
    for field in ("tags", "metadata"):
        if field in changes and changes[field] is None:
            raise field_error(field, "may not be null")
    changed(tenant, current["_id"], HEADER)
    updated = await store.update(tenant.company_id, current["_id"], changes)
    if updated is None:
        raise not_found("Conversation")
    return conversation_out(updated)


def _check_threads(conversation: Document, messages: list[MessageCreate]) -> None:
    known = {thread["id"] for thread in conversation.get("threads", [])}
    for index, message in enumerate(messages):
        if message.thread_id is not None and message.thread_id not in known:
            raise field_error(
                "thread_id" if len(messages) == 1 else f"messages.{index}.thread_id",
                "is not a thread of this conversation",
            )


async def append(
    tenant: Tenant,
    store: ConversationStore,
    conversation_id: str,
    messages: list[MessageCreate],
    *,
    record: bool = True,
) -> list[Message]:
    """Add messages to a conversation that has not ended. ``record``: a message from the
    customer (sender ``user``) records a ``message.received`` event; an import does not."""
    conversation = await access_conversation(tenant, store, conversation_id)
    if conversation["status"] != "active":
        raise Problem(409, "Conflict", f"the conversation is {conversation['status']}")
    _check_threads(conversation, messages)
    values = [message.model_dump(exclude_none=True) for message in messages]
    ids = [ObjectId() for _ in values]
    if record:
        for message_id, message in zip(ids, messages, strict=True):
            if message.sender_type == "user":
                properties: dict[str, Any] = {"message_id": str(message_id)}
                if message.metadata.intent is not None:
                    properties["intent"] = message.metadata.intent
                await record_event(tenant, "message.received", conversation, properties)
    # Thread counts are part of the header; the newest page always changes.
    threaded = any(message.thread_id is not None for message in messages)
    changed(tenant, conversation["_id"], MESSAGES, *([HEADER] if threaded else []))
    documents = await store.append(
        tenant.company_id,
        conversation["_id"],
        [{**value, "_id": message_id} for value, message_id in zip(values, ids, strict=True)],
    )
    return [message_out(document) for document in documents]


async def list_messages(
    tenant: Tenant,
    store: ConversationStore,
    conversation_id: str,
    *,
    thread_id: str | None,
    limit: int,
    cursor: Cursor | None,
    direction: Direction,
) -> Page[Message]:
    conversation = await access_conversation(tenant, store, conversation_id)
    oid = conversation["_id"]

    async def load() -> Slice:
        return await store.messages(
            tenant.company_id, oid,
            thread_id=thread_id, limit=limit, after=keyset(cursor), direction=direction,
        )  # fmt: skip

    if cursor is None and thread_id is None and direction == "backward" and limit == NEWEST_PAGE:
        # The newest page, which every chat view opens with, comes from the cache.
        async def load_document() -> Document:
            piece = await load()
            return {"documents": piece.documents, "has_more": piece.has_more}

        cached = await _cached(
            tenant, MESSAGES, _newest_page_entry(tenant.company_id, oid), oid,
            messages_ttl_s(tenant), load_document,
        )  # fmt: skip
        piece = Slice(cached["documents"], cached["has_more"])
    else:
        piece = await load()
    return page_of(piece, message_out, "created_at")


async def add_thread(
    tenant: Tenant, store: ConversationStore, conversation_id: str, title: str
) -> Thread:
    conversation = await access_conversation(tenant, store, conversation_id)
    changed(tenant, conversation["_id"], HEADER)
    thread = await store.add_thread(tenant.company_id, conversation["_id"], title)
    if thread is None:
        raise not_found("Conversation")
    return Thread.model_validate(thread)


async def rename_thread(
    tenant: Tenant, store: ConversationStore, conversation_id: str, thread_id: str, title: str
) -> Thread:
    conversation = await access_conversation(tenant, store, conversation_id)
    changed(tenant, conversation["_id"], HEADER)
    thread = await store.rename_thread(tenant.company_id, conversation["_id"], thread_id, title)
    if thread is None:
        raise not_found("Thread")
    return Thread.model_validate(thread)


async def react(
    tenant: Tenant, store: ConversationStore, conversation_id: str, message_id: str, emoji: str
) -> Message:
    conversation = await access_conversation(tenant, store, conversation_id)
    changed(tenant, conversation["_id"], MESSAGES)
    document = await store.react(
        tenant.company_id,
        conversation["_id"],
        object_id(message_id, "Message"),
        emoji,
        tenant.user_id,
    )
    if document is None:
        raise not_found("Message")
    return message_out(document)


async def mark_read(
    tenant: Tenant, store: ConversationStore, conversation_id: str, message_id: str
) -> Message:
    if tenant.user_id is None:
        raise Problem(403, "Forbidden", "read receipts are for signed-in users")
    conversation = await access_conversation(tenant, store, conversation_id)
    changed(tenant, conversation["_id"], MESSAGES)
    document = await store.mark_read(
        tenant.company_id, conversation["_id"], object_id(message_id, "Message"), tenant.user_id
    )
    if document is None:
        raise not_found("Message")
    return message_out(document)


async def statistics(
    tenant: Tenant, store: ConversationStore, since: datetime, group_by: str
) -> ConversationStats:
    groups = await store.conversation_stats(tenant.company_id, since, group_by)
    senders = await store.message_stats(tenant.company_id, since)
    return ConversationStats(
        since=since,
        group_by=group_by,  # type: ignore[arg-type]  # validated by the route's Literal
        groups=[
            ChannelStats(
                key=str(group["_id"]),
                conversations=group["conversations"],
                average_duration_s=(
                    group["average_duration_ms"] / 1000
                    if group["average_duration_ms"] is not None
                    else None
                ),
            )
            for group in groups
        ],
        messages=[
            SenderStats(
                sender_type=sender["_id"],
                messages=sender["messages"],
                average_response_time_ms=sender["average_response_time_ms"],
            )
            for sender in senders
        ],
    )
