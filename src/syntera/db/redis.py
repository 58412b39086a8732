"""The Redis client and the one place Redis keys are built.

Every key starts with its tenant (``t:{<company_id>}:…``) or, for data that belongs to
no tenant, with ``g:<namespace>:{<owner>}:…``. No other code builds keys, so no key can
be shared by two companies by accident.

The braces are Redis Cluster hash tags: only the part inside them decides a key's slot,
so the keys one operation touches together — a cached value and its generation (MGET),
a limit's two windows and a request's several limits (one Lua call) — always share a
slot. All of one company's keys live on one node of a cluster; the global keys spread by
their owner (a user, an address, a widget key's digest).
"""

from __future__ import annotations

import hashlib
import logging
from uuid import UUID

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from syntera.config import Settings

log = logging.getLogger(__name__)

KEY_SEPARATOR = ":"

# What a Redis call raises when Redis is down, refuses, or is slower than its timeout:
# every caller treats these as "go on without Redis".
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


# A single Redis or Valkey, or a cluster of them (SYNTERA_REDIS_CLUSTER): the code above
# this module cannot tell the difference.
RedisClient = aioredis.Redis | aioredis.RedisCluster


def create_redis(settings: Settings, url: str) -> RedisClient:
    """A client with a bounded pool and short timeouts: no request waits on Redis longer
    than ``redis_timeout_s``. With ``redis_cluster``, ``url`` names any node of a Redis
    Cluster and the client follows the cluster's slot map."""
    if settings.redis_cluster:
        # No retries here either: redis-py's cluster client would otherwise retry a
        # timed-out command up to 10 times with backoff (tests/test_redis_cluster.py).
        return aioredis.RedisCluster.from_url(
            url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
    # A burst beyond the pool waits (up to the timeout) for a connection to come back,
    # rather than failing at once with "too many connections".
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=64,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),  # a retry would wait beyond the timeout
    )
    return aioredis.Redis(connection_pool=pool)


def _checked(parts: tuple[str, ...]) -> tuple[str, ...]:
    for part in parts:
        if not part or KEY_SEPARATOR in part:
            raise ValueError(f"key part {part!r} is empty or contains {KEY_SEPARATOR!r}")
    return parts


def tenant_key(company_id: UUID, *parts: str) -> str:
    """A key of one company's data (hash-tagged by the company)."""
    return KEY_SEPARATOR.join(("t", "{" + str(company_id) + "}", *_checked(parts)))


async def delete_tenant_keys(client: RedisClient, company_id: UUID) -> int:
    """Remove every key of one company (they share its hash tag, so each batch is one
    UNLINK on one node); how many went."""
    removed = 0
    batch: list[bytes | str] = []
    async for key in client.scan_iter(match=tenant_key(company_id, "*"), count=500):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(await client.unlink(*batch))
            batch = []
    if batch:
        removed += int(await client.unlink(*batch))
    return removed


def global_key(namespace: str, owner: str, *parts: str) -> str:
    """A key of data that belongs to no company (sign-in throttles, per-user limits, the
    widget keys' index), hash-tagged by ``owner``: keys of one owner share a slot."""
    _checked((namespace, owner, *parts))
    if "{" in owner or "}" in owner:
        raise ValueError(f"key owner {owner!r} contains a brace")
    return KEY_SEPARATOR.join(("g", namespace, "{" + owner + "}", *parts))


def digest(value: str) -> str:
    """A fixed-length stand-in for a value that must not appear in a key (an email)."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


async def connect_redis(client: RedisClient) -> None:
    """Learn a cluster's slot map now, once, before requests use the client: redis-py's
    asyncio cluster client fails (AttributeError inside it) when many coroutines make it
    initialise itself at the same moment. A single Redis needs nothing; a cluster that
    does not answer is left to initialise on first use."""
    if isinstance(client, aioredis.RedisCluster):
        try:
            await client.initialize()
        except REDIS_ERRORS as error:
            log.warning("Redis Cluster not reached at start-up: %s", error)
