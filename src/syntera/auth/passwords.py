"""Password hashes: argon2id (argon2-cffi's recommended parameters).

Hashing costs tens of milliseconds of CPU by design, so it runs in a worker thread and
never while a database transaction is open.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

# Verified against when the email is unknown, so that "no such user" costs as much time
# as "wrong password" and the two cannot be told apart.
_DECOY_HASH = _hasher.hash("decoy password, never valid")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; a missing hash is checked against a decoy."""

    def verify() -> bool:
        try:
            return _hasher.verify(stored_hash or _DECOY_HASH, password) and bool(stored_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)
