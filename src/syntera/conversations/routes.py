"""/v1/conversations (with messages and threads) and /v1/analytics/conversations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, cast
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel

from syntera.api.deps import Member
from syntera.api.state import limiters_of, settings_of
from syntera.conversations import inbox, schemas, service
from syntera.conversations.search_routes import router as search_router
from syntera.conversations.store import ConversationStore, Direction
from syntera.kit.pagination import MAX_LIMIT, Cursor, Page
from syntera.kit.schemas import StorableTime, Tag

DEFAULT_STATISTICS_PERIOD = timedelta(days=30)

conversations = APIRouter(prefix="/v1/conversations", tags=["conversations"])
analytics = APIRouter(prefix="/v1/analytics/conversations", tags=["analytics"])


def conversation_store_of(request: Request) -> ConversationStore:
    """This process's conversation store (MongoDB), put on the app by its lifespan."""
    return cast(ConversationStore, request.app.state.conversations)


async def conversation_store(request: Request) -> ConversationStore:
    # async: FastAPI would run a plain function in a thread, a hop per request
    return conversation_store_of(request)


Store = Annotated[ConversationStore, Depends(conversation_store)]
ConversationId = Annotated[str, Path(description="The conversation's id (an ObjectId).")]
MessageId = Annotated[str, Path(description="The message's id (an ObjectId).")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
CursorText = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page.")
]


def _cursor(text: str | None) -> Cursor | None:
    return Cursor.decode(text) if text is not None else None


class MessageBatch(BaseModel):
    data: list[schemas.Message]


@conversations.post("", status_code=201, response_model=schemas.Conversation)
async def start_conversation(
    tx: Member, store: Store, body: schemas.ConversationCreate
) -> schemas.Conversation:
    """Start a conversation with one of your agents (records `conversation.started`)."""
    return await service.start(tx, store, body)


@conversations.get("", response_model=Page[schemas.Conversation])
async def list_conversations(
    tx: Member,
    store: Store,
    view: Annotated[
        schemas.InboxView | None,
        Query(
            description="`mine`: assigned to you; `unassigned`; `needs_person`: handed "
            "to people and assigned to nobody."
        ),
    ] = None,
    status: Annotated[schemas.Status | None, Query()] = None,
    channel: Annotated[schemas.Channel | None, Query()] = None,
    agent_id: Annotated[UUID | None, Query()] = None,
    contact_id: Annotated[UUID | None, Query()] = None,
    tag: Annotated[Tag | None, Query()] = None,
    include_archived: Annotated[bool, Query(description="Also archived ones.")] = False,
    limit: Limit = 20,
    cursor: CursorText = None,
) -> Page[schemas.Conversation]:
    """Your company's conversations, newest activity first, each with its contact's name,
    its last message and how many messages you have not read; archived ones are hidden
    unless asked."""
    piece = await store.list_conversations(
        tx.company_id,
        status=status,
        channel=channel,
        agent_id=agent_id,
        contact_id=contact_id,
        tag=tag,
        include_archived=include_archived,
        limit=limit,
        after=service.keyset(_cursor(cursor)),
        **inbox.view_filters(view, tx.user_id),
    )
    return await inbox.page_of_inbox(tx, store, piece)


@conversations.get("/{conversation_id}", response_model=schemas.Conversation)
async def read_conversation(
    tx: Member, store: Store, conversation_id: ConversationId
) -> schemas.Conversation:
    """One conversation of your company (archived ones too), as the inbox shows it."""
    return await inbox.read_conversation(tx, store, conversation_id)


@conversations.patch("/{conversation_id}", response_model=schemas.Conversation)
async def update_conversation(
    tx: Member, store: Store, conversation_id: ConversationId, body: schemas.ConversationUpdate
) -> schemas.Conversation:
    """Change the contact, tags, metadata or summary."""
    return await service.update(tx, store, conversation_id, body)


@conversations.post("/{conversation_id}/end", response_model=schemas.Conversation)
async def end_conversation(
    tx: Member, store: Store, conversation_id: ConversationId
) -> schemas.Conversation:
    """End the conversation (records `conversation.ended`); ending twice changes nothing."""
    return await service.end(tx, store, conversation_id)


@conversations.post("/{conversation_id}/archive", response_model=schemas.Conversation)
async def archive_conversation(
    tx: Member, store: Store, conversation_id: ConversationId
) -> schemas.Conversation:
    """Archive the conversation: hidden from lists, kept (conversations are not deleted)."""
    return await service.archive(tx, store, conversation_id)


@conversations.post("/{conversation_id}/messages", status_code=201, response_model=schemas.Message)
async def post_message(
    request: Request,
    tx: Member,
    store: Store,
    conversation_id: ConversationId,
    body: schemas.MessageCreate,
) -> schemas.Message:
    """Add a message (a customer's message records `message.received` and, while the
    agent handles the conversation, asks it to answer; a signed-in member's message as
    `agent` takes the conversation over from the agent)."""
    phrases = settings_of(request).handoff_phrase_list
    [message] = await service.append(tx, store, conversation_id, [body], handoff_phrases=phrases)
    return message


@conversations.post("/{conversation_id}/handoff", response_model=schemas.Conversation)
async def hand_off(
    tx: Member, store: Store, conversation_id: ConversationId, body: schemas.HandOff
) -> schemas.Conversation:
    """Put the conversation in the agent's hands (`{"to": "agent"}`) or the team's
    (`{"to": "human"}`): `conversation.updated` carries the new `handled_by`."""
    return await service.hand_off(tx, store, conversation_id, body.to)


@conversations.post(
    "/{conversation_id}/messages/import", status_code=201, response_model=MessageBatch
)
async def import_messages(
    tx: Member, store: Store, conversation_id: ConversationId, body: schemas.MessageImport
) -> MessageBatch:
    """Add up to 1,000 messages of history in one bulk insert (no events are recorded)."""
    messages = await service.append(tx, store, conversation_id, body.messages, record=False)
    return MessageBatch(data=messages)


@conversations.get("/{conversation_id}/messages", response_model=Page[schemas.Message])
async def list_messages(
    tx: Member,
    store: Store,
    conversation_id: ConversationId,
    thread_id: Annotated[str | None, Query(max_length=64)] = None,
    direction: Annotated[
        Direction, Query(description="`backward`: newest first; `forward`: oldest first.")
    ] = "backward",
    limit: Limit = 50,
    cursor: CursorText = None,
) -> Page[schemas.Message]:
    """The conversation's messages, a page at a time."""
    return await service.list_messages(
        tx, store, conversation_id,
        thread_id=thread_id, limit=limit, cursor=_cursor(cursor), direction=direction,
    )  # fmt: skip


@conversations.post(
    "/{conversation_id}/messages/{message_id}/reactions", response_model=schemas.Message
)
async def react_to_message(
    tx: Member,
    store: Store,
    conversation_id: ConversationId,
    message_id: MessageId,
    body: schemas.ReactionCreate,
) -> schemas.Message:
    """Add your reaction to a message (once per emoji)."""
    return await service.react(tx, store, conversation_id, message_id, body.emoji)


@conversations.post("/{conversation_id}/messages/{message_id}/read", response_model=schemas.Message)
async def mark_message_read(
    tx: Member, store: Store, conversation_id: ConversationId, message_id: MessageId
) -> schemas.Message:
    """Record that you read the message."""
    return await service.mark_read(tx, store, conversation_id, message_id)


@conversations.post("/{conversation_id}/typing", status_code=204)
async def typing(
    request: Request,
    tx: Member,
    store: Store,
    conversation_id: ConversationId,
    body: schemas.TypingUpdate,
) -> Response:
    """You (or, with the service key, the AI agent) started or stopped typing: an ephemeral
    `typing` event to the conversation's subscribers, never stored."""
    sender = str(tx.user_id) if tx.user_id is not None else "service"
    limiters = limiters_of(request)
    await limiters.enforce(
        limiters.typing,
        service.typing_limit_key(tx.company_id, conversation_id, sender),
        "typing signals",
    )
    by: service.TypingBy = "member" if tx.user_id is not None else "agent"
    await service.typing(tx, store, conversation_id, body.state, by)
    return Response(status_code=204)


@conversations.get("/{conversation_id}/threads", response_model=list[schemas.Thread])
async def list_threads(
    tx: Member, store: Store, conversation_id: ConversationId
) -> list[schemas.Thread]:
    """The conversation's threads, with their message counts."""
    conversation = await service.access_conversation(tx, store, conversation_id)
    return service.conversation_out(conversation).threads


@conversations.post("/{conversation_id}/threads", status_code=201, response_model=schemas.Thread)
async def create_thread(
    tx: Member, store: Store, conversation_id: ConversationId, body: schemas.ThreadCreate
) -> schemas.Thread:
    """Open a thread in the conversation."""
    return await service.add_thread(tx, store, conversation_id, body.title)


@conversations.patch("/{conversation_id}/threads/{thread_id}", response_model=schemas.Thread)
async def rename_thread(
    tx: Member,
    store: Store,
    conversation_id: ConversationId,
    thread_id: Annotated[str, Path(max_length=64)],
    body: schemas.ThreadUpdate,
) -> schemas.Thread:
    """Rename a thread."""
    return await service.rename_thread(tx, store, conversation_id, thread_id, body.title)


@analytics.get("", response_model=schemas.ConversationStats)
async def conversation_statistics(
    tx: Member,
    store: Store,
    since: Annotated[
        StorableTime | None,
        Query(description="Conversations started at or after (default: 30 days ago)."),
    ] = None,
    group_by: Annotated[Literal["channel", "day", "agent"], Query()] = "channel",
) -> schemas.ConversationStats:
    """Conversations since a date per channel, day or agent (count, average duration), and
    messages per sender type (count, average AI response time)."""
    if since is None:
        since = datetime.now(UTC) - DEFAULT_STATISTICS_PERIOD
    return await service.statistics(tx, store, since, group_by)


# Search first: its path would otherwise be taken for a conversation's id.
routers = [search_router, conversations, analytics]
