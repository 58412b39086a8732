"""A member who leaves the company leaves their conversations: the active ones assigned
to them are unassigned (those in people's hands wait in "needs a person" again), each
with ``conversation.updated`` on the team's stream.

The departure is recorded by the database, in the transaction that changes the
membership (migration 032: ``DELETE /v1/team/{id}``, ``remove_team_member()`` through
/rest/v1, an account deleted), so the conversations are released only once the member
has really left, whatever path they left by. :class:`DepartureWorker` claims each under a
lease, releases the conversations and deletes the departure in one unit of work of its
company; a worker that dies midway leaves it to the next claim (releasing again changes
nothing). A member who has come back to the company by then keeps their conversations.
"""

from __future__ import annotations

import logging
from functools import partial
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from syntera.cache import Cache
from syntera.conversations.inbox import publish_described
from syntera.conversations.service import HEADER, invalidate_cached
from syntera.conversations.store import ConversationStore
from syntera.db.leases import LeaseLost, lock_leased
from syntera.db.postgres import TenantConnection
from syntera.tenancy import Principal
from syntera.unit_of_work import (
    Publisher,
    TenantTransaction,
    open_unit_of_work,
    system_statement,
)

log = logging.getLogger(__name__)

CHANNEL = "syntera_member_departures"
LEASE_S = 60
POLL_S = 15.0  # a departure is announced by NOTIFY; the poll finds the retries due

CLAIM = """
UPDATE syntera.member_departures d
SET attempts = d.attempts + 1, lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE (d.company_id, d.id) = (
  SELECT company_id, id FROM syntera.member_departures
  WHERE run_after <= now() AND (lease_expires_at IS NULL OR lease_expires_at < now())
  ORDER BY run_after
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING d.company_id, d.id, d.user_id, d.attempts, d.lease_token
"""

LOCK_LEASED = """
SELECT id FROM syntera.member_departures
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s FOR UPDATE
"""

# Back in the company (invited again) since: their conversations stay theirs. Locked, so
# that a return does not commit between this read and the release.
IS_MEMBER = """
SELECT company_id FROM public.users WHERE id = %(user_id)s FOR SHARE
"""

DONE = "DELETE FROM syntera.member_departures WHERE company_id = %(company_id)s AND id = %(id)s"

RETRY = """
UPDATE syntera.member_departures
SET last_error = %(error)s, lease_token = NULL, lease_expires_at = NULL,
    run_after = now() + make_interval(secs => least(power(2, least(attempts, 12)), 3600))
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""


async def release_member(tx: TenantTransaction, store: ConversationStore, user_id: UUID) -> int:
    """Unassign the active conversations of a member who left; how many. Should the
    transaction not commit, each one released is given back (and released again, with
    its event, when the departure is tried again)."""
    count = 0
    async for conversation in store.release(tx.company_id, user_id):
        oid = conversation["_id"]
        tx.undo_if_rolled_back(partial(store.give_back, tx.company_id, oid, user_id))
        invalidate_cached(tx, oid, HEADER)
        await publish_described(tx, conversation)
        count += 1
    return count


class DepartureWorker:
    """Releases the conversations of members who left, one departure at a time."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        store: ConversationStore,
        *,
        cache: Cache | None = None,
        events: Publisher | None = None,
    ) -> None:
        self.pool, self.store, self.cache, self.events = pool, store, cache, events

    async def run_once(self) -> bool:
        """Handle one due departure; whether there was one."""
        rows = await system_statement(self.pool, CLAIM, {"lease_s": LEASE_S})
        if not rows:
            return False
        departure = dict(rows[0])
        lease = {"company_id": departure["company_id"], "id": departure["id"],
                 "token": departure["lease_token"]}  # fmt: skip
        try:
            async with open_unit_of_work(
                self.pool, Principal.service(), company_id=departure["company_id"],
                cache=self.cache, events=self.events,
            ) as tx:  # fmt: skip
                await lock_leased(tx.conn, LOCK_LEASED, lease)
                params = {"user_id": departure["user_id"]}
                user = await (await tx.conn.execute(IS_MEMBER, params)).fetchone()
                if user is None or user["company_id"] != tx.company_id:
                    await release_member(tx, self.store, departure["user_id"])
                await tx.conn.execute(DONE, lease)
        except LeaseLost:
            log.warning("departure %s: lease lost, another worker has it", departure["id"])
        except Exception as error:  # MongoDB away, say: tried again after a backoff, hourly
            # at most, for as long as it takes (the operator page counts those waiting)
            log.warning("departure %s (attempt %s) failed: %r", departure["id"],
                        departure["attempts"], error)  # fmt: skip
            await system_statement(self.pool, RETRY, {**lease, "error": repr(error)[:2000]})
        return True
