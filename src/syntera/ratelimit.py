"""Sliding-window limits kept in Redis.

A window is a sorted set of event timestamps: events older than the window are dropped,
the rest are counted. Exact (no fixed-window burst at the boundary) and shared by every
API process.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0


@dataclass(frozen=True)
class SlidingWindow:
    """At most ``limit`` events per ``window_s`` seconds for each key."""

    redis: aioredis.Redis
    limit: int
    window_s: int
    fail_open: bool = True

    async def check(self, key: str) -> Verdict:
        """Whether one more event for ``key`` is allowed now (nothing is recorded)."""
        now = time.time()
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, 0, now - self.window_s)
                pipe.zrange(key, 0, 0, withscores=True)
                pipe.zcard(key)
                _, oldest, count = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("rate limit store unavailable (%s); failing %s", error, self._mode)
            return Verdict(self.fail_open)
        if count < self.limit:
            return Verdict(True)
        retry_after = oldest[0][1] + self.window_s - now if oldest else self.window_s
        return Verdict(False, max(1, math.ceil(retry_after)))

    async def record(self, key: str) -> None:
        """Count one event for ``key``."""
        now = time.time()
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
                pipe.expire(key, self.window_s)
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("rate limit store unavailable (%s); event not counted", error)

    async def reset(self, key: str) -> None:
        """Forget the events of ``key``."""
        try:
            await self.redis.delete(key)
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("rate limit store unavailable (%s); not reset", error)

    @property
    def _mode(self) -> str:
        return "open" if self.fail_open else "closed"
