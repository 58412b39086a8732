"""Who is asking: the principal a request or job acts as, the claims it carries, and the
transaction it works in.

The database decides what a principal may touch (row-level security reads the claims);
this module only says who the principal is. A ``TenantTransaction`` is what every
service takes first: built by an HTTP dependency for a request, or by a worker for a job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from syntera.errors import Forbidden

if TYPE_CHECKING:  # at run time these modules import this one
    from syntera.cache import Cache
    from syntera.db.postgres import TenantConnection
    from syntera.events.bus import Publisher
    from syntera.events.model import Event

DatabaseRole = Literal["anon", "authenticated", "service_role"]
MemberRole = Literal["user", "admin", "owner"]
MEMBER_ROLES: tuple[MemberRole, ...] = ("user", "admin", "owner")


@dataclass(frozen=True)
class Membership:
    """The company a user belongs to and their role in it."""

    company_id: UUID
    role: MemberRole

    @classmethod
    def parse(cls, text: str) -> Membership | None:
        """Read the database's '<user>:<company>:<role>' form (private.membership());
        None when the user has no company."""
        parts = text.split(":")
        if len(parts) != 3 or not parts[1] or parts[2] not in MEMBER_ROLES:
            return None
        role: MemberRole = parts[2]  # narrowed by the membership test above
        return cls(UUID(parts[1]), role)

    @property
    def manages_team(self) -> bool:
        """Owners and admins manage members, invitations and workflows."""
        return self.role in ("owner", "admin")


@dataclass(frozen=True)
class Principal:
    """The caller of one request or job.

    ``role`` is the PostgreSQL role the transaction runs as; ``claims`` are the JWT claims
    handed to the database as ``request.jwt.claims`` (``auth.uid()`` reads ``sub``).
    """

    role: DatabaseRole
    user_id: UUID | None = None
    claims: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def user(cls, user_id: UUID, **claims: Any) -> Principal:
        """An authenticated user, as a verified access token describes them."""
        return cls(
            "authenticated",
            user_id,
            {"sub": str(user_id), "role": "authenticated", "aud": "authenticated", **claims},
        )

    @classmethod
    def anonymous(cls) -> Principal:
        """A caller with no token."""
        return cls("anon", None, {"role": "anon"})

    @classmethod
    def service(cls) -> Principal:
        """The system itself (background jobs, the service key); bypasses RLS."""
        return cls("service_role", None, {"role": "service_role"})


AfterCommit = Callable[[], Awaitable[None]]
Statement = tuple[bytes, dict[str, Any]]


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
    # Statements sent with COMMIT, in its round trip (None: sent when written); set by
    # the request's transaction, which sends them (db.postgres.open_transaction).
    at_commit: list[Statement] | None = None
    # What undoes, in the other stores, the writes of a transaction that is rolled back.
    undo: list[AfterCommit] = field(default_factory=list)

    @classmethod
    def of_system(
        cls,
        conn: TenantConnection,
        company_id: UUID,
        cache: Cache | None = None,
        events: Publisher | None = None,
    ) -> TenantTransaction:
        """The system acting inside one company (a worker, the widget): service_role,
        with the company named as an owner would be."""
        return cls(conn, Principal.service(), Membership(company_id, "owner"), cache, events)

    def invalidate_after_commit(self, *generation_keys: str) -> None:
        """Make these cached values stale once (and only if) the transaction commits."""
        if self.cache is not None:
            self.after_commit.append(partial(self.cache.invalidate, *generation_keys))

    def publish_after_commit(self, *events: Event, stored: bool = True) -> None:
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

    @property
    def company_id(self) -> UUID:
        """The company the transaction acts in; Forbidden for a caller with none."""
        if self.membership is None:
            raise Forbidden("you are not a member of any company")
        return self.membership.company_id

    @property
    def user_id(self) -> UUID | None:
        return self.principal.user_id

    async def run_after_commit(self) -> None:
        """The work a committed transaction left to do."""
        for work in self.after_commit:
            await work()
