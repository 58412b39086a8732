"""Who of a team is online: a member is online while one of their event streams is open.

Each open stream of a member holds an entry in a per-user sorted set in Redis (the
streams' slots, ``syntera.events.bus.StreamSlots``), scored by when it expires unless its
stream refreshes it; a crashed process's entries expire by themselves. Presence reads
those sets and writes nothing.
"""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

from syntera.db.redis import REDIS_ERRORS, RedisClient, tenant_key


def user_streams_key(company_id: UUID, user_id: UUID) -> str:
    """The slots of one member's open event streams."""
    return tenant_key(company_id, "streams-user", str(user_id))


async def online_members(
    redis: RedisClient, company_id: UUID, user_ids: list[UUID], timeout_s: float = 2.0
) -> set[UUID]:
    """Those of ``user_ids`` with an event stream open now (one round trip). Redis
    unreachable: nobody is known to be online, which routes hand-offs to the queue."""
    if not user_ids:
        return set()
    now = time.time()
    try:
        async with asyncio.timeout(timeout_s):
            async with redis.pipeline(transaction=False) as pipe:
                for user_id in user_ids:
                    pipe.zcount(user_streams_key(company_id, user_id), now, "+inf")
                counts = await pipe.execute()
    except REDIS_ERRORS:
        return set()
    return {user_id for user_id, count in zip(user_ids, counts, strict=True) if int(count) > 0}
