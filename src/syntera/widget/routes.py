"""/v1/public: the chat widget a company embeds on its site.

A widget call carries the agent's public key (``X-Api-Key: pub_key_…``), which names the
agent and so the company; nothing else of the company is reachable with it. Starting a
conversation returns a session token (``X-Widget-Session``, see ``syntera.widget.sessions``)
that is good for that one conversation only, so one visitor cannot read another's. Calls
are limited per key and per session.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import HTMLResponse

from syntera.agents.service import agent_by_public_key, public_key_digest
from syntera.api.sse import EventStreamResponse
from syntera.api.state import (
    cache_of,
    limiters_of,
    publisher_of,
    settings_of,
    stores_of,
)
from syntera.auth.common_routes import keys_of
from syntera.conversations import inbox, service
from syntera.conversations.routes import ConversationId, CursorText, Store, conversation_store_of
from syntera.conversations.schemas import (
    ConversationCreate,
    Message,
    MessageCreate,
    Rating,
    RatingCreate,
    TypingUpdate,
    WidgetMessage,
    WidgetSession,
)
from syntera.db.redis import tenant_key
from syntera.errors import Forbidden, NotFound, Unauthorized, field_error
from syntera.events.model import TEAM_MESSAGE_FIELDS, TEAM_MESSAGE_METADATA
from syntera.events.routes import (
    STREAM_RESPONSES,
    LastEventIdHeader,
    LastEventIdQuery,
    events_of,
    resume_position,
    sse_response,
)
from syntera.events.streams import Recheck, StreamRequest, open_stream, visitor_scope
from syntera.kit.pagination import MAX_LIMIT, Cursor, Page
from syntera.tenancy import Principal
from syntera.unit_of_work import TenantTransaction, open_unit_of_work, system_transaction
from syntera.widget.sessions import SessionStore, unauthorized

public = APIRouter(prefix="/v1/public/conversations", tags=["widget"])


@dataclass(frozen=True)
class WidgetCall:
    """A visitor's call: the system's transaction inside the agent's company, the agent,
    and the sessions that say which conversation the visitor may reach."""

    tx: TenantTransaction
    agent_id: UUID
    sessions: SessionStore
    key_digest: str

    @property
    def company_id(self) -> UUID:
        return self.tx.company_id


@asynccontextmanager
async def _visitor(request: Request, api_key: str | None) -> AsyncIterator[WidgetCall]:
    if api_key is None or not api_key.startswith("pub_key_") or len(api_key) > 200:
        raise unauthorized("invalid public key")
    cache = cache_of(request)
    sessions = SessionStore(
        stores_of(request).redis, keys_of(request).jwt_secret, settings_of(request).redis_timeout_s
    )
    digest = public_key_digest(api_key)
    pool = stores_of(request).postgres
    async with open_unit_of_work(
        pool, Principal.service(), cache=cache, events=publisher_of(request)
    ) as system:
        agent = await agent_by_public_key(system.conn, cache, digest)
        if agent is None:
            raise unauthorized("invalid public key")
        if not agent["enabled"]:
            raise Forbidden("this agent is disabled")
        yield WidgetCall(system.acting_in(agent["company_id"]), agent["id"], sessions, digest)


async def widget_call(
    request: Request,
    api_key: Annotated[
        str | None, Header(alias="X-Api-Key", description="The agent's public key.")
    ] = None,
) -> AsyncIterator[WidgetCall]:
    """The agent named by the public key, and a transaction as the system scoped to its
    company (service_role: the visitor is nobody's user). 401 for a missing or unknown
    key."""
    async with _visitor(request, api_key) as visitor:
        yield visitor


async def stream_widget_call(
    request: Request,
    api_key: Annotated[
        str | None, Header(alias="X-Api-Key", description="The agent's public key.")
    ] = None,
    key: Annotated[
        str | None,
        Query(max_length=200, description="`X-Api-Key`, for the browser's EventSource."),
    ] = None,
) -> AsyncIterator[WidgetCall]:
    """``widget_call`` for the event stream: the key may come as a query parameter."""
    async with _visitor(request, api_key if api_key is not None else key) as visitor:
        yield visitor


Visitor = Annotated[WidgetCall, Depends(widget_call, scope="function")]
StreamVisitor = Annotated[WidgetCall, Depends(stream_widget_call, scope="function")]


async def check_session(
    request: Request, visitor: WidgetCall, token: str | None, conversation_id: str
) -> str:
    """The visitor's session for this conversation (or 401/404), counted against the
    widget's limits. Returns the session's id."""
    session_id = await visitor.sessions.check(
        visitor.company_id, visitor.agent_id, token, conversation_id
    )
    await _enforce_limits(request, visitor, session_id)
    return session_id


async def _enforce_limits(request: Request, visitor: WidgetCall, session_id: str | None) -> None:
    """The agent's widget limit, and the session's when there is one, in one round trip."""
    limiters = limiters_of(request)
    company = visitor.company_id
    limits = [(
        limiters.widget_key,
        tenant_key(company, "rate-widget-agent", str(visitor.agent_id)),
        "requests for this agent's widget",
    )]  # fmt: skip
    if session_id is not None:
        limits.append((
            limiters.widget_session,
            tenant_key(company, "rate-widget-session", session_id),
            "messages per chat",
        ))  # fmt: skip
    await limiters.enforce_all(limits)


Session = Annotated[
    str | None,
    Header(alias="X-Widget-Session", description="The token from starting the chat."),
]


@public.post("", status_code=201, response_model=WidgetSession)
async def start_chat(request: Request, visitor: Visitor, store: Store) -> WidgetSession:
    """Start a chat with the key's agent; returns the conversation and its session token."""
    await _enforce_limits(request, visitor, None)
    conversation = await service.start(
        visitor.tx, store, ConversationCreate(agent_id=visitor.agent_id, channel="chat")
    )
    token = await visitor.sessions.issue(visitor.company_id, visitor.agent_id, conversation.id)
    return WidgetSession(conversation=conversation, session_token=token)


@public.post("/{conversation_id}/messages", status_code=201, response_model=Message)
async def send_message(
    request: Request,
    visitor: Visitor,
    store: Store,
    conversation_id: ConversationId,
    body: WidgetMessage,
    session: Session = None,
) -> Message:
    """The visitor's message (records `message.received`)."""
    await check_session(request, visitor, session, conversation_id)
    message = MessageCreate(
        sender_type="user",
        role="user",
        content=body.content,
        message_type=body.message_type,
        attachments=body.attachments,
    )
    phrases = settings_of(request).handoff_phrase_list
    [stored] = await service.append(
        visitor.tx, store, conversation_id, [message], handoff_phrases=phrases
    )
    return _for_visitor(stored)


@public.get("/{conversation_id}/messages", response_model=Page[Message])
async def read_messages(
    request: Request,
    visitor: Visitor,
    store: Store,
    conversation_id: ConversationId,
    session: Session = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: CursorText = None,
) -> Page[Message]:
    """The chat's messages, oldest first."""
    await check_session(request, visitor, session, conversation_id)
    page = await service.list_messages(
        visitor.tx, store, conversation_id,
        thread_id=None, limit=limit,
        cursor=Cursor.decode(cursor) if cursor else None, direction="forward",
    )  # fmt: skip
    return page.model_copy(update={"data": [_for_visitor(message) for message in page.data]})


def _for_visitor(message: Message) -> Message:
    """A message without what only the team may see: the team's reading of it (intent,
    sentiment) and which teammate wrote it (as ``Event.for_widget`` does for events)."""
    metadata = message.metadata.model_copy(update=dict.fromkeys(TEAM_MESSAGE_METADATA))
    return message.model_copy(update={**dict.fromkeys(TEAM_MESSAGE_FIELDS), "metadata": metadata})


@public.delete("/{conversation_id}/session", status_code=204)
async def end_session(
    request: Request, visitor: Visitor, conversation_id: ConversationId, session: Session = None
) -> Response:
    """End the widget session (its token stops working at once)."""
    session_id = await check_session(request, visitor, session, conversation_id)
    await visitor.sessions.end(visitor.company_id, session_id)
    return Response(status_code=204)


@public.post("/{conversation_id}/rating", response_model=Rating)
async def rate_chat(
    request: Request,
    visitor: Visitor,
    store: Store,
    conversation_id: ConversationId,
    body: RatingCreate,
    session: Session = None,
) -> Rating:
    """The visitor rates their chat (1-5, and a comment) once it has ended: 409 while it
    is open; only with the chat's own session. A second rating replaces the first."""
    await check_session(request, visitor, session, conversation_id)
    rated = await inbox.rate(visitor.tx, store, conversation_id, body)
    assert rated.rating is not None
    return rated.rating


@public.post("/{conversation_id}/typing", status_code=204)
async def visitor_typing(
    request: Request,
    visitor: Visitor,
    store: Store,
    conversation_id: ConversationId,
    body: TypingUpdate,
    session: Session = None,
) -> Response:
    """The visitor started or stopped typing (an ephemeral `typing` event)."""
    session_id = await check_session(request, visitor, session, conversation_id)
    limiters = limiters_of(request)
    await limiters.enforce(
        limiters.typing,
        service.typing_limit_key(visitor.company_id, conversation_id, session_id),
        "typing signals",
    )
    await service.typing(visitor.tx, store, conversation_id, body.state, "visitor")
    return Response(status_code=204)


@public.get(
    "/{conversation_id}/events",
    status_code=200,
    response_class=EventStreamResponse,
    responses=STREAM_RESPONSES,
)
async def chat_events(
    request: Request,
    visitor: StreamVisitor,
    store: Store,
    conversation_id: ConversationId,
    session: Session = None,
    session_query: Annotated[
        str | None,
        Query(
            alias="session",
            max_length=4096,
            description="`X-Widget-Session`, for the browser's EventSource. Never logged.",
        ),
    ] = None,
    last_event_id: LastEventIdQuery = None,
    last_event_id_header: LastEventIdHeader = None,
) -> EventStreamResponse:
    """The chat's live events, as a visitor may see them: messages, reactions, read
    receipts, typing, and the chat ending."""
    resume_from = resume_position(last_event_id_header, last_event_id)
    token = session if session is not None else session_query
    session_id = await check_session(request, visitor, token, conversation_id)
    conversation = await service.access_conversation(visitor.tx, store, conversation_id)
    chat = str(conversation["_id"])
    settings = settings_of(request)
    company_id = visitor.company_id
    stream = await open_stream(
        events_of(request),
        StreamRequest(
            kind="widget",
            company_id=company_id,
            view=lambda event: event.for_widget() if event.conversation_id == chat else None,
            scopes=[
                visitor_scope(company_id, settings.events_visitor_streams_per_company),
                (
                    tenant_key(company_id, "streams-session", session_id),
                    settings.events_streams_per_widget_session,
                    "per chat",
                ),
            ],
            recheck=_visitor_recheck(request, visitor, token, chat),
            resume_from=resume_from,
        ),
    )
    return sse_response(request, stream)


def _visitor_recheck(
    request: Request, visitor: WidgetCall, token: str | None, conversation_id: str
) -> Recheck:
    """Whether the session is still live, the agent still enabled and the chat still
    there (the key is looked up without the cache: a disabled agent ends its streams)."""
    store = conversation_store_of(request)
    pool = stores_of(request).postgres
    sessions, key_digest = visitor.sessions, visitor.key_digest
    memo = events_of(request).checks
    company_id, agent_id = visitor.company_id, visitor.agent_id

    async def recheck() -> str | None:
        try:
            await sessions.check(company_id, agent_id, token, conversation_id)
        except (Unauthorized, NotFound):
            return "the widget session has ended"
        return await memo.answer(("agent", key_digest), agent_check) or await memo.answer(
            ("conversation", company_id, conversation_id), conversation_check
        )

    async def agent_check() -> str | None:
        async with system_transaction(pool) as conn:
            agent = await agent_by_public_key(conn, None, key_digest)
        if agent is None or not agent["enabled"]:
            return "the agent is no longer available"
        return None

    async def conversation_check() -> str | None:
        oid = service.object_id(conversation_id, "Conversation")
        if await store.get_conversation(company_id, oid) is None:
            return "the conversation no longer exists"
        return None

    return recheck


assets = APIRouter(tags=["widget"])

WIDGET_SCRIPT = resources.files("syntera.widget") / "static" / "widget.js"
PUBLIC_KEY_FORM = re.compile(r"^pub_key_[A-Za-z0-9_-]{8,100}$")
DEMO_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Syntera widget demo</title>
<style>
body{{font:16px system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem}}
</style>
</head>
<body>
<h1>Widget demo</h1>
<p>This page embeds the chat widget of one agent, as a company's site would:</p>
<pre>&lt;script src="{origin}/widget.js" data-key="{key}"&gt;&lt;/script&gt;</pre>
<p>Open the bubble at the bottom right to chat.</p>
<script src="/widget.js" data-key="{key}"></script>
</body>
</html>
"""


@assets.get("/widget.js", include_in_schema=False)
async def widget_script() -> Response:
    """The embeddable chat widget (plain JavaScript, shipped inside the package)."""
    return Response(
        WIDGET_SCRIPT.read_bytes(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300"},
    )


@assets.get("/widget-demo", include_in_schema=False)
async def widget_demo(request: Request, key: Annotated[str, Query(max_length=120)]) -> HTMLResponse:
    """A page that embeds the widget of the agent whose public key is ``key``."""
    if not PUBLIC_KEY_FORM.match(key):
        raise field_error("key", "is not a widget key (pub_key_…)")
    origin = f"{request.url.scheme}://{request.url.netloc}"
    return HTMLResponse(DEMO_PAGE.format(key=html.escape(key), origin=html.escape(origin)))


routers = [public, assets]
