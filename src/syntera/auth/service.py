"""Accounts, sessions and refresh tokens. Every function runs in a service_role transaction
(the auth server acts before there is a signed-in user) and never commits."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb

from syntera.db.postgres import TenantConnection

REFRESH_TOKEN_BYTES = 32
EMAIL_APP_METADATA = {"provider": "email", "providers": ["email"]}

USER_COLUMNS = sql.SQL("""
  id, email, encrypted_password, email_confirmed_at, last_sign_in_at,
  coalesce(raw_app_meta_data, '{}') AS app_metadata,
  coalesce(raw_user_meta_data, '{}') AS user_metadata,
  created_at, updated_at
""")

CREATE_USER = sql.SQL("""
INSERT INTO auth.users (
  aud, role, email, encrypted_password, email_confirmed_at, raw_app_meta_data,
  raw_user_meta_data
)
VALUES ('authenticated', 'authenticated', %(email)s, %(password_hash)s, now(),
        %(app_metadata)s, %(user_metadata)s)
RETURNING {columns}
""").format(columns=USER_COLUMNS)

# Accounts that may sign in: not deleted, not banned.
FIND_USER_BY_EMAIL = sql.SQL("""
SELECT {columns} FROM auth.users
 WHERE lower(email) = %(email)s
   AND deleted_at IS NULL
   AND (banned_until IS NULL OR banned_until < now())
""").format(columns=USER_COLUMNS)

FIND_USER_BY_ID = sql.SQL("""
SELECT {columns} FROM auth.users
 WHERE id = %(id)s AND deleted_at IS NULL
""").format(columns=USER_COLUMNS)

MARK_SIGNED_IN = "UPDATE auth.users SET last_sign_in_at = now() WHERE id = %(id)s"

START_SESSION = """
INSERT INTO syntera.auth_sessions (user_id) VALUES (%(user_id)s) RETURNING id
"""

STORE_REFRESH_TOKEN = """
INSERT INTO syntera.refresh_tokens (token_hash, session_id, user_id)
VALUES (%(token_hash)s, %(session_id)s, %(user_id)s)
"""

# Lock the token's row so that two concurrent refreshes with one token cannot both win.
USE_REFRESH_TOKEN = """
SELECT t.session_id, t.user_id, t.revoked, s.revoked_at IS NOT NULL AS session_revoked
  FROM syntera.refresh_tokens t
  JOIN syntera.auth_sessions s ON s.id = t.session_id
 WHERE t.token_hash = %(token_hash)s
   FOR UPDATE OF t
"""

REVOKE_REFRESH_TOKEN = """
UPDATE syntera.refresh_tokens SET revoked = true WHERE token_hash = %(token_hash)s
"""

TOUCH_SESSION = "UPDATE syntera.auth_sessions SET refreshed_at = now() WHERE id = %(id)s"

REVOKE_SESSION = """
UPDATE syntera.auth_sessions SET revoked_at = now()
 WHERE id = %(session_id)s AND revoked_at IS NULL;
"""

REVOKE_ONE_SESSION = """
UPDATE syntera.auth_sessions SET revoked_at = now()
 WHERE user_id = %(user_id)s AND id = %(session_id)s AND revoked_at IS NULL
"""

REVOKE_ALL_SESSIONS = """
UPDATE syntera.auth_sessions SET revoked_at = now()
 WHERE user_id = %(user_id)s AND revoked_at IS NULL
"""

REVOKE_OTHER_SESSIONS = """
UPDATE syntera.auth_sessions SET revoked_at = now()
 WHERE user_id = %(user_id)s AND id IS DISTINCT FROM %(session_id)s AND revoked_at IS NULL
"""


class EmailTaken(Exception):
    """An account with this email exists."""


class InvalidRefreshToken(Exception):
    """The refresh token is unknown, used already, or its session has ended."""


@dataclass(frozen=True)
class NewSession:
    session_id: UUID
    refresh_token: str


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_user(
    conn: TenantConnection, email: str, password_hash: str, user_metadata: dict[str, Any]
) -> dict[str, Any]:
    """A confirmed email account (the trigger of migration 004 adds its public.users row
    and, with a pending invitation, its membership)."""
    params = {
        "email": normalize_email(email),
        "password_hash": password_hash,
        "app_metadata": Jsonb(EMAIL_APP_METADATA),
        "user_metadata": Jsonb(user_metadata),
    }
    try:
        async with conn.transaction():  # a savepoint: the duplicate must not end the request
            row = await (await conn.execute(CREATE_USER, params)).fetchone()
    except UniqueViolation as error:
        raise EmailTaken(email) from error
    assert row is not None
    return row


async def find_user_by_email(conn: TenantConnection, email: str) -> dict[str, Any] | None:
    cursor = await conn.execute(FIND_USER_BY_EMAIL, {"email": normalize_email(email)})
    return await cursor.fetchone()


async def find_user(conn: TenantConnection, user_id: UUID) -> dict[str, Any] | None:
    return await (await conn.execute(FIND_USER_BY_ID, {"id": user_id})).fetchone()


async def _issue_refresh_token(conn: TenantConnection, session_id: UUID, user_id: UUID) -> str:
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    await conn.execute(
        STORE_REFRESH_TOKEN,
        {"token_hash": _token_hash(token), "session_id": session_id, "user_id": user_id},
    )
    return token


async def start_session(conn: TenantConnection, user_id: UUID) -> NewSession:
    """A new session for a user who just proved who they are, and its first token."""
    await conn.execute(MARK_SIGNED_IN, {"id": user_id})
    row = await (await conn.execute(START_SESSION, {"user_id": user_id})).fetchone()
    assert row is not None
    session_id: UUID = row["id"]
    return NewSession(session_id, await _issue_refresh_token(conn, session_id, user_id))


async def rotate_refresh_token(conn: TenantConnection, token: str) -> tuple[UUID, NewSession]:
    """Trade a refresh token for its successor: (user id, session with the new token).

    A token that was used already means it leaked or a client raced itself; like GoTrue,
    the whole session is then revoked.
    """
    token_hash = _token_hash(token)
    row = await (await conn.execute(USE_REFRESH_TOKEN, {"token_hash": token_hash})).fetchone()
    if row is None or row["session_revoked"]:
        raise InvalidRefreshToken
    if row["revoked"]:
        await conn.execute(REVOKE_SESSION, {"session_id": row["session_id"]})
        raise InvalidRefreshToken
    await conn.execute(REVOKE_REFRESH_TOKEN, {"token_hash": token_hash})
    await conn.execute(TOUCH_SESSION, {"id": row["session_id"]})
    new_token = await _issue_refresh_token(conn, row["session_id"], row["user_id"])
    return row["user_id"], NewSession(row["session_id"], new_token)


async def end_sessions(
    conn: TenantConnection, user_id: UUID, session_id: UUID | None, scope: str
) -> None:
    """Logout: ``local`` ends this session, ``others`` every other, ``global`` all."""
    params = {"user_id": user_id, "session_id": session_id}
    if scope == "local":
        await conn.execute(REVOKE_ONE_SESSION, params)
    elif scope == "others":
        await conn.execute(REVOKE_OTHER_SESSIONS, params)
    else:
        await conn.execute(REVOKE_ALL_SESSIONS, params)
