"""Conversations as the API serves them: checks against PostgreSQL (the agent and contact
must be the company's), the MongoDB store, and the analytics events the platform records.

Order of writes: the analytics event is inserted into the request's PostgreSQL transaction
first (with the document id chosen beforehand), then the document is written to MongoDB,
then the transaction commits. A MongoDB failure therefore rolls the event back; the one
window left (MongoDB acknowledged, the commit then failed) leaves a document without its
event, never an event without its document.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal
from uuid import UUID

from bson import ObjectId, json_util
from bson.json_util import JSONMode, JSONOptions

from syntera.agents.service import AGENTS
from syntera.analytics.service import EVENTS
from syntera.cache import CACHE_VERSION
from syntera.conversations import figures, search
from syntera.conversations.assignment import route_to_people
from syntera.conversations.schemas import (
    ChannelStats,
    Conversation,
    ConversationCreate,
    ConversationStats,
    ConversationUpdate,
    Message,
    MessageCreate,
    ModelStats,
    SenderStats,
    Thread,
)
from syntera.conversations.store import ConversationStore, Direction, Slice
from syntera.crm.service import CONTACTS
from syntera.db.mongo import Document
from syntera.db.redis import tenant_key
from syntera.errors import Conflict, Forbidden, field_error, not_found
from syntera.events.model import Event, EventType
from syntera.kit.pagination import Cursor, Page
from syntera.kit.resources import check_reference
from syntera.unit_of_work import TenantTransaction


def object_id(text: str, what: str) -> ObjectId:
    """The ObjectId in a path; a malformed one is simply not found."""
    if not ObjectId.is_valid(text):
        raise not_found(what)
    return ObjectId(text)


def conversation_out(document: Document) -> Conversation:
    return Conversation.model_validate({**document, "id": str(document["_id"])})


def message_out(document: Document) -> Message:
    return Message.model_validate({**document, "id": str(document["_id"])})


def publish(tx: TenantTransaction, event_type: EventType, *objects: Conversation | Message) -> None:
    """Live events about these objects (as the REST API returns them), after commit."""
    if tx.events is None:
        return
    tx.publish_after_commit(*(
        Event.new(
            event_type, tx.company_id,
            item.id if isinstance(item, Conversation) else item.conversation_id,
            item.model_dump(mode="json"),
        )
        for item in objects
    ))  # fmt: skip


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
    tx: TenantTransaction,
    event_type: str,
    conversation: Document,
    properties: dict[str, Any] | None = None,
) -> None:
    """An analytics_events row about the conversation, in the request's transaction
    (sent with its COMMIT: nothing reads it back)."""
    query, params = EVENTS.table.insert_statement(
        tx.company_id,
        {
            "event_type": event_type,
            "agent_id": conversation.get("agent_id"),
            "contact_id": conversation.get("contact_id"),
            "user_id": tx.user_id,
            "conversation_id": str(conversation["_id"]),
            "properties": properties or {},
        },
        returning=False,
    )
    await tx.write_with_commit(query, params)


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


def conversation_cache_keys(company_id: UUID, conversation_id: ObjectId) -> list[str]:
    """Every Redis key caching the conversation (for an erasure to remove)."""
    return [
        _header_entry(company_id, conversation_id),
        _newest_page_entry(company_id, conversation_id),
        *(_generation(company_id, conversation_id, part) for part in (HEADER, MESSAGES)),
    ]


def invalidate_cached(tx: TenantTransaction, conversation_id: ObjectId, *parts: str) -> None:
    """These parts (HEADER, MESSAGES) of the conversation changed: their cached copies
    are stale once the transaction commits."""
    tx.invalidate_after_commit(
        *(_generation(tx.company_id, conversation_id, part) for part in parts)
    )


async def _cached(
    tx: TenantTransaction,
    part: str,
    entry: str,
    conversation_id: ObjectId,
    ttl_s: int,
    load: Callable[[], Awaitable[Any]],
) -> Any:
    """``load()`` through the cache; values travel as canonical extended JSON, so
    ObjectIds and dates come back as they were."""
    if tx.cache is None:
        return await load()

    async def load_text() -> str | None:
        value = await load()
        return None if value is None else json_util.dumps(value, json_options=_BSON)

    text = await tx.cache.read(
        part, entry, _generation(tx.company_id, conversation_id, part), ttl_s, load_text
    )
    return None if text is None else json_util.loads(text, json_options=_BSON)


async def access_conversation(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str
) -> Document:
    """The caller's company's conversation, or 404 (also for another company's)."""
    oid = object_id(conversation_id, "Conversation")
    document: Document | None = await _cached(
        tx, HEADER, _header_entry(tx.company_id, oid), oid,
        conversation_ttl_s(tx), lambda: store.get_conversation(tx.company_id, oid),
    )  # fmt: skip
    if document is None:
        raise not_found("Conversation")
    return document


def conversation_ttl_s(tx: TenantTransaction) -> int:
    return tx.cache.ttl.conversation_s if tx.cache is not None else 0


def messages_ttl_s(tx: TenantTransaction) -> int:
    return tx.cache.ttl.messages_s if tx.cache is not None else 0


async def start(
    tx: TenantTransaction, store: ConversationStore, body: ConversationCreate
) -> Conversation:
    """Start a conversation with one of the company's agents."""
    await check_reference(tx, AGENTS, body.agent_id, "agent_id")
    await check_reference(tx, CONTACTS, body.contact_id, "contact_id")
    conversation_id = ObjectId()
    await record_event(
        tx,
        "conversation.started",
        {"_id": conversation_id, "agent_id": body.agent_id, "contact_id": body.contact_id},
        {"channel": body.channel},
    )
    document = await store.start(
        tx.company_id,
        conversation_id=conversation_id,
        agent_id=body.agent_id,
        channel=body.channel,
        contact_id=body.contact_id,
        user_id=tx.user_id,
        tags=body.tags,
        metadata=body.metadata,
    )
    conversation = conversation_out(document)
    publish(tx, "conversation.started", conversation)
    return conversation


def _published(
    tx: TenantTransaction, event_type: EventType, changed: Document | None
) -> Conversation:
    """The conversation as a change left it (not found if it was gone), published as
    ``event_type``."""
    if changed is None:
        raise not_found("Conversation")
    conversation = conversation_out(changed)
    publish(tx, event_type, conversation)
    return conversation


async def end(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str
) -> Conversation:
    """End an active conversation (an ended or archived one is returned unchanged)."""
    current = await access_conversation(tx, store, conversation_id)
    if current["status"] != "active":
        return conversation_out(current)
    await record_event(tx, "conversation.ended", current)
    await request_insight(tx, "summarize", current["_id"])
    invalidate_cached(tx, current["_id"], HEADER)
    ended = await store.end(tx.company_id, current["_id"])
    return _published(tx, "conversation.ended", ended)


async def archive(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str
) -> Conversation:
    current = await access_conversation(tx, store, conversation_id)
    invalidate_cached(tx, current["_id"], HEADER)
    archived = await store.archive(tx.company_id, current["_id"])
    return _published(tx, "conversation.archived", archived)


async def update(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str, body: ConversationUpdate
) -> Conversation:
    current = await access_conversation(tx, store, conversation_id)
    changes = body.changes()
    if "contact_id" in changes:
        await check_reference(tx, CONTACTS, body.contact_id, "contact_id")
        changes["contact_id"] = str(body.contact_id) if body.contact_id else None
    for field in ("tags", "metadata"):
        if field in changes and changes[field] is None:
            raise field_error(field, "may not be null")
    invalidate_cached(tx, current["_id"], HEADER)
    updated = await store.update(tx.company_id, current["_id"], changes)
    if "contact_id" in changes:
        await search.follow_contact(tx, str(current["_id"]), changes["contact_id"])
    return _published(tx, "conversation.updated", updated)


def _check_threads(conversation: Document, messages: list[MessageCreate]) -> None:
    known = {thread["id"] for thread in conversation.get("threads", [])}
    for index, message in enumerate(messages):
        if message.thread_id is not None and message.thread_id not in known:
            raise field_error(
                "thread_id" if len(messages) == 1 else f"messages.{index}.thread_id",
                "is not a thread of this conversation",
            )


async def append(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    messages: list[MessageCreate],
    *,
    record: bool = True,
    handoff_phrases: Sequence[str] = (),
) -> list[Message]:
    """Add messages to a conversation that has not ended. ``record``: a message from the
    customer (sender ``user``) records a ``message.received`` event and, in a conversation
    in the agent's hands, asks the agent to answer (or passes the conversation to people
    when the visitor's words hold one of ``handoff_phrases``, or a teammate wrote); an
    import does neither."""
    conversation = await access_conversation(tx, store, conversation_id)
    if conversation["status"] != "active":
        raise Conflict(f"the conversation is {conversation['status']}")
    _check_threads(conversation, messages)
    values = [message.model_dump(exclude_none=True) for message in messages]
    ids = [ObjectId() for _ in values]
    # Thread counts are part of the header; the newest page always changes.
    threaded = any(message.thread_id is not None for message in messages)
    invalidate_cached(tx, conversation["_id"], MESSAGES, *([HEADER] if threaded else []))
    author = {"sender_id": str(tx.user_id)} if tx.user_id is not None else {}
    documents = await store.append(
        tx.company_id,
        conversation["_id"],
        [{**value, **author, "_id": oid} for value, oid in zip(values, ids, strict=True)],
        reader=tx.user_id,
        known=conversation.get(figures.FIGURES) or {},
    )
    tx.undo_if_rolled_back(partial(_take_back, tx, store, conversation["_id"], documents))
    await search.index_messages(tx, conversation, documents)
    # After the store, which refuses what it could not give back naming the client's field.
    if record:
        for message_id, message in zip(ids, messages, strict=True):
            if message.sender_type == "user":
                properties: dict[str, Any] = {"message_id": str(message_id)}
                if message.metadata.intent is not None:
                    properties["intent"] = message.metadata.intent
                await record_event(tx, "message.received", conversation, properties)
                if message.metadata.intent is None:
                    await request_insight(tx, "classify", conversation["_id"], message_id)
    if record and conversation.get("handled_by", "agent") == "agent":
        await _agent_turn(tx, store, conversation, ids, messages, handoff_phrases)
    stored = [message_out(document) for document in documents]
    publish(tx, "message.created", *stored)
    return stored


# The reply job of a visitor's turn, recorded (or folded into the one waiting) with the
# message; nothing for a disabled agent. Sent with COMMIT: nothing reads it back.
REQUEST_REPLY = (
    b"SELECT private.request_agent_reply(%(company_id)s::uuid, %(conversation_id)s, "
    b"%(agent_id)s::uuid, %(message_id)s)"
)


# Insight work (syntera.insights.worker) recorded with the change that asks for it: a
# visitor's message to classify, a conversation to summarise. Sent with COMMIT.
REQUEST_INSIGHT = (
    b"SELECT private.request_insight(%(company_id)s::uuid, %(kind)s, %(conversation_id)s, "
    b"%(message_id)s)"
)


async def request_insight(
    tx: TenantTransaction, kind: str, conversation_id: ObjectId, message_id: ObjectId | None = None
) -> None:
    """Ask the insights worker to classify a visitor's message or summarise a conversation."""
    params = {"company_id": tx.company_id, "kind": kind, "conversation_id": str(conversation_id),
              "message_id": str(message_id) if message_id is not None else None}  # fmt: skip
    await tx.write_with_commit(REQUEST_INSIGHT, params)


HANDOFF_LINE = "I'm passing you to a member of our team, who will answer here shortly."


def asks_for_people(text: str, phrases: Sequence[str]) -> bool:
    """Whether the visitor's words hold one of the hand-off phrases (whole words, any
    case)."""
    lowered = text.lower()
    return any(re.search(rf"\b{re.escape(phrase)}\b", lowered) for phrase in phrases)


async def _agent_turn(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation: Document,
    ids: list[ObjectId],
    messages: list[MessageCreate],
    handoff_phrases: Sequence[str],
) -> None:
    """What new messages mean for a conversation in the agent's hands: a teammate's
    answer (a signed-in member writing as the agent; the system's key writing as the
    agent is the agent itself) takes it over; a visitor asking for a person is handed
    to people; any other visitor's message asks the agent for a reply."""
    oid = str(conversation["_id"])
    if tx.principal.role == "authenticated" and any(m.sender_type == "agent" for m in messages):
        await hand_off(tx, store, oid, "human", reason="a teammate replied")
        return
    visitor_text = "\n".join(m.content for m in messages if m.sender_type == "user")
    if visitor_text and asks_for_people(visitor_text, handoff_phrases):
        await hand_off(tx, store, oid, "human", HANDOFF_LINE, reason="the visitor asked")
        return
    await _request_reply(tx, conversation, ids, messages)


async def _request_reply(
    tx: TenantTransaction,
    conversation: Document,
    ids: list[ObjectId],
    messages: list[MessageCreate],
) -> None:
    """Ask the conversation's agent to answer the visitor's newest message."""
    visitor = [oid for oid, m in zip(ids, messages, strict=True) if m.sender_type == "user"]
    if not visitor:
        return
    params = {
        "company_id": tx.company_id,
        "conversation_id": str(conversation["_id"]),
        "agent_id": conversation["agent_id"],
        "message_id": str(visitor[-1]),
    }
    await tx.write_with_commit(REQUEST_REPLY, params)


async def append_reply(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation: Document,
    document: Document,
    *,
    kept: Document | None = None,
) -> Message:
    """Store an agent's (or the system's) message whose _id the caller chose, whole, in
    ``conversation`` (as the caller read it), and publish it; DuplicateKeyError if that
    _id is already stored (an earlier attempt). ``kept``: fields of the conversation
    set in the same write (the agent's own, which no client sets)."""
    conversation_id = conversation["_id"]
    invalidate_cached(tx, conversation_id, MESSAGES)
    known = conversation.get(figures.FIGURES) or {}
    documents = await store.append(
        tx.company_id, conversation_id, [document], known=known, kept=kept
    )
    tx.undo_if_rolled_back(partial(_take_back, tx, store, conversation_id, documents))
    if kept:  # as they were read, should the transaction not commit
        before = {field: conversation.get(field) for field in kept}
        tx.undo_if_rolled_back(partial(store.put_back, tx.company_id, conversation_id, before))
    await search.index_messages(tx, conversation, documents)
    message = message_out(documents[0])
    publish(tx, "message.created", message)
    return message


HandledBy = Literal["agent", "human"]


async def hand_off(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    to: HandledBy,
    line: str | None = None,
    *,
    reason: str = "a teammate asked",
) -> Conversation:
    """Put the conversation in the agent's or people's hands (``handled_by``), with
    ``line`` told to the visitor as a system message; ``conversation.updated`` after.
    Handed to people by the system (the visitor asked, the model failed), it is assigned
    or queued (``assignment.route_to_people``; a member's own hand-off needs neither)."""
    current = await access_conversation(tx, store, conversation_id)
    if current.get("handled_by", "agent") == to:
        return conversation_out(current)
    invalidate_cached(tx, current["_id"], HEADER)
    changed = await store.hand_to(tx.company_id, current["_id"], to)
    if line is not None and current["status"] == "active":
        system = {"sender_type": "system", "role": "system", "content": line}
        await append_reply(tx, store, current, system)
    if to == "human" and tx.principal.role == "service_role" and changed is not None:
        changed = await route_to_people(tx, store, changed, reason) or changed
    return _published(tx, "conversation.updated", changed)


async def _take_back(
    tx: TenantTransaction, store: ConversationStore, oid: ObjectId, documents: list[Document]
) -> None:
    """Undo an append whose transaction rolled back: the messages go, and a page read
    meanwhile (that may hold them) is no longer served from the cache."""
    await store.remove(tx.company_id, oid, documents)
    if tx.cache is not None:
        await tx.cache.invalidate(
            *(_generation(tx.company_id, oid, part) for part in (HEADER, MESSAGES))
        )


async def list_messages(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    *,
    thread_id: str | None,
    limit: int,
    cursor: Cursor | None,
    direction: Direction,
) -> Page[Message]:
    conversation = await access_conversation(tx, store, conversation_id)
    oid = conversation["_id"]

    async def load() -> Slice:
        return await store.list_messages(
            tx.company_id, oid,
            thread_id=thread_id, limit=limit, after=keyset(cursor), direction=direction,
        )  # fmt: skip

    if cursor is None and thread_id is None and direction == "backward" and limit == NEWEST_PAGE:
        # The newest page, which every chat view opens with, comes from the cache.
        async def load_document() -> Document:
            piece = await load()
            return {"documents": piece.documents, "has_more": piece.has_more}

        cached = await _cached(
            tx, MESSAGES, _newest_page_entry(tx.company_id, oid), oid,
            messages_ttl_s(tx), load_document,
        )  # fmt: skip
        piece = Slice(cached["documents"], cached["has_more"])
    else:
        piece = await load()
    return page_of(piece, message_out, "created_at")


async def add_thread(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str, title: str
) -> Thread:
    conversation = await access_conversation(tx, store, conversation_id)
    invalidate_cached(tx, conversation["_id"], HEADER)
    thread = await store.add_thread(tx.company_id, conversation["_id"], title)
    if thread is None:
        raise not_found("Conversation")
    await publish_header(tx, store, conversation["_id"])
    return Thread.model_validate(thread)


async def rename_thread(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    thread_id: str,
    title: str,
) -> Thread:
    conversation = await access_conversation(tx, store, conversation_id)
    invalidate_cached(tx, conversation["_id"], HEADER)
    thread = await store.rename_thread(tx.company_id, conversation["_id"], thread_id, title)
    if thread is None:
        raise not_found("Thread")
    await publish_header(tx, store, conversation["_id"])
    return Thread.model_validate(thread)


async def publish_header(tx: TenantTransaction, store: ConversationStore, oid: ObjectId) -> None:
    """``conversation.updated`` with the header as it now is (its threads changed)."""
    if tx.events is None:
        return
    current = await store.get_conversation(tx.company_id, oid)
    if current is not None:
        publish(tx, "conversation.updated", conversation_out(current))


async def react(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    message_id: str,
    emoji: str,
) -> Message:
    conversation = await access_conversation(tx, store, conversation_id)
    invalidate_cached(tx, conversation["_id"], MESSAGES)
    document = await store.react(
        tx.company_id,
        conversation["_id"],
        object_id(message_id, "Message"),
        emoji,
        tx.user_id,
    )
    if document is None:
        raise not_found("Message")
    message = message_out(document)
    publish(tx, "message.reaction", message)
    return message


async def mark_read(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str, message_id: str
) -> Message:
    if tx.user_id is None:
        raise Forbidden("read receipts are for signed-in users")
    conversation = await access_conversation(tx, store, conversation_id)
    invalidate_cached(tx, conversation["_id"], MESSAGES)
    document = await store.mark_read(
        tx.company_id, conversation["_id"], object_id(message_id, "Message"), tx.user_id
    )
    if document is None:
        raise not_found("Message")
    # The member's read position (the inbox's unread count) moves up to that message.
    position = await store.position_of(tx.company_id, conversation["_id"], document)
    await store.read_up_to(tx.company_id, conversation["_id"], tx.user_id, position)
    message = message_out(document)
    publish(tx, "message.read", message)
    return message


TypingBy = Literal["visitor", "member", "agent"]


def typing_limit_key(company_id: UUID, conversation_id: str, sender: str) -> str:
    """The rate-limit key of one sender's typing signals in one conversation; 404 for a
    path that names no conversation (it never becomes part of a key unchecked)."""
    oid = object_id(conversation_id, "Conversation")
    return tenant_key(company_id, "rate-typing", str(oid), sender)


async def typing(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    state: Literal["start", "stop"],
    by: TypingBy,
) -> None:
    """Tell the conversation's subscribers that someone started or stopped typing: an
    ephemeral event, never stored or replayed."""
    conversation = await access_conversation(tx, store, conversation_id)
    if conversation["status"] != "active":
        raise Conflict(f"the conversation is {conversation['status']}")
    data: dict[str, Any] = {"state": state, "by": by}
    if by == "member":
        data["user_id"] = str(tx.user_id)
    event = Event.new("typing", tx.company_id, str(conversation["_id"]), data)
    tx.publish_after_commit(event, stored=False)


async def statistics(
    tx: TenantTransaction, store: ConversationStore, since: datetime, group_by: str
) -> ConversationStats:
    groups = await store.conversation_stats(tx.company_id, since, group_by)
    senders = await store.message_stats(tx.company_id, since)
    models = await store.model_stats(tx.company_id, since)
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
        models=[
            ModelStats(
                model=model["_id"],
                messages=model["messages"],
                tokens_used=model["tokens_used"],
                average_response_time_ms=model["average_response_time_ms"],
            )
            for model in models
        ],
    )
