"""One-time tokens: recovery, magic links and codes, email confirmation and change.

A token is sent as a link (``token`` of ``/auth/v1/verify``: 32 random bytes) and as a
six-digit code for the same row; both are kept as digests (the code's keyed with the
deployment's secret and bound to the address, so the table does not give it away). A
token is spent by its first use, expires after ``SYNTERA_AUTH_TOKEN_LIFETIME_S``, and
issuing a new one of the same kind spends the user's earlier ones.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from syntera.db.postgres import TenantConnection

KINDS = ("recovery", "magiclink", "signup", "invite", "email_change")

# What each GoTrue verification type may spend. "email" is the code of a sign-in or a
# confirmation mail; a magic link to a new user confirms their address as well.
ACCEPTS: dict[str, tuple[str, ...]] = {
    "recovery": ("recovery",),
    "magiclink": ("magiclink", "signup"),
    "signup": ("signup",),
    "invite": ("invite",),
    "email_change": ("email_change",),
    "email": ("magiclink", "signup", "invite"),
}

SPEND_EARLIER = """
UPDATE syntera.auth_tokens SET used_at = now()
 WHERE user_id = %(user_id)s AND kind = %(kind)s AND used_at IS NULL
"""

ISSUE = """
INSERT INTO syntera.auth_tokens
  (kind, user_id, email, link_hash, code_hash, redirect_to, expires_at)
VALUES (%(kind)s, %(user_id)s, %(email)s, %(link_hash)s, %(code_hash)s, %(redirect_to)s,
        now() + make_interval(secs => %(lifetime_s)s))
"""

# One statement checks and spends: of two concurrent uses, one wins.
SPEND_LINK = """
UPDATE syntera.auth_tokens SET used_at = now()
 WHERE link_hash = %(link_hash)s AND used_at IS NULL AND expires_at > now()
   AND kind = ANY(%(kinds)s)
RETURNING id, kind, user_id, email, redirect_to
"""

SPEND_CODE = """
UPDATE syntera.auth_tokens SET used_at = now()
 WHERE id = (
   SELECT id FROM syntera.auth_tokens
    WHERE lower(email) = %(email)s AND code_hash = %(code_hash)s AND used_at IS NULL
      AND expires_at > now() AND kind = ANY(%(kinds)s)
    ORDER BY created_at DESC LIMIT 1
    FOR UPDATE)
RETURNING id, kind, user_id, email, redirect_to
"""

PENDING_EMAIL_CHANGE = """
SELECT email FROM syntera.auth_tokens
 WHERE user_id = %(user_id)s AND kind = 'email_change' AND used_at IS NULL
   AND expires_at > now()
 ORDER BY created_at DESC LIMIT 1
"""


@dataclass(frozen=True)
class Issued:
    link_token: str  # also what GoTrue calls token_hash (of verify) and hashed_token
    code: str


def link_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def code_digest(secret: str, email: str, code: str) -> bytes:
    message = f"{email.strip().lower()}:{code.strip()}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


async def issue(
    conn: TenantConnection,
    secret: str,
    kind: str,
    user_id: UUID,
    email: str,
    redirect_to: str | None,
    lifetime_s: int,
) -> Issued:
    """A new token of ``kind`` sent to ``email`` (the user's earlier ones are spent)."""
    link = secrets.token_urlsafe(32)
    code = f"{secrets.randbelow(1_000_000):06d}"
    await conn.execute(SPEND_EARLIER, {"user_id": user_id, "kind": kind})
    await conn.execute(ISSUE, {
        "kind": kind, "user_id": user_id, "email": email.strip().lower(),
        "link_hash": link_digest(link), "code_hash": code_digest(secret, email, code),
        "redirect_to": redirect_to, "lifetime_s": lifetime_s,
    })  # fmt: skip
    return Issued(link, code)


async def spend_link(conn: TenantConnection, token: str, verify_type: str) -> dict[str, Any] | None:
    """The token's row, now spent; None if it is unknown, spent, expired or of a kind
    ``verify_type`` does not accept."""
    kinds = list(ACCEPTS.get(verify_type, ()))
    params = {"link_hash": link_digest(token), "kinds": kinds}
    return await (await conn.execute(SPEND_LINK, params)).fetchone()


async def spend_code(
    conn: TenantConnection, secret: str, email: str, code: str, verify_type: str
) -> dict[str, Any] | None:
    kinds = list(ACCEPTS.get(verify_type, ()))
    params = {"email": email.strip().lower(), "code_hash": code_digest(secret, email, code),
              "kinds": kinds}  # fmt: skip
    return await (await conn.execute(SPEND_CODE, params)).fetchone()


async def pending_email_change(conn: TenantConnection, user_id: UUID) -> str | None:
    row = await (await conn.execute(PENDING_EMAIL_CHANGE, {"user_id": user_id})).fetchone()
    return row["email"] if row else None
