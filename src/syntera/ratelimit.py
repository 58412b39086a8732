"""Sliding-window limits kept in Redis, shared by every API process.

Two forms. ``SlidingWindow`` keeps each event in a sorted set: exact, for low-volume
limits that must be exact (failed sign-ins per email). ``Limiters.enforce_all``, on every
request's path, uses the sliding-window counter: the current fixed window's count plus the
previous window's, weighted by how much of it the sliding window still covers — O(1),
one Lua round trip for all of a request's limits, and an approximation that assumes the
previous window's events were spread evenly (as Cloudflare's limiter does). It is taken
in leases: one round trip reserves several requests, which the process then admits with
none.

When Redis does not answer within its timeout, a limit either lets the request through
(``fail_open``: signed-in users, who are accountable) or refuses it (the anonymous widget);
every such fallback is counted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from redis.commands.core import AsyncScript

from syntera.config import Settings
from syntera.db.redis import REDIS_ERRORS, RedisClient
from syntera.errors import RateLimited, Unavailable
from syntera.metrics import REDIS_FALLBACKS

log = logging.getLogger(__name__)

# KEYS[1] the window; ARGV: now (s), window (s), limit, member. Checks and counts in one
# step: concurrent callers cannot all pass a check before any of them is counted.
# Returns {allowed (1/0), seconds until the oldest event leaves the window}.
_HIT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(window))
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tostring(tonumber(oldest[2]) + window - now)}
"""


# The limits on the request path use the sliding-window *counter* (two fixed windows,
# the previous one weighted by how much of it still overlaps the sliding window): O(1)
# work and two small keys per limit, where the sorted set above grows with the traffic
# (measured: 263 us per check at 3,000 members against ~100 us for a plain GET).
#
# The same counter, taken a batch at a time: a process that finds room reserves a lease of
# several requests at once (counted in Redis now) and spends it without asking again, so
# a busy user costs one round trip per lease, not per request. A lease is a share of the
# room left (1/LEASE_SHARE, at most LEASE_MAX), so near the limit it shrinks to one
# request and the counter is exact; it never admits more than the limit, since every
# request it admits was counted before. What a lease leaves unused at the end of its window
# is lost (at most a share of the room, per process).
# KEYS: per limit, its current and previous window's counters. ARGV: the fraction of the
# current window elapsed, LEASE_SHARE, LEASE_MAX, then per limit its limit and window (s).
# Returns {index of the first full limit (0: none), seconds until it has room, lease}.
LEASE_SHARE = 16
LEASE_MAX = 64
MAX_LEASES = 10_000  # users with a lease held by one process
_LEASE_ALL = """
local elapsed, share, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS / 2
local lease = most
for i = 1, n do
  local limit = tonumber(ARGV[2 * i + 2])
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local room = limit - (previous * (1 - elapsed) + current)
  if room < 1 then
    return {i, tostring((1 - elapsed) * tonumber(ARGV[2 * i + 3])), 0}
  end
  lease = math.min(lease, math.max(1, math.floor(room / share)))
end
for i = 1, n do
  redis.call('INCRBY', KEYS[2 * i - 1], lease)
  redis.call('EXPIRE', KEYS[2 * i - 1], 2 * math.ceil(tonumber(ARGV[2 * i + 3])))
end
return {0, 0, lease}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0
    degraded: bool = False  # Redis did not answer; the limit's fallback decided


@dataclass(frozen=True)
class SlidingWindow:
    """At most ``limit`` events per ``window_s`` seconds for each key."""

    redis: RedisClient
    limit: int
    window_s: float
    timeout_s: float
    fail_open: bool = True
    name: str = "rate_limit"

    async def hit(self, key: str) -> Verdict:
        """Count one event for ``key`` if the window has room; whether it had."""
        return await self._run(key)

    async def reset(self, key: str) -> None:
        """Forget the events of ``key``."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.delete(key)
        except REDIS_ERRORS as error:
            self._fallback(error, "not reset")

    async def _run(self, key: str) -> Verdict:
        now = time.time()
        member = f"{now}:{secrets.token_hex(4)}"
        try:
            async with asyncio.timeout(self.timeout_s):
                allowed, retry_after = await self.redis.eval(
                    _HIT, 1, key, now, self.window_s, self.limit, member
                )
        except REDIS_ERRORS as error:
            self._fallback(error, "failing " + ("open" if self.fail_open else "closed"))
            return Verdict(self.fail_open, 0 if self.fail_open else 1, degraded=True)
        if int(allowed):
            return Verdict(True)
        return Verdict(False, max(1, math.ceil(float(retry_after))))

    def _fallback(self, error: BaseException, what: str) -> None:
        REDIS_FALLBACKS.labels(self.name).inc()
        log.warning("rate limit %s: Redis unavailable (%r); %s", self.name, error, what)


@dataclass(frozen=True)
class Limiters:
    """Every limit of one API process."""

    lease_all: AsyncScript  # sent once, then called by its SHA (EVALSHA)
    enabled: bool
    api_user: SlidingWindow
    widget_key: SlidingWindow
    widget_session: SlidingWindow
    sign_in_email_failures: SlidingWindow
    sign_in_ip: SlidingWindow
    typing: SlidingWindow
    mail_email: SlidingWindow
    mail_ip: SlidingWindow
    verify_email: SlidingWindow
    verify_ip: SlidingWindow
    # This process's unspent leases: the window counters' keys → requests left.
    leases: dict[tuple[str, ...], int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, redis: RedisClient) -> Limiters:
        def window(name: str, limit: int, window_s: float, fail_open: bool) -> SlidingWindow:
            return SlidingWindow(
                redis, limit, window_s, settings.redis_timeout_s, fail_open=fail_open, name=name
            )

        users_open = settings.rate_limit_users_fail_open
        widget_open = settings.rate_limit_widget_fail_open
        return cls(
            lease_all=redis.register_script(_LEASE_ALL),
            enabled=settings.rate_limits_enabled,
            api_user=window("api_user", settings.rate_limit_api_per_minute, 60, users_open),
            widget_key=window(
                "widget_key", settings.rate_limit_widget_key_per_minute, 60, widget_open
            ),
            widget_session=window(
                "widget_session", settings.rate_limit_widget_session_per_minute, 60, widget_open
            ),
            sign_in_email_failures=window(
                "sign_in_email",
                settings.sign_in_max_failures,
                settings.sign_in_failure_window_s,
                True,  # a password check still stands behind it
            ),
            sign_in_ip=window(
                "sign_in_ip", settings.rate_limit_sign_in_per_ip_per_minute, 60, True
            ),
            typing=window("typing", settings.rate_limit_typing_per_minute, 60, True),
            # Auth mail and verifications: closed when Redis is down (a flood of mail, or
            # of guessed codes, is what they stop).
            mail_email=window("mail_email", 1, settings.rate_limit_mail_per_email_s, False),
            mail_ip=window("mail_ip", settings.rate_limit_mail_per_ip_per_hour, 3600, False),
            # Verifications: the codes of one email, and any token from one client address
            # (ten times as many: a shared address is many people).
            verify_email=window(
                "verify_email",
                settings.auth_verify_max_failures,
                settings.sign_in_failure_window_s,
                False,
            ),
            verify_ip=window(
                "verify_ip",
                10 * settings.auth_verify_max_failures,
                settings.sign_in_failure_window_s,
                False,
            ),
        )

    async def enforce(self, limiter: SlidingWindow, key: str, what: str) -> None:
        """Count one request against ``limiter``; 429 (with Retry-After) when over."""
        await self.enforce_all([(limiter, key, what)])

    async def enforce_all(self, limits: list[tuple[SlidingWindow, str, str]]) -> None:
        """Count one request against every (limiter, key, what), and only if all have
        room; 429 naming the first that is full. One round trip per lease (see
        _LEASE_ALL): none while this process holds an unspent one. The limiters must
        share one window length (the request-path limits are all per minute)."""
        if not self.enabled or not limits:
            return
        first = limits[0][0]
        if any(limiter.window_s != first.window_s for limiter, _, _ in limits):
            raise ValueError("limits checked together must share their window length")
        now = time.time()
        keys: list[str] = []
        arguments: list[Any] = []
        for limiter, key, _ in limits:
            window = int(now // limiter.window_s)
            keys += [f"{key}:{window}", f"{key}:{window - 1}"]
            arguments += [limiter.limit, limiter.window_s]
        lease_key = tuple(keys[::2])
        left = self.leases.pop(lease_key, 0)
        if left > 0:
            if left > 1:
                self.leases[lease_key] = left - 1
            return
        elapsed = (now % first.window_s) / first.window_s
        try:
            async with asyncio.timeout(first.timeout_s):
                full, retry_after, lease = await self.lease_all(
                    keys=keys, args=[elapsed, LEASE_SHARE, LEASE_MAX, *arguments]
                )
        except REDIS_ERRORS as error:
            for limiter, _, what in limits:
                limiter._fallback(error, "failing " + ("open" if limiter.fail_open else "closed"))
                if not limiter.fail_open:
                    raise Unavailable(
                        f"the limit of {what} cannot be checked; retry", retry_after_s=1
                    ) from error
            return
        if int(full):
            what = limits[int(full) - 1][2]
            seconds = max(1, math.ceil(float(retry_after)))
            raise RateLimited(f"rate limit of {what} reached; retry in {seconds} s", seconds)
        if len(self.leases) >= MAX_LEASES:
            self.leases.clear()  # leases of past windows and idle users: forgotten
        if int(lease) > 1:
            self.leases[lease_key] = int(lease) - 1
