"""/v1/public: the chat widget a company embeds on its site.

A widget call carries the agent's public key (``X-Api-Key: pub_key_…``), which names the
agent and so the company; nothing else of the company is reachable with it. Starting a
conversation returns a session token (``X-Widget-Session``) that is good for that one
conversation only, so one visitor cannot read another's.

The session token is a JWT signed with the platform's secret and its own audience
(``widget``), so it can never pass for an API access token or the other way round.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import jwt
from fastapi import APIRouter, Depends, Header, Query, Request

from syntera.agents.service import public_key_digest
from syntera.api.deps import Tenant, keys_of
from syntera.api.errors import Problem, not_found
from syntera.api.pagination import MAX_LIMIT, Cursor, Page
from syntera.conversations import service
from syntera.conversations.routes import ConversationId, CursorText, Store
from syntera.conversations.schemas import (
    ConversationCreate,
    Message,
    MessageCreate,
    WidgetMessage,
    WidgetSession,
)
from syntera.db.postgres import open_transaction
from syntera.tenancy import Membership, Principal

public = APIRouter(prefix="/v1/public/conversations", tags=["widget"])

SESSION_AUDIENCE = "widget"
SESSION_LIFETIME_S = 24 * 3600

# The agent of a public key: the digest is unique (partial index of migration 003).
AGENT_BY_PUBLIC_KEY = """
SELECT id, company_id, enabled FROM public.agent_configs WHERE public_api_key = %(digest)s
"""


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "X-Api-Key"})


@dataclass(frozen=True)
class Widget:
    """A widget call: the service transaction inside the agent's company, and the agent."""

    tenant: Tenant
    agent_id: UUID


async def widget(
    request: Request,
    api_key: Annotated[
        str | None, Header(alias="X-Api-Key", description="The agent's public key.")
    ] = None,
) -> AsyncIterator[Widget]:
    """The agent named by the public key, and a transaction as the system scoped to its
    company (service_role: the visitor is nobody's user). 401 for a missing or unknown
    key."""
    if api_key is None or not api_key.startswith("pub_key_") or len(api_key) > 200:
        raise _unauthorized("invalid public key")
    pool = request.app.state.stores.postgres
    async with open_transaction(pool, Principal.service()) as (conn, _):
        cursor = await conn.execute(AGENT_BY_PUBLIC_KEY, {"digest": public_key_digest(api_key)})
        agent = await cursor.fetchone()
        if agent is None:
            raise _unauthorized("invalid public key")
        if not agent["enabled"]:
            raise Problem(403, "Forbidden", "this agent is disabled")
        membership = Membership(agent["company_id"], "owner")
        yield Widget(Tenant(conn, Principal.service(), membership), agent["id"])


Caller = Annotated[Widget, Depends(widget, scope="function")]


def issue_session(request: Request, caller: Widget, conversation_id: str) -> str:
    now = int(time.time())
    claims = {
        "aud": SESSION_AUDIENCE,
        "sub": conversation_id,
        "agent_id": str(caller.agent_id),
        "company_id": str(caller.tenant.company_id),
        "iat": now,
        "exp": now + SESSION_LIFETIME_S,
    }
    return jwt.encode(claims, keys_of(request).jwt_secret, algorithm="HS256")


def check_session(
    request: Request, caller: Widget, token: str | None, conversation_id: str
) -> None:
    """The session must be this agent's and this conversation's; else the conversation
    is, for this caller, not found."""
    if token is None:
        raise _unauthorized("missing X-Widget-Session")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, keys_of(request).jwt_secret, algorithms=["HS256"], audience=SESSION_AUDIENCE
        )
    except jwt.PyJWTError as error:
        raise _unauthorized(f"invalid widget session: {error}") from error
    if claims.get("sub") != conversation_id or claims.get("agent_id") != str(caller.agent_id):
        raise not_found("Conversation")


Session = Annotated[
    str | None,
    Header(alias="X-Widget-Session", description="The token from starting the chat."),
]


@public.post("", status_code=201, response_model=WidgetSession)
async def start_chat(request: Request, caller: Caller, store: Store) -> WidgetSession:
    """Start a chat with the key's agent; returns the conversation and its session token."""
    conversation = await service.start(
        caller.tenant, store, ConversationCreate(agent_id=caller.agent_id, channel="chat")
    )
    return WidgetSession(
        conversation=conversation, session_token=issue_session(request, caller, conversation.id)
    )


@public.post("/{conversation_id}/messages", status_code=201, response_model=Message)
async def send_message(
    request: Request,
    caller: Caller,
    store: Store,
    conversation_id: ConversationId,
    body: WidgetMessage,
    session: Session = None,
) -> Message:
    """The visitor's message (records `message.received`)."""
    check_session(request, caller, session, conversation_id)
    message = MessageCreate(
        sender_type="user",
        role="user",
        content=body.content,
        message_type=body.message_type,
        attachments=body.attachments,
    )
    [stored] = await service.append(caller.tenant, store, conversation_id, [message])
    return stored


@public.get("/{conversation_id}/messages", response_model=Page[Message])
async def read_messages(
    request: Request,
    caller: Caller,
    store: Store,
    conversation_id: ConversationId,
    session: Session = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: CursorText = None,
) -> Page[Message]:
    """The chat's messages, oldest first."""
    check_session(request, caller, session, conversation_id)
    return await service.list_messages(
        caller.tenant, store, conversation_id,
        thread_id=None, limit=limit,
        cursor=Cursor.decode(cursor) if cursor else None, direction="forward",
    )  # fmt: skip


routers = [public]
