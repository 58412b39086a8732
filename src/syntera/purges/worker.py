"""The purge worker: a deleted company's data leaves MongoDB, the file storage, the
vector store and Redis.

The purge row is written by the database in the transaction that deleted the company
(migration 011). A worker claims the oldest due purge under a lease (``FOR UPDATE SKIP
LOCKED``), runs its steps in order and records each finished step with its counts; every
step is idempotent (deleting what is already gone removes nothing), so a worker killed
at any point leaves the purge ``running`` under a lease that runs out, and the next
claim starts it again. Failures are retried with exponential backoff, then the purge is
``failed`` (``syntera maintenance purges --retry ID`` sends it back).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from syntera.agents.service import public_key_cache_keys
from syntera.conversations.service import conversation_cache_keys
from syntera.conversations.store import ConversationStore
from syntera.db.leases import LeaseLost, lock_leased
from syntera.db.postgres import TenantConnection
from syntera.db.redis import RedisClient, delete_tenant_keys
from syntera.events.bus import stream_key
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.unit_of_work import system_transaction

log = logging.getLogger(__name__)

CHANNEL = "syntera_purges"
LEASE_S = 120  # the default of SYNTERA_PURGE_LEASE_S
MAX_ATTEMPTS = 6

CLAIM = """
UPDATE syntera.purges p
SET status = 'running', attempts = p.attempts + 1,
    lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE p.id = (
  SELECT id FROM syntera.purges
  WHERE status IN ('pending', 'running') AND run_after <= now()
    AND (status = 'pending' OR lease_expires_at < now())
  ORDER BY run_after
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING p.id, p.kind, p.company_id, p.contact_id, p.key_digests, p.steps, p.attempts,
          p.lease_token
"""

LOCK_LEASED = """
SELECT id FROM syntera.purges WHERE id = %(id)s AND lease_token = %(token)s FOR UPDATE
"""

# A finished step, with its counts, and a renewed lease.
STEP_DONE = """
UPDATE syntera.purges
SET steps = steps || jsonb_build_object(%(step)s::text, %(counts)s::jsonb),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE id = %(id)s AND lease_token = %(token)s
"""

COMPLETE = """
UPDATE syntera.purges
SET status = 'completed', finished_at = now(), last_error = NULL,
    lease_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND lease_token = %(token)s
"""

RETRY = """
UPDATE syntera.purges
SET status = 'pending', last_error = %(error)s,
    run_after = now() + make_interval(secs => %(delay_s)s),
    lease_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND lease_token = %(token)s
"""

FAIL = """
UPDATE syntera.purges
SET status = 'failed', last_error = %(error)s, finished_at = now(),
    lease_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND lease_token = %(token)s
"""

LIST = """
SELECT id, kind, company_id, status, steps, attempts, last_error, created_at, finished_at
FROM syntera.purges
WHERE status = ANY(%(statuses)s)
ORDER BY created_at
LIMIT %(limit)s
"""

# Back to the queue: a failed purge, retried by hand.
SEND_BACK = """
UPDATE syntera.purges
SET status = 'pending', attempts = 0, run_after = now(), finished_at = NULL
WHERE id = %(id)s AND status = 'failed'
RETURNING id
"""

# The stores a purge goes through, in order (the names of its steps). A contact's
# PostgreSQL rows went in the erasing transaction (its "postgres" step is recorded then);
# MongoDB holds their conversations, and the step also drops those conversations' caches.
COMPANY_STEPS = ("mongodb", "files", "vectors", "redis")
CONTACT_STEPS = ("conversations",)
STEPS = {"company": COMPANY_STEPS, "contact": CONTACT_STEPS}

Step = Callable[["Claim"], Awaitable[dict[str, int]]]


@dataclass(frozen=True)
class Claim:
    id: UUID
    kind: str
    company_id: UUID
    contact_id: UUID | None
    key_digests: list[str]
    steps: dict[str, Any]
    attempts: int
    lease_token: UUID


class PurgeWorker:
    """Claims and carries out purges."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        conversations: ConversationStore,
        kb: KnowledgeBase,
        redis: RedisClient,
        lease_s: float = LEASE_S,
    ) -> None:
        self.pool = pool
        self.lease_s = lease_s
        self.conversations = conversations
        self.kb = kb
        self.redis = redis
        self.steps: dict[str, Step] = {
            "mongodb": self._mongodb,
            "files": self._files,
            "vectors": self._vectors,
            "redis": self._redis,
            "conversations": self._contact_conversations,
        }

    async def run_once(self) -> bool:
        """Claim and carry out one purge; False when none was due."""
        claim = await self.claim()
        if claim is None:
            return False
        await self.carry_out(claim)
        return True

    async def claim(self) -> Claim | None:
        async with system_transaction(self.pool) as conn:
            row = await (await conn.execute(CLAIM, {"lease_s": self.lease_s})).fetchone()
        return None if row is None else Claim(**row)

    async def carry_out(self, claim: Claim) -> None:
        try:
            for name in STEPS[claim.kind]:
                if name in claim.steps:
                    continue  # done by an earlier attempt
                counts = await self.steps[name](claim)
                await self._record(claim, STEP_DONE, step=name, counts=Jsonb(counts),
                                   lease_s=self.lease_s)  # fmt: skip
            await self._record(claim, COMPLETE)
            log.info("purge %s (%s of %s) completed", claim.id, claim.kind, claim.company_id)
        except LeaseLost:
            log.warning("purge %s: lease lost, another worker has it", claim.id)
        except Exception as error:
            await self._failed(claim, error)

    async def _failed(self, claim: Claim, error: Exception) -> None:
        log.warning("purge %s failed (attempt %s): %r", claim.id, claim.attempts, error)
        try:
            if claim.attempts >= MAX_ATTEMPTS:
                await self._record(claim, FAIL, error=repr(error)[:2000])
            else:
                delay = min(2**claim.attempts, 300)
                await self._record(claim, RETRY, error=repr(error)[:2000], delay_s=delay)
        except LeaseLost:
            pass

    async def _record(self, claim: Claim, statement: str, **params: Any) -> None:
        async with system_transaction(self.pool) as conn:
            lease = {"id": claim.id, "token": claim.lease_token}
            await lock_leased(conn, LOCK_LEASED, lease)
            await conn.execute(statement, {**lease, **params})

    async def _mongodb(self, claim: Claim) -> dict[str, int]:
        conversations, messages = await self.conversations.purge_company(claim.company_id)
        return {"conversations": conversations, "messages": messages}

    async def _contact_conversations(self, claim: Claim) -> dict[str, int]:
        assert claim.contact_id is not None
        ids, messages = await self.conversations.purge_contact(claim.company_id, claim.contact_id)
        keys = [key for oid in ids for key in conversation_cache_keys(claim.company_id, oid)]
        if keys:  # one company: one hash tag, one call
            # The company's event stream holds copies of those messages too: it goes
            # (resumes from before the erasure get `reset`, as after any lost position).
            await self.redis.unlink(*keys, stream_key(claim.company_id))
        return {"conversations": len(ids), "messages": messages}

    async def _files(self, claim: Claim) -> dict[str, int]:
        return {"files": await self.kb.storage.delete_company(claim.company_id)}

    async def _vectors(self, claim: Claim) -> dict[str, int]:
        return {"vectors": await self.kb.vectors.delete_company(claim.company_id)}

    async def _redis(self, claim: Claim) -> dict[str, int]:
        """Every key under the company's tag (caches, sessions, limits, event streams),
        and the widget keys' cache entries, which live under the keys' digests."""
        removed = await delete_tenant_keys(self.redis, claim.company_id)
        for digest in claim.key_digests:  # under the digest's tag: one call per digest
            removed += int(await self.redis.unlink(*public_key_cache_keys(digest)))
        return {"keys": removed}
