"""Who is asking: the principal a request or job acts as, the claims it carries, and the
company it belongs to.

The database decides what a principal may touch (row-level security reads the claims);
this module only says who the principal is. The transaction it works in is
``syntera.unit_of_work``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

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

    ``role`` is the PostgreSQL role the transaction runs as (one of ``DatabaseRole``,
    except on /rest/v1, where a token may name any role the API's login may become, as
    PostgREST allows); ``claims`` are the JWT claims handed to the database as
    ``request.jwt.claims`` (``auth.uid()`` reads ``sub``).
    """

    role: str
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
