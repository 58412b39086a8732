"""The purge worker: a deleted company's (or an erased contact's) data leaves every store
outside PostgreSQL, step by step, as ``syntera.purges.registry`` lists them.

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
from functools import partial
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from syntera.db.leases import LeaseLost, lock_leased
from syntera.db.postgres import TenantConnection
from syntera.purges.registry import StoredElsewhere
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


# A contact's PostgreSQL rows went in the erasing transaction (its "postgres" step is
# recorded then); the steps in the other stores are the registry's.
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
    """Claims and carries out purges, through the steps of every store that holds
    company data outside PostgreSQL (``syntera.purges.registry``)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        stores: StoredElsewhere,
        lease_s: float = LEASE_S,
    ) -> None:
        self.pool = pool
        self.lease_s = lease_s
        self.stores = stores

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
            for name, step in self._steps(claim).items():
                if name in claim.steps:
                    continue  # done by an earlier attempt
                counts = await step()
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

    def _steps(self, claim: Claim) -> dict[str, Callable[[], Awaitable[dict[str, int]]]]:
        """The claim's steps, in order, bound to what it purges."""
        if claim.kind == "contact":
            assert claim.contact_id is not None
            return {
                name: partial(step, claim.company_id, claim.contact_id)
                for name, step in self.stores.contact.items()
            }
        return {
            name: partial(step, claim.company_id, claim.key_digests)
            for name, step in self.stores.company.items()
        }
