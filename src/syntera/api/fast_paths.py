"""The hot routes, answered beside FastAPI's routing: ``GET /v1/<resource>/{id}``, the
first page ``GET /v1/<resource>[?limit=N]`` and the create ``POST /v1/<resource>`` of a
signed-in user.

Profiling ``GET /v1/contacts/{id}`` under load (py-spy, 2 API processes) put a third of
each request's CPU in FastAPI's routing, its dependency solving and the validation of
the answer, against a quarter in the database round trip itself. This middleware
answers the common case the same way with less: it verifies the token (the same
authenticator as the dependencies), counts the per-user limit, reads in one round trip as the
caller (``read_as``: RLS decides, the company found in SQL), and writes the row through
the resource's model (``model_dump_json``, the bytes FastAPI would send). Anything else
— no or another kind of credential, the service key, another query string — goes on to
FastAPI unchanged. Errors (403, 404, 429, a database error) are the same
problem+json documents, from the same functions (``syntera.kit.member``, which the
routes call too).

A create is answered here only when its body is a valid create of the resource: the
token and the body are checked first (neither has an effect), then the request is
counted and written (``write_as_member``, one round trip). A body that is not valid JSON
or not a valid create goes on to FastAPI, replayed, so its 400 or 422 is FastAPI's own,
and the request is counted there, once.

It sits inside the metrics, CORS, size and JSON guards (they see it as any route) and
is told the routes by ``add_crud_routes`` (``READS``, ``LISTS``, ``CREATES``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from syntera.api.deps import count_request, credential_from, member_pool
from syntera.api.errors import problem_from_database, problem_from_error
from syntera.api.json_guard import is_json, read_body, replaying
from syntera.api.middleware import HttpMiddleware
from syntera.db.tables import Filter
from syntera.errors import SynteraError, Unauthorized
from syntera.kit.member import member_page, member_row, write_as_member
from syntera.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest
from syntera.kit.resources import Resource
from syntera.tenancy import Principal


@dataclass(frozen=True)
class FastRoute:
    resource: Resource[Any]
    managers_only: bool
    path: str  # the route's template, as HttpMetrics and the logs read it off scope["route"]
    filters: Callable[[], Awaitable[list[Filter]]] | None = None  # lists: their defaults


READS: dict[str, FastRoute] = {}  # "/v1/contacts" -> its read of one row
LISTS: dict[str, FastRoute] = {}  # "/v1/contacts" -> its first page
CREATES: dict[str, FastRoute] = {}  # "/v1/contacts" -> its create by a member
_LIMIT = re.compile(rb"(?:limit=(\d{1,3}))?")


def register(
    prefix: str,
    resource: Resource[Any],
    managers_only: bool,
    *,
    read: bool,
    filters: Callable[[], Awaitable[list[Filter]]] | None,
    create: bool,
) -> None:
    """The resource's read (``read``), first page (``filters``: its list's filters,
    called with their defaults) and create by any member (``create``) for the fast
    path."""
    if read:
        READS[prefix] = FastRoute(resource, managers_only, f"{prefix}/{{row_id}}")
    if filters is not None:
        LISTS[prefix] = FastRoute(resource, managers_only, prefix, filters)
    if create:
        CREATES[prefix] = FastRoute(resource, False, prefix)


class FastPaths(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            create = CREATES.get(scope["path"])
            if create is None or scope["query_string"] or not is_json(scope):
                await self.app(scope, receive, send)
            else:
                await self._create(create, scope, receive, send)
            return
        if scope["method"] != "GET":
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
        self, read: FastRoute, row_id: UUID | None, limit: int, scope: Scope, send: Send
    ) -> bool:
        """Answer the read of ``row_id`` (None: the first page of ``limit`` rows); False
        to leave it to FastAPI (nothing was sent or counted)."""
        caller = _member_caller(scope)
        if caller is None:
            return False
        state = scope["app"].state
        scope["route"] = read
        request = Request(scope)
        try:
            await count_request(state.limiters, caller)
            if row_id is not None:
                row = await member_row(
                    member_pool(request), caller, read.resource, row_id, read.managers_only
                )
                body = read.resource.out(row).model_dump_json().encode()
            else:
                assert read.filters is not None
                paging = PageRequest(limit, None, 0, False)
                page = await member_page(member_pool(request), caller, read.resource, paging,
                                         await read.filters(), read.managers_only)  # fmt: skip
                body = page.model_dump_json().encode()
        except (SynteraError, psycopg.Error) as error:
            await _problem(error, request, send)
            return True
        await _json(send, 200, body)
        return True

    async def _create(self, create: FastRoute, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a member's create, or hand it to FastAPI with its body replayed."""
        body = await read_body(receive)  # JsonGuard, around this, has bounded it
        if body is None:
            await self.app(scope, receive, send)  # disconnected: the app sees it
            return
        caller = _member_caller(scope)
        values = _create_values(create.resource, body) if caller is not None else None
        if caller is None or values is None:
            await self.app(scope, replaying(body, receive), send)
            return
        scope["route"] = create
        request = Request(scope)
        try:
            await count_request(scope["app"].state.limiters, caller)
            query, params = create.resource.table.insert_current_statement(values)
            row = await write_as_member(member_pool(request), caller, query, params)
            answer = create.resource.out(row).model_dump_json().encode()
        except (SynteraError, psycopg.Error) as error:
            await _problem(error, request, send)
            return
        await _json(send, 201, answer)


def _member_caller(scope: Scope) -> Principal | None:
    """The signed-in user of the bearer token; None for anything else (no or an invalid
    token, the service or anonymous key), which FastAPI answers."""
    credential = _bearer(scope)
    if credential is None:
        return None
    try:
        caller: Principal = scope["app"].state.authenticate(credential)
    except Unauthorized:
        return None
    if caller.role != "authenticated" or caller.user_id is None:
        return None
    return caller


def _create_values(resource: Resource[Any], body: bytes) -> dict[str, Any] | None:
    """The columns of a valid create of ``resource`` in ``body``, validated as FastAPI
    validates it (the JSON parsed, then the model); None if it is not one."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    try:
        values: dict[str, Any] = resource.create.model_validate(document).changes()
    except ValidationError:
        return None
    return values


async def _problem(error: SynteraError | psycopg.Error, request: Request, send: Send) -> None:
    problem = (
        problem_from_error(error) if isinstance(error, SynteraError)
        else problem_from_database(error)
    )  # fmt: skip
    await problem.response(request)(request.scope, _no_receive, send)


async def _json(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()),
                            (b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> str | None:
    """The credential (``syntera.api.deps.credential_from`` of the request's headers)."""
    authorization: str | None = None
    api_key: str | None = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = bytes(value).decode("latin-1")
        elif name == b"apikey":
            api_key = bytes(value).decode("latin-1")
    return credential_from(authorization, api_key)


async def _no_receive() -> dict[str, Any]:  # the answers below never read the body
    return {"type": "http.disconnect"}
