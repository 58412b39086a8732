"""Who is calling, and the one transaction each request runs in.

Every dependency here is ``async``: FastAPI runs plain functions in a thread pool, a
thread hop per dependency per request.

Routes name what they need with the ``Annotated`` aliases at the bottom, after what
they allow: ``Caller`` (any signed-in user), ``Member`` (a member of a company, or the
service naming one), ``Manager`` (an owner or admin), ``Service`` (the service key).
The transaction is committed after the route has returned and its answer has been
serialised, before the answer is sent, and rolled back if anything raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from syntera.api.errors import Problem
from syntera.auth.tokens import InvalidToken, Keys, principal_from_bearer
from syntera.cache import Cache
from syntera.db.postgres import TenantConnection, open_transaction
from syntera.db.redis import global_key
from syntera.db.slow import ROUTE, TENANT
from syntera.ratelimit import Limiters
from syntera.tenancy import Membership, Principal

COMPANY_HEADER = "X-Company-Id"

bearer = HTTPBearer(
    auto_error=False,
    description="An access token from /auth/v1/token, or the service key.",
)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def keys_of(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller named by the bearer credential; 401 without a valid one."""
    if credentials is None:
        raise unauthorized("missing bearer token")
    try:
        caller = principal_from_bearer(credentials.credentials, keys_of(request))
    except InvalidToken as error:
        raise unauthorized(f"invalid token: {error}") from error
    if caller.role == "anon":
        raise unauthorized("an anonymous key cannot call this endpoint; sign in")
    if caller.user_id is not None:
        limiters: Limiters = request.app.state.limiters
        key = global_key("rate-user", str(caller.user_id))
        await limiters.enforce(limiters.api_user, key, "requests per user")
    return caller


@dataclass(frozen=True)
class Tenant:
    """The request's transaction and who it runs as, and what to do once it commits
    (cache invalidation: side effects outside PostgreSQL happen after commit)."""

    conn: TenantConnection
    principal: Principal
    membership: Membership | None
    cache: Cache | None = None
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def invalidate_after_commit(self, *generation_keys: str) -> None:
        """Make these cached values stale once (and only if) the transaction commits."""
        if self.cache is not None:
            self.after_commit.append(partial(self.cache.invalidate, *generation_keys))

    @property
    def company_id(self) -> UUID:
        """The company the request acts in (only for Member and below)."""
        if self.membership is None:
            raise Problem(403, "Forbidden", "you are not a member of any company")
        return self.membership.company_id

    @property
    def user_id(self) -> UUID | None:
        return self.principal.user_id


async def transaction(
    request: Request, caller: Annotated[Principal, Depends(principal)]
) -> AsyncIterator[Tenant]:
    """The request's one transaction, as the caller."""
    async with open_transaction(request.app.state.stores.postgres, caller) as (conn, membership):
        if caller.role == "service_role":
            membership = _service_membership(request)
        tenant = Tenant(conn, caller, membership, request.app.state.cache)
        route = request.scope.get("route")
        ROUTE.set(getattr(route, "path", None))
        TENANT.set(str(membership.company_id) if membership else None)
        yield tenant
    await run_after_commit(tenant)


async def run_after_commit(tenant: Tenant) -> None:
    """The work a committed transaction left to do."""
    for work in tenant.after_commit:
        await work()


def _service_membership(request: Request) -> Membership | None:
    """The service acts in the company it names in X-Company-Id (as an owner would)."""
    named = request.headers.get(COMPANY_HEADER)
    if named is None:
        return None
    try:
        return Membership(UUID(named), "owner")
    except ValueError as error:
        raise Problem(422, "Unprocessable Content", f"{COMPANY_HEADER} is not a UUID") from error


# scope="function": the transaction ends before the response is sent, so a client never
# sees an answer whose change is not committed.
_transaction = Depends(transaction, scope="function")


async def _signed_in_user(tenant: Annotated[Tenant, _transaction]) -> Tenant:
    if tenant.principal.role != "authenticated":
        raise Problem(403, "Forbidden", "this endpoint is for signed-in users")
    return tenant


async def _member(tenant: Annotated[Tenant, _transaction]) -> Tenant:
    if tenant.membership is None:
        detail = "you are not a member of any company; create one with POST /v1/companies"
        if tenant.principal.role == "service_role":
            detail = f"the service must name a company in the {COMPANY_HEADER} header"
        raise Problem(403, "Forbidden", detail)
    return tenant


async def _manager(tenant: Annotated[Tenant, Depends(_member)]) -> Tenant:
    if tenant.membership is None or not tenant.membership.manages_team:
        raise Problem(403, "Forbidden", "only the company's owner or an admin may do this")
    return tenant


async def _system(tenant: Annotated[Tenant, _transaction]) -> Tenant:
    if tenant.principal.role != "service_role":
        raise Problem(403, "Forbidden", "only the service key may do this")
    return tenant


async def _service(tenant: Annotated[Tenant, Depends(_member)]) -> Tenant:
    if tenant.principal.role != "service_role":
        raise Problem(403, "Forbidden", "only the service key may do this")
    return tenant


Caller = Annotated[Tenant, Depends(_signed_in_user)]
Member = Annotated[Tenant, Depends(_member)]
Manager = Annotated[Tenant, Depends(_manager)]
Service = Annotated[Tenant, Depends(_service)]
System = Annotated[Tenant, Depends(_system)]  # the service key, not acting in a company
