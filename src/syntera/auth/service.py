"""Accounts, sessions and refresh tokens. Every function runs in a service_role transaction
(the auth server acts before there is a signed-in user) and never commits."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.errors import UniqueViolation
from psycopg.types.json import Jsonb

from syntera.db.postgres import TenantConnection
from syntera.db.storable import jsonb

REFRESH_TOKEN_BYTES = 32
EMAIL_APP_METADATA = {"provider": "email", "providers": ["email"]}

USER_COLUMNS = sql.SQL("""
  id, email, encrypted_password, email_confirmed_at, last_sign_in_at, banned_until,
  coalesce(raw_app_meta_data, '{}') AS app_metadata,
  coalesce(raw_user_meta_data, '{}') AS user_metadata,
  created_at, updated_at
""")

CREATE_USER = sql.SQL("""
INSERT INTO auth.users (
  aud, role, email, encrypted_password, email_confirmed_at, raw_app_meta_data,
  raw_user_meta_data
)
VALUES ('authenticated', 'authenticated', %(email)s, %(password_hash)s,
        CASE WHEN %(confirmed)s THEN now() END, %(app_metadata)s, %(user_metadata)s)
RETURNING {columns}
""").format(columns=USER_COLUMNS)

# A magic link's account, unless the address has one (one statement either way).
CREATE_USER_IF_MISSING = """
INSERT INTO auth.users (aud, role, email, raw_app_meta_data, raw_user_meta_data)
VALUES ('authenticated', 'authenticated', %(email)s, %(app_metadata)s, %(user_metadata)s)
ON CONFLICT (lower(email)) WHERE email IS NOT NULL DO NOTHING
"""

# Accounts that may sign in: not deleted, not banned.
FIND_USER_BY_EMAIL = sql.SQL("""
SELECT {columns} FROM auth.users
 WHERE lower(email) = %(email)s
   AND deleted_at IS NULL
   AND (banned_until IS NULL OR banned_until < now())
""").format(columns=USER_COLUMNS)

# Any account with the address, banned or not (an address can have one account).
FIND_ANY_USER_BY_EMAIL = sql.SQL("""
SELECT {columns} FROM auth.users WHERE lower(email) = %(email)s AND deleted_at IS NULL
""").format(columns=USER_COLUMNS)

FIND_USER_BY_ID = sql.SQL("""
SELECT {columns} FROM auth.users
 WHERE id = %(id)s AND deleted_at IS NULL
""").format(columns=USER_COLUMNS)

LIST_USERS = sql.SQL("""
SELECT {columns} FROM auth.users WHERE deleted_at IS NULL
 ORDER BY created_at, id LIMIT %(limit)s OFFSET %(offset)s
""").format(columns=USER_COLUMNS)

COUNT_USERS = "SELECT count(*) FROM auth.users WHERE deleted_at IS NULL"

# A soft delete keeps the row (GoTrue's should_soft_delete) but nothing that signs in or
# belongs: sessions end, the membership goes, the address is freed.
SOFT_DELETE_USER = """
WITH ended AS (
  UPDATE syntera.auth_sessions SET revoked_at = now()
   WHERE user_id = %(id)s AND revoked_at IS NULL
), left_company AS (
  DELETE FROM public.users WHERE id = %(id)s
)
UPDATE auth.users
   SET deleted_at = now(), email = NULL, encrypted_password = NULL, updated_at = now()
 WHERE id = %(id)s
"""

DELETE_MAIL_ASKS = "DELETE FROM syntera.mail_outbox WHERE email = lower(%(email)s)"

# The companies a user owns, each with another owner who could take it over (or NULL)
# and its member count.
OWNED_COMPANIES = """
SELECT c.id, c.name,
       (SELECT u.id FROM public.users u
         WHERE u.company_id = c.id AND u.role = 'owner' AND u.id <> %(id)s
         ORDER BY u.created_at LIMIT 1) AS successor,
       (SELECT count(*) FROM public.users u WHERE u.company_id = c.id) AS members
  FROM public.companies c
 WHERE c.owner_id = %(id)s
 ORDER BY c.created_at
 FOR UPDATE OF c
"""

MARK_SIGNED_IN = "UPDATE auth.users SET last_sign_in_at = now() WHERE id = %(id)s"

START_SESSION = """
INSERT INTO syntera.auth_sessions (user_id) VALUES (%(user_id)s) RETURNING id
"""

STORE_REFRESH_TOKEN = """
INSERT INTO syntera.refresh_tokens (token_hash, session_id, user_id)
VALUES (%(token_hash)s, %(session_id)s, %(user_id)s)
"""

# Lock the token's row so that two concurrent refreshes with one token cannot both win.
# A banned or deleted user's tokens stop working.
USE_REFRESH_TOKEN = """
SELECT t.session_id, t.user_id, t.revoked,
       s.revoked_at IS NOT NULL OR u.deleted_at IS NOT NULL OR u.banned_until > now()
         AS session_revoked
  FROM syntera.refresh_tokens t
  JOIN syntera.auth_sessions s ON s.id = t.session_id
  JOIN auth.users u ON u.id = t.user_id
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


# The first statement of a change of credentials or sessions: lock the account, so that
# the changes of one user run one after another, and read it as the last committed change
# left it (a locking read sees the newest version of its row).
LOCK_USER = """
SELECT coalesce(banned_until > now(), false) AS banned FROM auth.users
 WHERE id = %(id)s AND deleted_at IS NULL
   FOR NO KEY UPDATE
"""

# The second: whether the access token's session goes on (by primary key). A statement of
# its own, after the lock, so that it sees a session ended by a change it waited for.
SESSION_GOES_ON = """
SELECT 1 AS live FROM syntera.auth_sessions
 WHERE id = %(session_id)s AND user_id = %(id)s AND revoked_at IS NULL
"""


class SessionState(enum.Enum):
    """Where the session of an access token stands (``hold_session``)."""

    LIVE = "live"
    ENDED = "ended"  # logged out, ended by a password change, or never existed here
    BANNED = "banned"
    NO_USER = "no_user"  # deleted


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
    conn: TenantConnection,
    email: str,
    password_hash: str | None,
    user_metadata: dict[str, Any],
    *,
    confirmed: bool = True,
    app_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An email account, confirmed unless ``confirmed`` is false, with a password unless
    ``password_hash`` is None (the trigger of migration 004 adds its public.users row
    and, with a pending invitation, its membership)."""
    params = {
        "email": normalize_email(email),
        "password_hash": password_hash,
        "confirmed": confirmed,
        "app_metadata": jsonb("app_metadata", {**(app_metadata or {}), **EMAIL_APP_METADATA}),
        "user_metadata": jsonb("data", user_metadata),
    }
    try:
        async with conn.transaction():  # a savepoint: the duplicate must not end the request
            row = await (await conn.execute(CREATE_USER, params)).fetchone()
    except UniqueViolation as error:
        raise EmailTaken(email) from error
    assert row is not None
    return row


async def create_user_if_missing(
    conn: TenantConnection, email: str, user_metadata: dict[str, Any]
) -> None:
    """An unconfirmed account without a password for ``email``, unless it has one."""
    await conn.execute(CREATE_USER_IF_MISSING, {
        "email": normalize_email(email), "app_metadata": Jsonb(EMAIL_APP_METADATA),
        "user_metadata": jsonb("data", user_metadata),
    })  # fmt: skip


async def find_user_by_email(conn: TenantConnection, email: str) -> dict[str, Any] | None:
    cursor = await conn.execute(FIND_USER_BY_EMAIL, {"email": normalize_email(email)})
    return await cursor.fetchone()


async def find_any_user_by_email(conn: TenantConnection, email: str) -> dict[str, Any] | None:
    cursor = await conn.execute(FIND_ANY_USER_BY_EMAIL, {"email": normalize_email(email)})
    return await cursor.fetchone()


async def find_user(conn: TenantConnection, user_id: UUID) -> dict[str, Any] | None:
    return await (await conn.execute(FIND_USER_BY_ID, {"id": user_id})).fetchone()


async def update_user(conn: TenantConnection, user_id: UUID, **changes: Any) -> dict[str, Any]:
    """Set columns of auth.users: ``encrypted_password``, ``email`` (EmailTaken),
    ``email_confirmed_at`` (``"now"`` confirms unless confirmed), ``banned_until``,
    ``raw_user_meta_data`` / ``raw_app_meta_data`` (merged into what is there); the row
    as it is now."""
    assignments: list[sql.Composable] = [sql.SQL("updated_at = now()")]
    params: dict[str, Any] = {"id": user_id}
    for column, value in changes.items():
        if column in ("raw_user_meta_data", "raw_app_meta_data"):
            assignments.append(sql.SQL("{0} = coalesce({0}, '{{}}') || %({1})s").format(
                sql.Identifier(column), sql.SQL(column)
            ))  # fmt: skip
            field = "data" if column == "raw_user_meta_data" else "app_metadata"
            params[column] = jsonb(field, value)
        elif column == "email_confirmed_at" and value == "now":
            assignments.append(sql.SQL("email_confirmed_at = coalesce(email_confirmed_at, now())"))
        elif column in ("encrypted_password", "email", "email_confirmed_at", "banned_until"):
            assignments.append(sql.SQL("{} = %({})s").format(sql.Identifier(column),
                                                             sql.SQL(column)))  # fmt: skip
            params[column] = normalize_email(value) if column == "email" else value
        else:
            raise ValueError(f"not a column update_user sets: {column}")
    statement = sql.SQL("UPDATE auth.users SET {} WHERE id = %(id)s RETURNING {}").format(
        sql.SQL(", ").join(assignments), USER_COLUMNS
    )
    try:
        async with conn.transaction():  # a savepoint: a taken email must not end the request
            row = await (await conn.execute(statement, params)).fetchone()
    except UniqueViolation as error:
        raise EmailTaken(changes.get("email", "")) from error
    assert row is not None
    return row


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


async def hold_session(
    conn: TenantConnection, user_id: UUID, session_id: UUID | None
) -> SessionState:
    """Where the session ``session_id`` of ``user_id`` stands, the account locked until
    the transaction ends: what a change of credentials or sessions checks first, in its
    own transaction, so that no change is made for a session that has ended before it
    commits. An access token without a session names none that goes on."""
    row = await (await conn.execute(LOCK_USER, {"id": user_id})).fetchone()
    if row is None:
        return SessionState.NO_USER
    params = {"id": user_id, "session_id": session_id}
    if session_id is None or await (await conn.execute(SESSION_GOES_ON, params)).fetchone() is None:
        return SessionState.ENDED
    return SessionState.BANNED if row["banned"] else SessionState.LIVE


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
