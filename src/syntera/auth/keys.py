"""Asymmetric signing keys of access tokens (ES256), as Supabase's JWT signing keys.

The keys live in ``syntera.signing_keys``, so every API process of a deployment signs
and verifies with the same set. Each process holds a ``KeyRing`` reloaded every
``SYNTERA_AUTH_KEYS_REFRESH_S``: the newest key whose ``signing_from`` has passed signs,
every key not retired verifies, and the public halves are served as a JWKS at
``/auth/v1/.well-known/jwks.json``. ``syntera auth rotate-key`` adds a key that starts
signing two refresh periods later — by then every process knows it, so no process sees
a token signed by a key it has not loaded — while tokens of the previous key stay valid
until ``syntera auth retire-key`` retires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from typing import Any

import jwt
import psycopg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from jwt.types import Options
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from syntera.db.postgres import TenantConnection
from syntera.unit_of_work import system_transaction

log = logging.getLogger(__name__)

ALGORITHM = "ES256"
# What every access token must carry. Supabase's anon and service_role keys carry no
# audience, so the audience is checked by the caller, for user tokens only.
DECODE_OPTIONS: Options = {"require": ["exp", "role"], "verify_aud": False}

LOAD = """
SELECT kid, private_key, public_jwk, signing_from <= now() AS signs
  FROM syntera.signing_keys
 WHERE retired_at IS NULL
 ORDER BY signing_from DESC, created_at DESC
"""

INSERT = """
INSERT INTO syntera.signing_keys (kid, private_key, public_jwk, signing_from)
VALUES (%(kid)s, %(private_key)s, %(public_jwk)s, now() + make_interval(secs => %(delay_s)s))
"""

LIST = """
SELECT kid, algorithm, created_at, signing_from, retired_at
  FROM syntera.signing_keys ORDER BY created_at
"""


class KeyOperationError(ValueError):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey


@dataclass
class KeyRing:
    """The signing keys one process knows (empty: tokens are signed with HS256)."""

    signs: bool = True  # False: sign with the HS256 secret, verify the keys still
    signing: SigningKey | None = None
    public: dict[str, Any] = field(default_factory=dict)  # kid -> public key object
    jwks: list[dict[str, Any]] = field(default_factory=list)
    # Verified claims by (token, kid), remembered like the HS256 ones (a client sends one
    # token for an hour); a new cache with every change, so a retired key's go with it.
    verified: Callable[[str, str], dict[str, Any]] = field(
        default_factory=lambda: lru_cache(maxsize=4096)(partial(_decode, {}))
    )

    def replace(self, rows: list[dict[str, Any]]) -> None:
        public = {row["kid"]: ECAlgorithm.from_jwk(row["public_jwk"]) for row in rows}
        signer = next((row for row in rows if row["signs"]), None) if self.signs else None
        signing = None
        if signer is not None:
            private = serialization.load_pem_private_key(signer["private_key"].encode(), None)
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            signing = SigningKey(signer["kid"], private)
        changed = set(public) != set(self.public) or (signing and signing.kid) != (
            self.signing and self.signing.kid
        )
        self.public, self.signing = public, signing
        self.jwks = [row["public_jwk"] for row in rows]
        if changed:
            self.verified = lru_cache(maxsize=4096)(partial(_decode, public))


def _decode(public: dict[str, Any], credential: str, kid: str) -> dict[str, Any]:
    """The claims of a token signed by key ``kid``; jwt's errors if the key is unknown,
    or the signature or the claims are wrong (errors are not cached: they raise)."""
    key = public.get(kid)
    if key is None:
        raise jwt.InvalidKeyError(f"unknown signing key {kid!r}")
    claims: dict[str, Any] = jwt.decode(
        credential, key, algorithms=[ALGORITHM], options=DECODE_OPTIONS
    )
    return claims


def new_key() -> tuple[str, str, dict[str, Any]]:
    """A fresh P-256 key: (kid, PKCS#8 PEM, public JWK)."""
    private = ec.generate_private_key(ec.SECP256R1())
    kid = str(uuid.uuid4())
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    jwk.update(kid=kid, alg=ALGORITHM, use="sig", key_ops=["verify"])
    return kid, pem, jwk


async def load(conn: TenantConnection, ring: KeyRing) -> None:
    ring.replace(await (await conn.execute(LOAD)).fetchall())


async def ensure_key(conn: TenantConnection) -> None:
    """Create the first key if there is none (one process wins; the others wait on the
    lock and find it)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('syntera.signing_keys'))")
    found = await (await conn.execute("SELECT 1 FROM syntera.signing_keys LIMIT 1")).fetchone()
    if found is None:
        kid, pem, jwk = new_key()
        await conn.execute(
            INSERT, {"kid": kid, "private_key": pem, "public_jwk": Jsonb(jwk), "delay_s": 0}
        )


async def keep_loaded(pool: AsyncConnectionPool[Any], ring: KeyRing, interval_s: float,
                      stop: asyncio.Event, first_try: asyncio.Event) -> None:  # fmt: skip
    """Load the ring (creating the first key if it signs and there is none), then reload
    it every ``interval_s`` until ``stop``. ``first_try`` is set once the first attempt
    is over; until one succeeds, attempts repeat every second (the database may not be
    up yet) and a failed reload keeps the keys known so far."""
    loaded = False
    while not stop.is_set():
        try:
            async with system_transaction(pool) as conn:
                if ring.signs and not loaded:
                    await ensure_key(conn)
                await load(conn, ring)
            loaded = True
        except Exception:
            log.warning("signing keys: loading failed; keeping the keys known", exc_info=True)
        first_try.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s if loaded else min(interval_s, 1))


# The command line's side: plain connections as the owner.


def rotate(conn: psycopg.Connection[Any], delay_s: float) -> str:
    """Add a key that starts signing in ``delay_s`` seconds; its kid."""
    kid, pem, jwk = new_key()
    conn.execute(
        INSERT, {"kid": kid, "private_key": pem, "public_jwk": Jsonb(jwk), "delay_s": delay_s}
    )
    return kid


def retire(conn: psycopg.Connection[Any], kid: str) -> None:
    """Retire a key: tokens it signed stop verifying. The key that signs now can be
    retired only once a newer one signs."""
    rows = conn.execute(
        "SELECT kid, signing_from <= now() AS signs, retired_at FROM syntera.signing_keys"
        " WHERE retired_at IS NULL OR kid = %s ORDER BY signing_from DESC, created_at DESC",
        (kid,),
    ).fetchall()
    target = next((row for row in rows if row[0] == kid), None)
    if target is None:
        raise KeyOperationError(f"no signing key {kid}")
    if target[2] is not None:
        raise KeyOperationError(f"key {kid} is retired already")
    current = next((row[0] for row in rows if row[1] and row[2] is None), None)
    if current == kid:
        raise KeyOperationError(
            f"key {kid} signs the tokens being issued; rotate first and retire it once the "
            "new key signs"
        )
    conn.execute("UPDATE syntera.signing_keys SET retired_at = now() WHERE kid = %s", (kid,))


def listing(conn: psycopg.Connection[Any]) -> list[tuple[str, str, datetime, datetime, Any]]:
    return conn.execute(LIST).fetchall()
