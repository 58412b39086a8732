"""The team's inbox: conversations as a teammate reads them (who is talking, what they
last said, how much the reader has not read, who has it), assignment, presence, private
notes, and the visitor's rating.

Where each figure comes from, so that a first page costs three short reads whatever the
company's size: ``last_message``, ``last_activity_at`` and ``message_count`` are kept on
the conversation document by the write that stores a message (``ConversationStore.append``);
each member's read position is kept on the conversation too (``reads``), so
``unread_count`` is a subtraction on the page already read; the names (contact, agent,
teammate) are one PostgreSQL read for the whole page, so a renamed contact shows at once.

Notes live in MongoDB beside their conversation (``conversation_notes``): they are about
one conversation and leave with it (a contact's erasure, a company's purge and the
retention of archived conversations reach them in the same steps), and reading them
needs no second store. They are published as ``note.*`` events, which the widget's
stream never carries (``syntera.events.model.WIDGET_TYPES``), and the agent's prompt is
built from messages only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from bson import ObjectId

from syntera.conversations.assignment import check_assignee, members, notify_assignee
from syntera.conversations.schemas import (
    Conversation,
    InboxView,
    MemberPresence,
    Note,
    RatingCreate,
)
from syntera.conversations.search import visitor_name
from syntera.conversations.service import (
    HEADER,
    access_conversation,
    conversation_out,
    invalidate_cached,
    keyset,
    object_id,
    publish,
    record_event,
)
from syntera.conversations.store import ConversationStore, Slice, now
from syntera.db.mongo import Document
from syntera.db.redis import RedisClient
from syntera.errors import Conflict, not_found
from syntera.events.model import Event, EventType
from syntera.events.presence import online_members
from syntera.kit.pagination import Cursor, Page
from syntera.unit_of_work import TenantTransaction

# The names a page of conversations shows, in one statement: the contacts', the agents'
# and the teammates' (public.users.name: their full name, else their email).
NAMES = """
SELECT 'contact' AS kind, id,
       coalesce(nullif(btrim(concat_ws(' ', first_name, last_name)), ''), email, phone) AS name
  FROM public.contacts WHERE company_id = %(company_id)s AND id = ANY(%(contacts)s)
UNION ALL
SELECT 'agent', id, name FROM public.agent_configs
 WHERE company_id = %(company_id)s AND id = ANY(%(agents)s)
UNION ALL
SELECT 'user', id, name FROM public.users
 WHERE company_id = %(company_id)s AND id = ANY(%(users)s)
"""

UNKNOWN_TEAMMATE = "A former teammate"


@dataclass
class Names:
    """Display names of contacts, agents and teammates, by id."""

    contacts: dict[str, str] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)

    def contact(self, conversation: Document) -> str:
        contact_id = conversation.get("contact_id")
        if contact_id is not None and contact_id in self.contacts:
            return self.contacts[contact_id]
        return "Contact" if contact_id is not None else visitor_name(str(conversation["_id"]))

    def sender(self, conversation: Document, message: Document) -> str:
        """Who wrote ``message``: the contact, the teammate, the agent, or the system."""
        sender_type = message["sender_type"]
        if sender_type == "user":
            return self.contact(conversation)
        sender_id = message.get("sender_id")
        if sender_id is not None:
            return self.users.get(sender_id, UNKNOWN_TEAMMATE)
        if sender_type == "agent":
            return self.agents.get(conversation["agent_id"], "Agent")
        return "System"


async def names_of(
    tx: TenantTransaction,
    conversations: list[Document],
    extra_users: list[str] = (),  # type: ignore[assignment]
) -> Names:
    """The names that ``conversations`` (and their last messages) show, in one read."""
    contacts = {c["contact_id"] for c in conversations if c.get("contact_id")}
    agents = {c["agent_id"] for c in conversations}
    users = set(extra_users or [])
    for conversation in conversations:
        last = conversation.get("last_message") or {}
        if last.get("sender_id"):
            users.add(last["sender_id"])
    names = Names()
    if not (contacts or agents or users):
        return names
    params = {
        "company_id": tx.company_id,
        "contacts": [UUID(c) for c in contacts],
        "agents": [UUID(a) for a in agents],
        "users": [UUID(u) for u in users],
    }
    for row in await (await tx.conn.execute(NAMES, params)).fetchall():
        kind = {"contact": names.contacts, "agent": names.agents, "user": names.users}
        kind[row["kind"]][str(row["id"])] = row["name"] or ""
    return names


def _described(conversation: Document, names: Names, reader: UUID | None) -> Conversation:
    out = conversation_out(conversation)
    out.contact_name = names.contact(conversation)
    if out.last_message is not None and conversation.get("last_message"):
        out.last_message.sender_name = names.sender(conversation, conversation["last_message"])
    if reader is not None:
        read = (conversation.get("reads") or {}).get(str(reader), 0)
        out.unread_count = max(0, conversation.get("message_count", 0) - read)
    return out


async def describe(tx: TenantTransaction, conversations: list[Document]) -> list[Conversation]:
    """The conversations as the reader's inbox shows them: names, previews and the
    reader's unread counts (none for the service key, which reads nothing)."""
    names = await names_of(tx, conversations)
    return [_described(c, names, tx.user_id) for c in conversations]


async def read_conversation(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str
) -> Conversation:
    """One conversation, as the inbox shows it (read from the store: the cached header
    serves checks, while the preview moves with every message)."""
    oid = object_id(conversation_id, "Conversation")
    document = await store.get_conversation(tx.company_id, oid)
    if document is None:
        raise not_found("Conversation")
    [conversation] = await describe(tx, [document])
    return conversation


def view_filters(view: InboxView | None, user_id: UUID | None) -> dict[str, Any]:
    """The store's filters of an inbox view."""
    if view == "mine":
        if user_id is None:
            return {"assignee": UUID(int=0)}  # the system is nobody's assignee
        return {"assignee": user_id}
    if view == "unassigned":
        return {"assignee": None}
    if view == "needs_person":
        return {"assignee": None, "handled_by": "human"}
    return {}


async def page_of_inbox(
    tx: TenantTransaction, store: ConversationStore, piece: Slice
) -> Page[Conversation]:
    """A page of the list, described, with the cursor of the next one."""
    next_cursor = None
    if piece.has_more and piece.documents:
        next_cursor = Cursor.after(piece.documents[-1], "last_activity_at", "_id").encode()
    return Page(data=await describe(tx, piece.documents), next_cursor=next_cursor)


async def publish_described(tx: TenantTransaction, document: Document) -> Conversation:
    """``conversation.updated`` with the conversation described (names and preview; an
    unread count is each reader's own, so the event carries none); the caller's view."""
    names = await names_of(tx, [document])
    publish(tx, "conversation.updated", _described(document, names, None))
    return _described(document, names, tx.user_id)


async def assign(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    assignee_id: UUID | None,
) -> Conversation:
    """Give the conversation to a member (None: to nobody); ``conversation.updated`` and a
    notification to the new assignee. 422 for anyone who is not a member now."""
    current = await access_conversation(tx, store, conversation_id)
    if assignee_id is not None:
        await check_assignee(tx, assignee_id)
    invalidate_cached(tx, current["_id"], HEADER)
    changed = await store.assign(tx.company_id, current["_id"], assignee_id)
    if changed is None:
        raise not_found("Conversation")
    if assignee_id is not None and str(assignee_id) != current.get("assignee_id"):
        await notify_assignee(tx, changed, assignee_id)
    return await publish_described(tx, changed)


async def mark_conversation_read(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str
) -> Conversation:
    """The signed-in member has read every message of the conversation so far."""
    assert tx.user_id is not None  # the route is a member's
    oid = object_id(conversation_id, "Conversation")
    document = await store.get_conversation(tx.company_id, oid)
    if document is None:
        raise not_found("Conversation")
    count = document.get("message_count", 0)
    await store.read_up_to(tx.company_id, oid, tx.user_id, count)
    document["reads"] = {**(document.get("reads") or {}), str(tx.user_id): count}
    [conversation] = await describe(tx, [document])
    return conversation


async def presence(
    tx: TenantTransaction, store: ConversationStore, redis: RedisClient
) -> list[MemberPresence]:
    """Every member: online (an event stream open) and their active conversations."""
    team = await members(tx)
    ids = [user_id for user_id, _, _ in team]
    online = await online_members(redis, tx.company_id, ids)
    load = await store.open_conversations_of(tx.company_id, ids)
    return [
        MemberPresence(
            user_id=user_id,
            name=name,
            email=email,
            online=user_id in online,
            open_conversations=load[user_id],
        )
        for user_id, name, email in team
    ]


# Notes -------------------------------------------------------------------------------


def _note(document: Document, names: Names) -> Note:
    author = document.get("author_id")
    return Note(
        id=str(document["_id"]),
        conversation_id=document["conversation_id"],
        author_id=author,
        author_name=names.users.get(author, UNKNOWN_TEAMMATE) if author else "System",
        body=document["body"],
        created_at=document["created_at"],
    )


def _publish_note(tx: TenantTransaction, event_type: EventType, note: Note) -> None:
    """A note event on the team's stream (the widget's never carries ``note.*``)."""
    if tx.events is None:
        return
    event = Event.new(event_type, tx.company_id, note.conversation_id, note.model_dump(mode="json"))
    tx.publish_after_commit(event)


async def add_note(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str, body: str
) -> Note:
    """A private note of the team on the conversation; ``note.created``."""
    conversation = await access_conversation(tx, store, conversation_id)
    document = await store.add_note(tx.company_id, conversation["_id"], tx.user_id, body)
    tx.undo_if_rolled_back(
        lambda: _forget_note(store, tx.company_id, conversation["_id"], document["_id"])
    )
    names = await names_of(tx, [], [str(tx.user_id)] if tx.user_id else [])
    note = _note(document, names)
    _publish_note(tx, "note.created", note)
    return note


async def _forget_note(
    store: ConversationStore, company_id: UUID, conversation_id: ObjectId, note_id: ObjectId
) -> None:
    await store.delete_note(company_id, conversation_id, note_id)


async def list_notes(
    tx: TenantTransaction,
    store: ConversationStore,
    conversation_id: str,
    *,
    limit: int,
    cursor: Cursor | None,
) -> Page[Note]:
    """The conversation's notes, oldest first."""
    conversation = await access_conversation(tx, store, conversation_id)
    piece = await store.list_notes(
        tx.company_id, conversation["_id"], limit=limit, after=keyset(cursor)
    )
    authors = [d["author_id"] for d in piece.documents if d.get("author_id")]
    names = await names_of(tx, [], authors)
    next_cursor = None
    if piece.has_more and piece.documents:
        next_cursor = Cursor.after(piece.documents[-1], "created_at", "_id").encode()
    return Page(data=[_note(d, names) for d in piece.documents], next_cursor=next_cursor)


async def delete_note(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str, note_id: str
) -> None:
    """Delete a note of the conversation; ``note.deleted``."""
    conversation = await access_conversation(tx, store, conversation_id)
    document = await store.delete_note(
        tx.company_id, conversation["_id"], object_id(note_id, "Note")
    )
    if document is None:
        raise not_found("Note")
    _publish_note(tx, "note.deleted", _note(document, Names()))


# Rating ------------------------------------------------------------------------------


async def rate(
    tx: TenantTransaction, store: ConversationStore, conversation_id: str, body: RatingCreate
) -> Conversation:
    """The visitor's rating of their chat, once it has ended (409 while it is open); a
    second rating replaces the first. Records ``conversation.rated``."""
    current = await access_conversation(tx, store, conversation_id)
    if current["status"] == "active":
        raise Conflict("the conversation is still open: rate it once it has ended")
    rating = {"score": body.score, "comment": body.comment, "rated_at": now()}
    invalidate_cached(tx, current["_id"], HEADER)
    await record_event(tx, "conversation.rated", current, {"score": body.score})
    changed = await store.rate(tx.company_id, current["_id"], rating)
    if changed is None:
        raise Conflict("the conversation is still open: rate it once it has ended")
    conversation = conversation_out(changed)
    publish(tx, "conversation.updated", conversation)
    return conversation
