"""Widget sessions: a visitor's right to one conversation.

The session token is a JWT signed with the platform's secret and its own audience
(``widget``), so it can never pass for an API access token or the other way round. Each
session is also kept in Redis (with the token's lifetime) so it can be revoked: a token
whose session is gone is refused. A Redis that lost its data ends the widget sessions and
nothing else; a Redis that does not answer refuses the widget rather than trust an
unverifiable session.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt

from syntera.db.redis import REDIS_ERRORS, RedisClient, tenant_key
from syntera.errors import Unauthorized, Unavailable, not_found
from syntera.metrics import REDIS_FALLBACKS

SESSION_AUDIENCE = "widget"
SESSION_LIFETIME_S = 24 * 3600
API_KEY_SCHEME = "X-Api-Key"


def unauthorized(detail: str) -> Unauthorized:
    return Unauthorized(detail, scheme=API_KEY_SCHEME)


@dataclass(frozen=True)
class SessionStore:
    """Where sessions are recorded (Redis) and what signs their tokens."""

    redis: RedisClient
    secret: str
    timeout_s: float

    async def issue(self, company_id: UUID, agent_id: UUID, conversation_id: str) -> str:
        """A session token for one conversation, recorded so that it can be revoked."""
        now = int(time.time())
        session_id = secrets.token_urlsafe(16)
        claims = {
            "aud": SESSION_AUDIENCE,
            "sub": conversation_id,
            "jti": session_id,
            "agent_id": str(agent_id),
            "company_id": str(company_id),
            "iat": now,
            "exp": now + SESSION_LIFETIME_S,
        }
        key = session_key(company_id, session_id)
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.set(key, conversation_id, ex=SESSION_LIFETIME_S)
        except REDIS_ERRORS as error:
            raise _redis_down(error) from error
        return jwt.encode(claims, self.secret, algorithm="HS256")

    async def check(
        self, company_id: UUID, agent_id: UUID, token: str | None, conversation_id: str
    ) -> str:
        """The session must be live, this agent's and this conversation's; else the
        conversation is, for this caller, not found. Returns the session's id."""
        if token is None:
            raise unauthorized("missing X-Widget-Session")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.secret, algorithms=["HS256"], audience=SESSION_AUDIENCE
            )
        except jwt.PyJWTError as error:
            raise unauthorized(f"invalid widget session: {error}") from error
        if claims.get("sub") != conversation_id or claims.get("agent_id") != str(agent_id):
            raise not_found("Conversation")
        session_id = str(claims.get("jti", ""))
        try:
            async with asyncio.timeout(self.timeout_s):
                live = await self.redis.get(session_key(company_id, session_id))
        except REDIS_ERRORS as error:
            raise _redis_down(error) from error
        if live is None or (live.decode() if isinstance(live, bytes) else live) != conversation_id:
            raise unauthorized("the widget session has ended")
        return session_id

    async def end(self, company_id: UUID, session_id: str) -> None:
        """End the session: its token stops working at once."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.delete(session_key(company_id, session_id))
        except REDIS_ERRORS as error:
            raise _redis_down(error) from error


def session_key(company_id: UUID, session_id: str) -> str:
    return tenant_key(company_id, "widget-session", session_id)


def _redis_down(error: BaseException) -> Unavailable:
    REDIS_FALLBACKS.labels("widget_session").inc()
    return Unavailable(f"widget sessions are unavailable ({error!r})")
