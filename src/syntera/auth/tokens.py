"""Access tokens (JWTs, as Supabase Auth issues them) and the keys behind them.

Tokens are signed with the deployment's ES256 key (``syntera.auth.keys``) when it has
one, with the HS256 secret otherwise (``SYNTERA_JWT_SIGNING=HS256``); tokens of both kinds
verify, so tokens of a Supabase project sharing the secret keep working.

A bearer credential becomes a Principal here and nowhere else: an access token issued by
this server or by a Supabase project sharing the secret, Supabase's ``anon`` and
``service_role`` API keys (JWTs with that role), or the opaque ``SYNTERA_SERVICE_KEY``.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import jwt

from syntera.auth.keys import DECODE_OPTIONS, KeyRing
from syntera.config import Settings
from syntera.errors import Unauthorized
from syntera.tenancy import Principal

ALGORITHM = "HS256"
AUDIENCE = "authenticated"
SECRET_FILE = "jwt_secret"


class InvalidToken(Exception):
    """The bearer credential is malformed, expired, tampered with or of unknown kind."""


@dataclass(frozen=True)
class Keys:
    """The secrets that decide who a bearer is."""

    jwt_secret: str
    service_key: str | None = None
    ring: KeyRing = field(default_factory=KeyRing)  # loaded and refreshed by the app


def load_keys(settings: Settings) -> Keys:
    """The configured keys; an unset JWT secret is generated once and kept (mode 0600) in
    the data directory, so tokens survive a restart."""
    secret = settings.jwt_secret or _stored_secret(settings.data_dir / SECRET_FILE)
    return Keys(jwt_secret=secret, service_key=settings.service_key or None)


def _stored_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting together agree on the first secret written.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secret)
    return secret


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int
    expires_at: int


def issue_access_token(
    keys: Keys,
    *,
    user_id: UUID,
    email: str | None,
    session_id: UUID,
    lifetime_s: int,
    issuer: str,
    user_metadata: dict[str, Any],
    app_metadata: dict[str, Any],
    method: str = "password",
) -> AccessToken:
    """An access token with the claims Supabase Auth puts in its own."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": str(user_id),
        "aud": AUDIENCE,
        "exp": now + lifetime_s,
        "iat": now,
        "email": email or "",
        "phone": "",
        "app_metadata": app_metadata,
        "user_metadata": user_metadata,
        "role": "authenticated",
        "aal": "aal1",
        "amr": [{"method": method, "timestamp": now}],
        "session_id": str(session_id),
        "is_anonymous": False,
    }
    signing = keys.ring.signing
    if signing is not None:
        token = jwt.encode(
            claims, signing.private_key, algorithm="ES256", headers={"kid": signing.kid}
        )
    else:
        token = jwt.encode(claims, keys.jwt_secret, algorithm=ALGORITHM)
    return AccessToken(token, lifetime_s, now + lifetime_s)


# Supabase's API keys are long-lived HS256 JWTs of the project's secret that carry only
# the issuer, the project, the role and the times. Ours are a function of the secret
# (fixed times), so `syntera auth keys` prints the same keys every time and a new secret
# revokes them; ES256 rotations leave them alone, as on Supabase.
API_KEY_ISSUER = "supabase"
API_KEY_PROJECT = "syntera"
API_KEY_ISSUED_AT = 1_735_689_600  # 2025-01-01T00:00:00Z
API_KEY_EXPIRES_AT = 2_051_222_400  # 2035-01-01T00:00:00Z
ApiKeyRole = Literal["anon", "service_role"]


def api_key(keys: Keys, role: ApiKeyRole) -> str:
    """The project's ``anon`` or ``service_role`` API key, as a Supabase project's: a
    JWT of that role signed with the HS256 secret. The service-role key bypasses
    row-level security (the role has BYPASSRLS): it is a secret of the servers."""
    claims = {"iss": API_KEY_ISSUER, "ref": API_KEY_PROJECT, "role": role,
              "iat": API_KEY_ISSUED_AT, "exp": API_KEY_EXPIRES_AT}  # fmt: skip
    return jwt.encode(claims, keys.jwt_secret, algorithm=ALGORITHM)


def principal_from_bearer(credential: str, keys: Keys, *, any_role: bool = False) -> Principal:
    """The principal a bearer credential stands for; InvalidToken if it stands for none.
    With ``any_role`` (the data API, as PostgREST), a token may name any other role: the
    database decides whether the API's login may become it."""
    if keys.service_key and hmac.compare_digest(credential.encode(), keys.service_key.encode()):
        return Principal.service()
    try:
        header = _unverified_header(credential)
        if header.get("alg") == "ES256":
            claims = keys.ring.verified(credential, str(header.get("kid")))
            expires, principal = _expiry(claims), _principal_of(claims, any_role)
        else:
            expires, principal = _verified_principal(credential, keys.jwt_secret, any_role)
    except jwt.PyJWTError as error:
        raise InvalidToken(str(error)) from error
    if expires is None or expires <= time.time():
        raise InvalidToken("Signature has expired")  # checked again on every use
    return principal


def authenticator(keys: Keys, *, any_role: bool = False) -> Callable[[str], Principal]:
    """``principal_from_bearer`` over ``keys``, for the HTTP layer: a credential that
    stands for no one is Unauthorized."""

    def authenticate(credential: str) -> Principal:
        try:
            return principal_from_bearer(credential, keys, any_role=any_role)
        except InvalidToken as error:
            raise Unauthorized(f"invalid token: {error}") from error

    return authenticate


# A client sends the same token with every request for an hour, and reading and
# verifying it was a measurable share of a request's CPU (py-spy: 4-5% of a fast read),
# so what a token says is remembered. Only what succeeded is remembered (failures
# raise); expiry is checked by the caller on every use. ES256 tokens are verified by the
# key ring on every use, since its keys can be rotated away.


# Anyone can send a token whose header parses, so only tokens of a plausible length have
# their header remembered: the cache holds at most 4096 x 4 KiB.
_REMEMBERED_HEADER_CHARS = 4096


def _unverified_header(credential: str) -> dict[str, Any]:
    if len(credential) > _REMEMBERED_HEADER_CHARS:
        header: dict[str, Any] = jwt.get_unverified_header(credential)
        return header
    return _remembered_header(credential)


@lru_cache(maxsize=4096)
def _remembered_header(credential: str) -> dict[str, Any]:
    header: dict[str, Any] = jwt.get_unverified_header(credential)
    return header


@lru_cache(maxsize=4096)
def _verified_principal(
    credential: str, secret: str, any_role: bool = False
) -> tuple[float | None, Principal]:
    """The expiry and principal of a correctly signed HS256 token."""
    claims: dict[str, Any] = jwt.decode(
        credential, secret, algorithms=[ALGORITHM], options=DECODE_OPTIONS
    )
    return _expiry(claims), _principal_of(claims, any_role)


def _expiry(claims: dict[str, Any]) -> float | None:
    expires = claims["exp"]
    return float(expires) if isinstance(expires, int | float) else None


def _principal_of(claims: dict[str, Any], any_role: bool = False) -> Principal:
    role = claims.get("role")
    if role == "authenticated":
        return _user_principal(claims)
    if role == "service_role":
        return Principal.service()
    if role == "anon":
        return Principal.anonymous()
    if any_role and isinstance(role, str) and role:
        return Principal(role, None, claims)
    raise InvalidToken(f"unknown role {role!r}")


def _user_principal(claims: dict[str, Any]) -> Principal:
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if AUDIENCE not in audiences:
        raise InvalidToken("token audience is not 'authenticated'")
    try:
        user_id = UUID(str(claims.get("sub")))
    except ValueError as error:
        raise InvalidToken("token subject is not a user id") from error
    return Principal("authenticated", user_id, claims)
