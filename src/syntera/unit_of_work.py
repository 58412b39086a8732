"""The unit of work: one PostgreSQL transaction, who it runs as, the company it acts in,
what to do once it commits and what to take back in the other stores if it does not.

``open_unit_of_work`` is the one way to open it. Routes (through ``api.deps``), the widget,
the workflow engine, purges and every worker open their transactions here, so the
after-commit work (cache invalidation, live events) runs only after a commit, and the undo
of another store's writes (a message appended to MongoDB) runs whenever the transaction
does not commit — whoever opened it. A service takes the ``TenantTransaction`` first and
never commits; ``tests/test_layers.py`` checks that nothing else opens a transaction.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol
from uuid import UUID

from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from syntera.cache import Cache
from syntera.db.postgres import Statement, TenantConnection, open_transaction, run_as
from syntera.errors import Forbidden
from syntera.tenancy import Membership, Principal

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]


class Publisher(Protocol):
    """Where live events go (``syntera.events.bus.Publisher``)."""

    async def publish_all(self, events: list[Any]) -> object: ...

    async def publish_ephemeral(self, event: Any) -> object: ...


@dataclass(frozen=True)
class TenantTransaction:
    """One PostgreSQL transaction, who it runs as, the company it acts in, and what to do
    once it commits (side effects outside PostgreSQL, such as cache invalidation, happen
    after commit and only if it commits)."""

    conn: TenantConnection
    principal: Principal
    membership: Membership | None
    cache: Cache | None = None
    events: Publisher | None = None
    after_commit: list[AfterCommit] = field(default_factory=list)
    # Statements sent with COMMIT, in its round trip (None: sent when written).
    at_commit: list[Statement] | None = None
    # What undoes, in the other stores, the writes of a transaction that is rolled back.
    undo: list[AfterCommit] = field(default_factory=list)

    def invalidate_after_commit(self, *generation_keys: str) -> None:
        """Make these cached values stale once (and only if) the transaction commits."""
        if self.cache is not None:
            self.after_commit.append(partial(self.cache.invalidate, *generation_keys))

    def publish_after_commit(self, *events: Any, stored: bool = True) -> None:
        """Publish these live events once (and only if) the transaction commits; ``stored``
        False for ephemeral ones (typing), which are never replayed."""
        if self.events is None or not events:
            return
        publisher = self.events

        async def publish() -> None:
            if stored:
                await publisher.publish_all(list(events))
            else:
                for event in events:
                    await publisher.publish_ephemeral(event)

        self.after_commit.append(publish)

    async def write_with_commit(self, query: bytes, params: dict[str, Any]) -> None:
        """A write whose result nobody reads: sent with COMMIT, in its round trip, where
        the transaction allows (a failure of it rolls everything back, ``undo`` too)."""
        if self.at_commit is None:
            await self.conn.execute(query, params)
        else:
            self.at_commit.append((query, params))

    def undo_if_rolled_back(self, work: AfterCommit) -> None:
        """Run ``work`` if the transaction does not commit (a write to another store)."""
        self.undo.append(work)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the transaction that may fail alone: if it raises, PostgreSQL goes
        back to where it began, the other stores' writes made inside it are undone and
        its after-commit work is dropped; the rest of the transaction goes on."""
        after_commit, undo = len(self.after_commit), len(self.undo)
        try:
            async with self.conn.transaction():
                yield
        except BaseException:
            del self.after_commit[after_commit:]
            taken_back, self.undo[undo:] = self.undo[undo:], []
            await _take_back(taken_back)
            raise

    def acting_in(self, company_id: UUID) -> TenantTransaction:
        """The system's transaction, now inside ``company_id`` (as an owner would be),
        for callers that find the company in it (the widget, by its agent's key): the
        same connection, after-commit work and undo."""
        if self.principal.role != "service_role":
            raise Forbidden("only the system chooses the company it acts in")
        return replace(self, membership=Membership(company_id, "owner"))

    @property
    def company_id(self) -> UUID:
        """The company the transaction acts in; Forbidden for a caller with none."""
        if self.membership is None:
            raise Forbidden("you are not a member of any company")
        return self.membership.company_id

    @property
    def user_id(self) -> UUID | None:
        return self.principal.user_id


@asynccontextmanager
async def open_unit_of_work(
    pool: AsyncConnectionPool[TenantConnection],
    principal: Principal,
    *,
    company_id: UUID | None = None,
    cache: Cache | None = None,
    events: Publisher | None = None,
) -> AsyncIterator[TenantTransaction]:
    """One transaction as ``principal``: committed when the block ends (the statements
    left for the commit travel with it), then its after-commit work runs; rolled back if
    the block raises or the commit fails, and then its undo runs.

    An authenticated user acts in the company the database says they belong to; the
    system (``service_role``) acts in ``company_id`` as an owner would, or in none.
    """
    at_commit: list[Statement] = []
    undo: list[AfterCommit] = []
    try:
        async with open_transaction(pool, principal, at_commit) as (conn, membership):
            if principal.role == "service_role":
                membership = None if company_id is None else Membership(company_id, "owner")
            tx = TenantTransaction(
                conn, principal, membership, cache, events, at_commit=at_commit, undo=undo
            )
            yield tx
    except BaseException:
        await _take_back(undo)
        raise
    for work in tx.after_commit:
        await work()


async def _take_back(undo: list[AfterCommit]) -> None:
    """The other stores' writes of a transaction that did not commit, newest first; one
    that fails is logged and the rest still run."""
    for work in reversed(undo):
        try:
            await work()
        except Exception:
            log.exception("could not undo a write of a rolled-back transaction")


@asynccontextmanager
async def system_transaction(
    pool: AsyncConnectionPool[TenantConnection],
) -> AsyncIterator[TenantConnection]:
    """A unit of work as the system (service_role, which bypasses RLS) in no company, for
    workers and for calls whose caller is no company's user; its connection. Every
    statement in it names its company.

    Its connection comes from the system's own pool (``syntera_system``, see
    ``syntera.db.postgres.pool_for``), not the API's: ``authenticator`` is no member of
    ``service_role`` (issue 35, cause 2), so SQL run on a member's connection cannot name
    that role. The cost: the system's pool keeps one idle connection per process (about
    2 MiB of private server memory) and may open up to SYNTERA_PG_POOL_MAX_SIZE more
    connections of ``max_connections``."""
    async with open_unit_of_work(pool, Principal.service()) as tx:
        yield tx.conn


async def system_statement(
    pool: AsyncConnectionPool[TenantConnection], query: bytes | str, params: dict[str, Any]
) -> list[DictRow]:
    """One statement as the system in no company, committed, in one round trip (BEGIN,
    the settings, the statement and COMMIT in one pipeline): a worker's claim, on the
    path where every round trip is waited for. Nothing runs after the commit."""
    _, [rows] = await run_as(pool, Principal.service(), [(query, params)], membership=False)
    return rows
