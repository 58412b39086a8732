"""The hot reads, answered beside FastAPI's routing: ``GET /v1/<resource>/{id}`` and the
first page ``GET /v1/<resource>[?limit=N]`` of a signed-in user.

Profiling ``GET /v1/contacts/{id}`` under load (py-spy, 2 API processes) put a third of
each request's CPU in FastAPI's routing, its dependency solving and the validation of
the answer, against a quarter in the database round trip itself. This middleware
answers the common case the same way with less: it verifies the token (the same
``principal_from_bearer``), counts the per-user limit, reads in one round trip as the
caller (``read_as``: RLS decides, the company found in SQL), and writes the row through
the resource's model (``model_dump_json``, the bytes FastAPI would send). Anything else
— no or another kind of credential, the service key, another query string — goes on to
FastAPI unchanged. Errors (403, 404, 429, a database error) are the same
problem+json documents, from the same functions (``member_row``, ``member_page``, which
the routes call too).

It sits inside the metrics, CORS, size and JSON guards (they see it as any route) and
is told the routes by ``add_crud_routes`` (``READS``, ``LISTS``).
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

from syntera.api.deps import count_request, read_as_member
from syntera.api.errors import problem_from_database, problem_from_error
from syntera.auth.tokens import InvalidToken, principal_from_bearer
from syntera.db.tables import Filter, Listing, Row
from syntera.errors import SynteraError
from syntera.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest, page_from
from syntera.kit.resources import M, Resource, found
from syntera.tenancy import Principal


@dataclass(frozen=True)
class FastRead:
    resource: Resource[Any]
    managers_only: bool
    path: str  # the route's template, as HttpMetrics and the logs read it off scope["route"]
    filters: Callable[[], Awaitable[list[Filter]]] | None = None  # lists: their defaults


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
        to leave it to FastAPI (nothing was sent or counted)."""
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
        request = Request(scope)
        try:
            await count_request(state.limiters, caller)
            if row_id is not None:
                row = await member_row(request, caller, read.resource, row_id, read.managers_only)
                body = read.resource.out(row).model_dump_json().encode()
            else:
                assert read.filters is not None
                paging = PageRequest(limit, None, 0, False)
                page = await member_page(request, caller, read.resource, paging,
                                         await read.filters(), read.managers_only)  # fmt: skip
                body = page.model_dump_json().encode()
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


async def member_row(
    request: Request, caller: Principal, resource: Resource[Any], row_id: UUID,
    managers_only: bool,
) -> Row:  # fmt: skip
    """A signed-in member's read of one row of their company, in one round trip (403 if
    they are no member, or no manager with ``managers_only``; 404 if there is none)."""
    query, params = resource.table.fetch_current_query, {"id": row_id}
    rows = await read_as_member(request, caller, query, params, managers_only=managers_only)
    return found(resource, rows[0] if rows else None)


async def member_page(
    request: Request, caller: Principal, resource: Resource[M], paging: PageRequest,
    filters: list[Filter], managers_only: bool,
) -> Page[M]:  # fmt: skip
    """``member_row`` for a page of a list (no exact count: that is a second statement)."""
    query, params, _ = resource.table.list_statement(
        None, filters=filters, limit=paging.limit, after=paging.after, offset=paging.offset
    )
    rows = await read_as_member(request, caller, query.as_bytes(), params,
                                managers_only=managers_only)  # fmt: skip
    listing = Listing.of(rows, paging.limit)
    return page_from(listing, paging, resource.out, resource.table.time_column)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            return credential.strip() if scheme.lower() == "bearer" and credential else None
    return None


async def _no_receive() -> dict[str, Any]:  # the answers below never read the body
    return {"type": "http.disconnect"}
