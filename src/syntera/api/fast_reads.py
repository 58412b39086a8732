"""The hot reads, answered beside FastAPI's routing: ``GET /v1/<resource>/{id}`` and the
first page ``GET /v1/<resource>[?limit=N]`` of a signed-in user.

Profiling ``GET /v1/contacts/{id}`` under load (py-spy, 2 API processes) put a third of
each request's CPU in FastAPI's routing, its dependency solving and the validation of
the answer, against a quarter in the database round trip itself. This middleware
answers the common case the same way with less: it verifies the token (the same
``principal_from_bearer``), counts the per-user limit, reads in one round trip as the
caller (``read_as``: RLS decides, the company found in SQL), and writes the row through
the resource's model (``model_dump_json``, the bytes FastAPI would send). Anything else
— no or another kind of credential, the service key, a query string, a caller without a
company — goes on to FastAPI unchanged, so every answer but the plain hit comes from the
one code path. Errors (404, 429, a database error) are the same problem+json documents.

It sits inside the metrics, CORS, size and JSON guards (they see it as any route) and
is told the routes by ``add_crud_routes`` (``READS``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from syntera.api.errors import problem_from_database, problem_from_error
from syntera.auth.tokens import InvalidToken, principal_from_bearer
from syntera.db.postgres import read_as
from syntera.db.redis import global_key
from syntera.db.slow import ROUTE, TENANT
from syntera.db.tables import Filter, Listing
from syntera.errors import SynteraError, not_found
from syntera.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest, page_from
from syntera.kit.resources import Resource


@dataclass(frozen=True)
class FastRead:
    resource: Resource[Any]
    managers_only: bool
    template: str  # the route's path template, as metrics and logs name it
    filters: Callable[[], Awaitable[list[Filter]]] | None = None  # lists: their defaults

    @property
    def path(self) -> str:  # what HttpMetrics reads off scope["route"]
        return self.template


READS: dict[str, FastRead] = {}  # "/v1/contacts" -> its read of one row
LISTS: dict[str, FastRead] = {}  # "/v1/contacts" -> its first page
_LIMIT = re.compile(rb"(?:limit=(\d{1,3}))?")


def register(
    prefix: str,
    resource: Resource[Any],
    managers_only: bool,
    *,
    read: bool,
    filters: Callable[[], Awaitable[list[Filter]]] | None,
) -> None:
    """The resource's read (``read``) and first page (``filters``: its list's filters,
    called with their defaults) for the fast path."""
    if read:
        READS[prefix] = FastRead(resource, managers_only, f"{prefix}/{{row_id}}")
    if filters is not None:
        LISTS[prefix] = FastRead(resource, managers_only, prefix, filters)


class FastReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        page = LISTS.get(path)
        if page is not None:
            limit = _LIMIT.fullmatch(scope["query_string"])
            size = int(limit.group(1)) if limit and limit.group(1) else DEFAULT_LIMIT
            if (
                limit
                and 1 <= size <= MAX_LIMIT
                and await self._answer(page, None, size, scope, send)
            ):
                return
        elif not scope["query_string"]:
            prefix, _, last = path.rpartition("/")
            read = READS.get(prefix)
            if read is not None and len(last) == 36:
                try:
                    row_id = UUID(last)
                except ValueError:
                    row_id = None
                if row_id and await self._answer(read, row_id, 0, scope, send):
                    return
        await self.app(scope, receive, send)

    async def _answer(
        self, read: FastRead, row_id: UUID | None, limit: int, scope: Scope, send: Send
    ) -> bool:
        """Answer the read of ``row_id`` (None: the first page of ``limit`` rows); False
        to leave it to FastAPI (nothing was sent, nor counted unless it says so)."""
        credential = _bearer(scope)
        if credential is None:
            return False
        state = scope["app"].state
        try:
            caller = principal_from_bearer(credential, state.keys)
        except InvalidToken:
            return False
        if caller.role != "authenticated" or caller.user_id is None:
            return False
        scope["route"] = read
        ROUTE.set(read.template)
        request = Request(scope)
        table = read.resource.table
        try:
            limiters = state.limiters
            key = global_key("rate-user", str(caller.user_id))
            await limiters.enforce(limiters.api_user, key, "requests per user")
            if row_id is not None:
                query: bytes = table.fetch_current_query
                params: dict[str, Any] = {"id": row_id}
            else:
                assert read.filters is not None
                statement, params, _ = table.list_statement(
                    None, filters=await read.filters(), limit=limit
                )
                query = statement.as_bytes()
            membership, rows = await read_as(state.stores.postgres, caller, query, params)
            TENANT.set(str(membership.company_id) if membership else None)
            if membership is None or (read.managers_only and not membership.manages_team):
                # The 403 and its wording are FastAPI's path's; the limit is counted, so
                # that path must not count it again: it is the rare case, answered there.
                scope["syntera.limit_counted"] = True
                return False
            if row_id is not None:
                if not rows:
                    raise not_found(read.resource.label)
                body = read.resource.out(rows[0]).model_dump_json().encode()
            else:
                listing = Listing(rows[:limit], len(rows) > limit, None)
                paging = PageRequest(limit, None, 0, False)
                answer = page_from(listing, paging, read.resource.out, table.time_column)
                body = answer.model_dump_json().encode()
        except SynteraError as error:
            await problem_from_error(error).response(request)(scope, _no_receive, send)
            return True
        except psycopg.Error as error:
            await problem_from_database(error).response(request)(scope, _no_receive, send)
            return True
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode()),
                                (b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        return True


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            return credential.strip() if scheme.lower() == "bearer" and credential else None
    return None


async def _no_receive() -> dict[str, Any]:  # the answers below never read the body
    return {"type": "http.disconnect"}
