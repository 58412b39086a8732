"""/v1/public: the chat widget a company embeds on its site.

A widget call carries the agent's public key (``X-Api-Key: pub_key_…``), which names the
agent and so the company; nothing else of the company is reachable with it. Starting a
conversation returns a session token (``X-Widget-Session``, see ``syntera.widget.sessions``)
that is good for that one conversation only, so one visitor cannot read another's. Calls
are limited per key and per session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from syntera.agents.service import agent_by_public_key, public_key_digest
from syntera.api.state import (
    cache_of,
    keys_of,
    limiters_of,
    settings_of,
    stores_of,
    system_transaction,
)
from syntera.conversations import service
from syntera.conversations.routes import ConversationId, CursorText, Store
from syntera.conversations.schemas import (
    ConversationCreate,
    Message,
    MessageCreate,
    WidgetMessage,
    WidgetSession,
)
from syntera.db.redis import tenant_key
from syntera.errors import Forbidden
from syntera.kit.pagination import MAX_LIMIT, Cursor, Page
from syntera.tenancy import TenantTransaction
from syntera.widget.sessions import SessionStore, unauthorized

public = APIRouter(prefix="/v1/public/conversations", tags=["widget"])


@dataclass(frozen=True)
class WidgetCall:
    """A visitor's call: the system's transaction inside the agent's company, the agent,
    and the sessions that say which conversation the visitor may reach."""

    tx: TenantTransaction
    agent_id: UUID
    sessions: SessionStore

    @property
    def company_id(self) -> UUID:
        return self.tx.company_id


async def widget_call(
    request: Request,
    api_key: Annotated[
        str | None, Header(alias="X-Api-Key", description="The agent's public key.")
    ] = None,
) -> AsyncIterator[WidgetCall]:
    """The agent named by the public key, and a transaction as the system scoped to its
    company (service_role: the visitor is nobody's user). 401 for a missing or unknown
    key."""
    if api_key is None or not api_key.startswith("pub_key_") or len(api_key) > 200:
        raise unauthorized("invalid public key")
    cache = cache_of(request)
    sessions = SessionStore(
        stores_of(request).redis, keys_of(request).jwt_secret, settings_of(request).redis_timeout_s
    )
    async with system_transaction(request) as conn:
        agent = await agent_by_public_key(conn, cache, public_key_digest(api_key))
        if agent is None:
            raise unauthorized("invalid public key")
        if not agent["enabled"]:
            raise Forbidden("this agent is disabled")
        tx = TenantTransaction.of_system(conn, agent["company_id"], cache)
        yield WidgetCall(tx, agent["id"], sessions)
    await tx.run_after_commit()


Visitor = Annotated[WidgetCall, Depends(widget_call, scope="function")]


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
    [stored] = await service.append(visitor.tx, store, conversation_id, [message])
    return stored


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
    return await service.list_messages(
        visitor.tx, store, conversation_id,
        thread_id=None, limit=limit,
        cursor=Cursor.decode(cursor) if cursor else None, direction="forward",
    )  # fmt: skip


@public.delete("/{conversation_id}/session", status_code=204)
async def end_session(
    request: Request, visitor: Visitor, conversation_id: ConversationId, session: Session = None
) -> Response:
    """End the widget session (its token stops working at once)."""
    session_id = await check_session(request, visitor, session, conversation_id)
    await visitor.sessions.end(visitor.company_id, session_id)
    return Response(status_code=204)


routers = [public]
