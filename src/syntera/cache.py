"""Cache-aside in Redis that never serves a value older than the last committed write.

Every cached value belongs to a *generation key*. A value is stored together with the
generation it was loaded under; a write, after its transaction commits, replaces the
generation with a fresh random token (``invalidate``). A read fetches the value and the
current generation in one round trip (MGET) and uses the value only if they match. So a
reader that loaded old data just before a write cannot make it stick: its entry carries
the old generation and is ignored from the moment the write has invalidated. Because the
check is in Redis, every API process sees a write at once.

Also:
* stampede protection: concurrent misses of one key in a process share one load;
* versioned entries: ``CACHE_VERSION`` is part of every key, so entries written by an
  older deploy are never read;
* degradation: when Redis fails or is slower than its timeout, reads go to the database
  and writes still succeed; each such fallback is counted (``syntera_redis_fallbacks``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from syntera.db.redis import REDIS_ERRORS, RedisClient
from syntera.metrics import CACHE_REQUESTS, REDIS_FALLBACKS

log = logging.getLogger(__name__)

CACHE_VERSION = "c1"
# Generation tokens outlive every value they guard (values live minutes), so a value can
# never meet an expired-and-recreated generation that happens to match it.
GENERATION_TTL_S = 24 * 3600


def _json_default(value: Any) -> Any:
    return str(value)  # Decimal, and anything else orjson does not know, as text


@dataclass(frozen=True)
class TimesToLive:
    """How long each kind of value may stay cached (seconds)."""

    agent_s: int = 300
    conversation_s: int = 60
    messages_s: int = 120


class Cache:
    """Cache-aside reads and generation invalidation over one Redis client."""

    def __init__(
        self, redis: RedisClient, timeout_s: float, ttl: TimesToLive | None = None
    ) -> None:
        self._redis = redis
        self._timeout_s = timeout_s
        self.ttl = ttl or TimesToLive()
        self._loading: dict[str, asyncio.Future[Any]] = {}

    @property
    def redis(self) -> RedisClient:
        """The Redis client the cache reads (for the few reads that share it: presence)."""
        return self._redis

    async def read(
        self,
        name: str,
        key: str,
        generation_key: str,
        ttl_s: int,
        load: Callable[[], Awaitable[Any]],
    ) -> Any:
        """The cached value of ``key`` if it is current, else ``load()`` (and cache it).
        ``load`` returns something JSON can hold, or None (not cached)."""
        try:
            async with asyncio.timeout(self._timeout_s):
                raw, generation = await self._redis.mget(key, generation_key)
        except REDIS_ERRORS as error:
            self._fallback(f"{name}_read", error)
            return await load()
        current = generation.decode() if isinstance(generation, bytes) else (generation or "")
        if raw is not None:
            entry = orjson.loads(raw)
            if entry.get("g") == current:
                CACHE_REQUESTS.labels(name, "hit").inc()
                return entry["v"]
        CACHE_REQUESTS.labels(name, "miss").inc()
        return await self._load_once(name, key, current, ttl_s, load)

    async def _load_once(
        self,
        name: str,
        key: str,
        generation: str,
        ttl_s: int,
        load: Callable[[], Awaitable[Any]],
    ) -> Any:
        pending = self._loading.get(key)
        if pending is not None:  # another request of this process is loading it
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        if value is not None:
            try:
                entry = orjson.dumps({"g": generation, "v": value}, default=_json_default)
            except (TypeError, orjson.JSONEncodeError) as error:  # e.g. an int beyond 64 bits
                log.info("cache %s: value not cacheable (%s); served uncached", name, error)
                return value
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._redis.set(key, entry, ex=ttl_s)
            except REDIS_ERRORS as error:
                self._fallback(f"{name}_fill", error)
        return value

    async def invalidate(self, *generation_keys: str) -> None:
        """Make every value under these generations stale, in every process."""
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for generation_key in generation_keys:
                        pipe.set(generation_key, secrets.token_hex(8), ex=GENERATION_TTL_S)
                    await pipe.execute()
        except REDIS_ERRORS as error:
            # Values already cached under the old generation may be served until their
            # TTL runs out; that is the bound on staleness while Redis misbehaves.
            self._fallback("invalidate", error)

    @staticmethod
    def _fallback(operation: str, error: BaseException) -> None:
        REDIS_FALLBACKS.labels(operation).inc()
        log.warning("cache %s without Redis: %r", operation, error)
