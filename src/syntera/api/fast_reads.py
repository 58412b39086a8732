"""The hot reads, answered beside FastAPI's routing: ``GET /v1/<resource>/{id}`` of a
signed-in user.

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
from syntera.errors import SynteraError, not_found
from syntera.kit.resources import Resource


@dataclass(frozen=True)
class FastRead:
    resource: Resource[Any]
    managers_only: bool
    template: str  # the route's path template, as metrics and logs name it

    @property
    def path(self) -> str:  # what HttpMetrics reads off scope["route"]
        return self.template


READS: dict[str, FastRead] = {}  # "/v1/contacts" -> its read


def register(prefix: str, resource: Resource[Any], managers_only: bool) -> None:
    READS[prefix] = FastRead(resource, managers_only, f"{prefix}/{{row_id}}")


class FastReads:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["query_string"]:
            await self.app(scope, receive, send)
            return
        prefix, _, last = scope["path"].rpartition("/")
        read = READS.get(prefix)
        if read is None or len(last) != 36 or not await self._answer(read, last, scope, send):
            await self.app(scope, receive, send)

    async def _answer(self, read: FastRead, last: str, scope: Scope, send: Send) -> bool:
        """Answer the read; False to leave it to FastAPI (nothing was sent or counted)."""
        try:
            row_id = UUID(last)
        except ValueError:
            return False
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
        try:
            limiters = state.limiters
            key = global_key("rate-user", str(caller.user_id))
            await limiters.enforce(limiters.api_user, key, "requests per user")
            query = read.resource.table.fetch_current_query
            membership, rows = await read_as(state.stores.postgres, caller, query, {"id": row_id})
            TENANT.set(str(membership.company_id) if membership else None)
            if membership is None or (read.managers_only and not membership.manages_team):
                # The 403 and its wording are FastAPI's path's; the limit is counted, so
                # that path must not count it again: it is the rare case, answered there.
                scope["syntera.limit_counted"] = True
                return False
            if not rows:
                raise not_found(read.resource.label)
            body = read.resource.out(rows[0]).model_dump_json().encode()
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
