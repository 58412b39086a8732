"""/v1/public: the chat widget a company embeds on its site.

A widget call carries the agent's public key (``X-Api-Key: pub_key_…``), which names the
agent and so the company; nothing else of the company is reachable with it. Starting a
conversation returns a session token (``X-Widget-Session``) that is good for that one
conversation only, so one visitor cannot read another's.

The session token is a JWT signed with the platform's secret and its own audience
(``widget``), so it can never pass for an API access token or the other way round. Each
session is also kept in Redis (with the token's lifetime) so it can be revoked: a token
whose session is gone is refused. A Redis that lost its data ends the widget sessions and
nothing else; a Redis that does not answer refuses the widget (503) rather than trust an
unverifiable session. Calls are limited per key and per session.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import jwt
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from syntera.agents.service import agent_by_public_key, public_key_digest
from syntera.api.deps import Tenant, keys_of, run_after_commit
from syntera.api.errors import Problem, not_found
from syntera.api.pagination import MAX_LIMIT, Cursor, Page
from syntera.config import Settings
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
from syntera.db.redis import REDIS_ERRORS, tenant_key
from syntera.metrics import REDIS_FALLBACKS
from syntera.ratelimit import Limiters
from syntera.tenancy import Membership, Principal

public = APIRouter(prefix="/v1/public/conversations", tags=["widget"])

SESSION_AUDIENCE = "widget"
SESSION_LIFETIME_S = 24 * 3600


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
        agent = await agent_by_public_key(conn, request.app.state.cache, public_key_digest(api_key))
        if agent is None:
            raise _unauthorized("invalid public key")
        if not agent["enabled"]:
            raise Problem(403, "Forbidden", "this agent is disabled")
        membership = Membership(agent["company_id"], "owner")
        tenant = Tenant(conn, Principal.service(), membership, request.app.state.cache)
        yield Widget(tenant, agent["id"])
    await run_after_commit(tenant)


Caller = Annotated[Widget, Depends(widget, scope="function")]


def _session_key(company_id: UUID, session_id: str) -> str:
    return tenant_key(company_id, "widget-session", session_id)


def _redis(request: Request) -> aioredis.Redis:
    redis: aioredis.Redis = request.app.state.stores.redis
    return redis


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _redis_down(error: BaseException) -> Problem:
    REDIS_FALLBACKS.labels("widget_session").inc()
    return Problem(503, "Service Unavailable", f"widget sessions are unavailable ({error!r})")


async def issue_session(request: Request, caller: Widget, conversation_id: str) -> str:
    """A session token for one conversation, recorded in Redis so it can be revoked."""
    now = int(time.time())
    session_id = secrets.token_urlsafe(16)
    claims = {
        "aud": SESSION_AUDIENCE,
        "sub": conversation_id,
        "jti": session_id,
        "agent_id": str(caller.agent_id),
        "company_id": str(caller.tenant.company_id),
        "iat": now,
        "exp": now + SESSION_LIFETIME_S,
    }
    key = _session_key(caller.tenant.company_id, session_id)
    try:
        async with asyncio.timeout(_settings(request).redis_timeout_s):
            await _redis(request).set(key, conversation_id, ex=SESSION_LIFETIME_S)
    except REDIS_ERRORS as error:
        raise _redis_down(error) from error
    return jwt.encode(claims, keys_of(request).jwt_secret, algorithm="HS256")


async def check_session(
    request: Request, caller: Widget, token: str | None, conversation_id: str
) -> str:
    """The session must be live, this agent's and this conversation's; else the
    conversation is, for this caller, not found. Returns the session's id."""
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
    session_id = str(claims.get("jti", ""))
    try:
        async with asyncio.timeout(_settings(request).redis_timeout_s):
            live = await _redis(request).get(_session_key(caller.tenant.company_id, session_id))
    except REDIS_ERRORS as error:
        raise _redis_down(error) from error
    if live is None or (live.decode() if isinstance(live, bytes) else live) != conversation_id:
        raise _unauthorized("the widget session has ended")
    await _enforce_limits(request, caller, session_id)
    return session_id


async def _enforce_limits(request: Request, caller: Widget, session_id: str | None) -> None:
    """The agent's widget limit, and the session's when there is one, in one round trip."""
    limiters: Limiters = request.app.state.limiters
    company = caller.tenant.company_id
    limits = [(
        limiters.widget_key,
        tenant_key(company, "rate-widget-agent", str(caller.agent_id)),
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
async def start_chat(request: Request, caller: Caller, store: Store) -> WidgetSession:
    """Start a chat with the key's agent; returns the conversation and its session token."""
    await _enforce_limits(request, caller, None)
    conversation = await service.start(
        caller.tenant, store, ConversationCreate(agent_id=caller.agent_id, channel="chat")
    )
    token = await issue_session(request, caller, conversation.id)
    return WidgetSession(conversation=conversation, session_token=token)


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
    await check_session(request, caller, session, conversation_id)
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
    await check_session(request, caller, session, conversation_id)
    return await service.list_messages(
        caller.tenant, store, conversation_id,
        thread_id=None, limit=limit,
        cursor=Cursor.decode(cursor) if cursor else None, direction="forward",
    )  # fmt: skip


routers = [public]


@public.delete("/{conversation_id}/session", status_code=204)
async def end_session(
    request: Request, caller: Caller, conversation_id: ConversationId, session: Session = None
) -> Response:
    """End the widget session (its token stops working at once)."""
    session_id = await check_session(request, caller, session, conversation_id)
    try:
        async with asyncio.timeout(_settings(request).redis_timeout_s):
            await _redis(request).delete(_session_key(caller.tenant.company_id, session_id))
    except REDIS_ERRORS as error:
        raise _redis_down(error) from error
    return Response(status_code=204)
