"""Who is calling, and the one transaction each request runs in.

Every dependency here is ``async``: FastAPI runs plain functions in a thread pool, a
thread hop per dependency per request.

Routes name what they need with the ``Annotated`` aliases at the bottom, after what
they allow: ``SignedIn`` (any signed-in user), ``Member`` (a member of a company, or the
service naming one), ``Manager`` (an owner or admin), ``Service`` (the service key in a
company), ``System`` (the service key). Each is a ``TenantTransaction``: the transaction is
committed after the route has returned and its answer has been serialised, before the
answer is sent, and rolled back if anything raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from syntera.api.errors import Problem
from syntera.api.state import authenticate_of, cache_of, limiters_of, publisher_of, stores_of
from syntera.db.postgres import TenantConnection
from syntera.db.redis import global_key
from syntera.db.slow import ROUTE, TENANT
from syntera.errors import Forbidden, Unauthorized
from syntera.kit.member import MANAGERS_ONLY, NO_COMPANY
from syntera.ratelimit import Limiters
from syntera.tenancy import Membership, Principal
from syntera.unit_of_work import TenantTransaction, open_unit_of_work

COMPANY_HEADER = "X-Company-Id"
# Supabase's clients send the project's API key in this header with every request, and
# the user's access token (or the same key) as the bearer.
API_KEY_HEADER = "apikey"

bearer = HTTPBearer(
    auto_error=False,
    description="An access token from /auth/v1/token, or the service key.",
)


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller named by the bearer credential (or the ``apikey`` header); 401
    without a valid one."""
    return await _caller(request, credential_of(request, credentials))


def credential_of(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The caller's credential (``credential_from`` of the request's headers)."""
    headers = request.headers
    return credential_from(headers.get("authorization"), headers.get(API_KEY_HEADER))


def credential_from(authorization: str | None, api_key: str | None) -> str | None:
    """The credential of a request as Supabase reads it, for every route (/v1, its fast
    paths, /rest/v1): with an ``Authorization`` header, its bearer token and nothing else
    (a signed-in user's token wins over the API key sent beside it; another scheme such
    as ``Basic``, or an empty bearer, names no token, as PostgREST reads it); without
    one, the ``apikey`` header (the key alone acts as its role). Never the key beside a
    header that is not a bearer: a backend that holds the service key and forwards its
    caller's header would otherwise act as the service role for ``Basic x``."""
    if authorization is None:
        return api_key or None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


async def stream_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    access_token: Annotated[
        str | None,
        Query(
            max_length=4096,
            description="The bearer credential, for clients that cannot send headers "
            "(the browser's EventSource). Never logged.",
        ),
    ] = None,
) -> Principal:
    """``principal`` for event streams: the credential may also come as a query
    parameter, which a user's token sent there wins over the ``apikey`` header (the
    anon key every Supabase client sends beside it)."""
    if credentials is None and access_token is not None:
        return await _caller(request, access_token)
    return await _caller(request, credential_of(request, credentials))


async def _caller(request: Request, credential: str | None) -> Principal:
    if credential is None:
        raise Unauthorized("missing bearer token")
    caller = authenticate_of(request)(credential)
    if caller.role == "anon":
        raise Unauthorized("an anonymous key cannot call this endpoint; sign in")
    await count_request(limiters_of(request), caller)
    return caller


async def count_request(limiters: Limiters, caller: Principal) -> None:
    """Count one request against a user's per-minute limit (429 when it is full)."""
    if caller.user_id is not None:
        key = global_key("rate-user", str(caller.user_id))
        await limiters.enforce(limiters.api_user, key, "requests per user")


@asynccontextmanager
async def _transaction_of(request: Request, caller: Principal) -> AsyncIterator[TenantTransaction]:
    """The request's unit of work as ``caller`` (the service key acts in the company its
    X-Company-Id header names); after-commit work and undo are the unit of work's."""
    company_id = None
    if caller.role == "service_role":
        membership = service_membership(request)
        company_id = membership.company_id if membership else None
    async with open_unit_of_work(
        stores_of(request).postgres, caller, company_id=company_id,
        cache=cache_of(request), events=publisher_of(request),
    ) as tx:  # fmt: skip
        route = request.scope.get("route")
        ROUTE.set(getattr(route, "path", None))
        TENANT.set(str(tx.membership.company_id) if tx.membership else None)
        yield tx


def member_pool(request: Request) -> AsyncConnectionPool[TenantConnection]:
    """The pool a member's one-round-trip read or write runs on (``syntera.kit.member``),
    with the request's route noted for the slow-statement log."""
    route = request.scope.get("route")
    ROUTE.set(getattr(route, "path", None))
    return stores_of(request).postgres


@asynccontextmanager
async def member_transaction(
    request: Request, caller: Principal, *, managers_only: bool = False
) -> AsyncIterator[TenantTransaction]:
    """What ``Member`` (``Manager``) gives a route, for a route that opens it itself."""
    async with _transaction_of(request, caller) as tx:
        await _member(tx)
        if managers_only:
            await _manager(tx)
        yield tx


async def transaction(
    request: Request, caller: Annotated[Principal, Depends(principal)]
) -> AsyncIterator[TenantTransaction]:
    """The request's one transaction, as the caller."""
    async with _transaction_of(request, caller) as tx:
        yield tx


async def stream_transaction(
    request: Request, caller: Annotated[Principal, Depends(stream_principal)]
) -> AsyncIterator[TenantTransaction]:
    """``transaction`` for opening an event stream (committed before the stream starts)."""
    async with _transaction_of(request, caller) as tx:
        yield tx


def service_membership(request: Request) -> Membership | None:
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


async def _stream_member(
    tx: Annotated[TenantTransaction, Depends(stream_transaction, scope="function")],
) -> TenantTransaction:
    return await _member(tx)


async def _signed_in_user(tx: Annotated[TenantTransaction, _transaction]) -> TenantTransaction:
    if tx.principal.role != "authenticated":
        raise Forbidden("this endpoint is for signed-in users")
    return tx


async def _member(tx: Annotated[TenantTransaction, _transaction]) -> TenantTransaction:
    if tx.membership is None:
        detail = NO_COMPANY
        if tx.principal.role == "service_role":
            detail = f"the service must name a company in the {COMPANY_HEADER} header"
        raise Forbidden(detail)
    return tx


async def _manager(tx: Annotated[TenantTransaction, Depends(_member)]) -> TenantTransaction:
    if tx.membership is None or not tx.membership.manages_team:
        raise Forbidden(MANAGERS_ONLY)
    return tx


async def _system(tx: Annotated[TenantTransaction, _transaction]) -> TenantTransaction:
    if tx.principal.role != "service_role":
        raise Forbidden("only the service key may do this")
    return tx


async def _operator(tx: Annotated[TenantTransaction, _transaction]) -> TenantTransaction:
    if tx.principal.role == "service_role":
        return tx
    if tx.principal.role == "authenticated":
        # Asked of the database at every request: a revoked operator's tokens stop at once.
        cursor = await tx.conn.execute("SELECT private.is_operator() AS operator")
        row = await cursor.fetchone()
        if row is not None and row["operator"]:
            return tx
    raise Forbidden("only the platform's operators (syntera admin grant) and the service key")


async def _service(tx: Annotated[TenantTransaction, Depends(_member)]) -> TenantTransaction:
    if tx.principal.role != "service_role":
        raise Forbidden("only the service key may do this")
    return tx


SignedIn = Annotated[TenantTransaction, Depends(_signed_in_user)]
Member = Annotated[TenantTransaction, Depends(_member)]
Manager = Annotated[TenantTransaction, Depends(_manager)]
Service = Annotated[TenantTransaction, Depends(_service)]
StreamMember = Annotated[TenantTransaction, Depends(_stream_member)]  # Member, for streams
System = Annotated[TenantTransaction, Depends(_system)]  # the service key, not in a company
Operator = Annotated[TenantTransaction, Depends(_operator)]  # an operator, or the service key
