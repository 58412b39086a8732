"""Who is asking: the principal a request or job acts as, and the claims it carries.

The database decides what a principal may touch (row-level security reads the claims);
this module only says who the principal is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

DatabaseRole = Literal["anon", "authenticated", "service_role"]


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
