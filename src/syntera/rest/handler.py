"""The /rest/v1 application: a middleware that ``syntera.app`` installs beside the fast
paths, answering below /rest/v1 beside FastAPI's routing, inside the same middlewares
as /v1 (CORS, metrics, body size, the JSON guard).

Each request: its headers read (``syntera.rest.request``), its caller found from the
bearer token (the same authenticator as /v1; no token is ``SYNTERA_REST_ANON_ROLE``), the
handler for its method and kind (a relation or ``rpc/<function>``) called, and a
``RestError`` or database error answered as PostgREST does. A handler runs its
statements with ``Rest.run``: one transaction as the caller, in one round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Receive, Scope, Send

from syntera.api.deps import count_request, credential_from
from syntera.api.middleware import HttpMiddleware
from syntera.config import Settings
from syntera.db.postgres import TenantConnection, run_as
from syntera.db.redis import global_key
from syntera.db.slow import ROUTE
from syntera.errors import RateLimited, Unauthorized
from syntera.ratelimit import Limiters
from syntera.rest.errors import JSON_UTF8, RestError, from_database
from syntera.rest.request import (
    NO_PREFERENCES,
    Preferences,
    RestRequest,
    applied_header,
    headers_of,
    schema_of,
    target_of,
)
from syntera.rest.schema import SchemaHolder
from syntera.tenancy import Principal

PREFIX = "/rest/v1"


@dataclass(frozen=True)
class RestRoute:
    """The route template of a request (what the metrics and the slow-statement log read)."""

    path: str


RELATION_ROUTE = RestRoute(PREFIX + "/{relation}")
RPC_ROUTE = RestRoute(PREFIX + "/rpc/{function}")


@dataclass
class Answer:
    """What a handler answers: status, body and headers (Content-Type among them)."""

    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = JSON_UTF8


# A handler: the request's context, the request, and its body's receive (writes read it).
Handler = Callable[["Rest", RestRequest, Receive], Awaitable[Answer]]


@dataclass
class Rest:
    """What every /rest/v1 handler works with: the pool, the schema cache, the settings."""

    pool: AsyncConnectionPool[TenantConnection]
    schema: SchemaHolder
    settings: Settings
    authenticate: Callable[[str], Principal]
    limiters: Limiters | None = None

    async def run(
        self,
        request: RestRequest,
        statements: Sequence[tuple[str | bytes, Mapping[str, Any]]],
        *,
        read_only: bool,
    ) -> list[list[DictRow]]:
        """``statements`` in one transaction as the request's caller, in one round trip
        (BEGIN, the role and claims, PostgREST's request settings, the statements,
        COMMIT — or ROLLBACK for ``Prefer: tx=rollback`` where SYNTERA_REST_TX_END
        allows it, noted for Preference-Applied). Each statement's rows."""
        commit = True
        if (
            request.preferences.tx is not None
            and self.settings.rest_tx_end == "commit-allow-override"
        ):
            commit = request.preferences.tx == "commit"
            request.applied.append(f"tx={request.preferences.tx}")
        settings = {
            "request.method": request.method,
            "request.path": PREFIX + request.path,
            "request.headers": orjson.dumps(request.headers).decode(),
        }
        if request.preferences.timezone is not None:
            # Prefer: timezone=…: the transaction's time zone (timestamptz answers in it).
            settings["timezone"] = request.preferences.timezone
            request.applied.append(f"timezone={request.preferences.timezone}")
        _, results = await run_as(
            self.pool, request.principal, statements, read_only=read_only, commit=commit,
            settings=settings, membership=False,
        )  # fmt: skip
        return results


def credential_of(headers: Mapping[str, str]) -> str | None:
    """The credential of a request (``syntera.api.deps.credential_from``); an empty
    bearer token is 401 PGRST301, as PostgREST answers it."""
    authorization = headers.get("authorization")
    if authorization is not None and authorization.strip().lower() == "bearer":
        raise RestError(401, "PGRST301", "Empty JWT is sent in Authorization header",
                        headers=[(b"www-authenticate", b"Bearer")])  # fmt: skip
    return credential_from(authorization, headers.get("apikey"))


def _jwt_error(error: Unauthorized) -> RestError:
    expired = "expired" in error.detail.lower()
    message = "JWT expired" if expired else error.detail.removeprefix("invalid token: ")
    challenge = f'Bearer error="invalid_token", error_description="{message}"'.encode()
    return RestError(401, "PGRST303" if expired else "PGRST301", message,
                     headers=[(b"www-authenticate", challenge)])  # fmt: skip


class RestPaths(HttpMiddleware):
    """Answers every request below ``PREFIX`` with ``handlers`` (by: is it an RPC, the
    method), beside FastAPI's routing as ``syntera.api.fast_paths`` does: py-spy put a
    sixth of a read's CPU in the router, its mount and the exception middlewares between
    this middleware and the app. Anything else goes on to FastAPI."""

    def __init__(self, app: ASGIApp, handlers: Mapping[tuple[bool, str], Handler]) -> None:
        super().__init__(app)
        self.handlers = dict(handlers)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(PREFIX) and (len(path) == len(PREFIX) or path[len(PREFIX)] == "/"):
            await self.answer(scope, receive, send, path[len(PREFIX) :])
        else:
            await self.app(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Answer one request of /rest/v1 (``path`` below it)."""
        rest: Rest = scope["app"].state.rest
        authenticated = False
        try:
            headers = headers_of(scope["headers"])
            name, rpc = target_of(path)
            method = scope["method"]
            route = RPC_ROUTE if rpc else RELATION_ROUTE
            scope["route"] = route  # the template HttpMetrics labels the request with
            ROUTE.set(route.path)
            handler = self.handlers.get((rpc, method))
            if handler is None:
                raise RestError(405, "PGRST117", f"Unsupported HTTP method: {method}")
            credential = credential_of(headers)
            authenticated = credential is not None
            client = scope.get("client")
            principal = await _principal(rest, credential, client[0] if client else "unknown")
            request = RestRequest(
                method, path, scope["query_string"].decode("latin-1"), headers,
                schema_of(headers, method, rest.settings.rest_schema_list), name, rpc,
                principal, authenticated,
                Preferences.parse([headers["prefer"]]) if "prefer" in headers else NO_PREFERENCES,
            )  # fmt: skip
            request.preferences.check()
            if request.preferences.handling is not None:
                request.applied.append(f"handling={request.preferences.handling}")
            answer = await handler(rest, request, receive)
            if request.applied:
                answer.headers.append((b"preference-applied", applied_header(request.applied)))
        except RestError as error:
            answer = Answer(error.status, error.body(), error.headers)
        except psycopg.Error as error:
            failure = from_database(error, authenticated)
            answer = Answer(failure.status, failure.body(), failure.headers)
        except RateLimited as error:
            limited = RestError(
                429,
                "PGRST429",
                "Too many requests",
                error.detail,
                headers=[(b"retry-after", str(error.retry_after_s).encode())],
            )
            answer = Answer(429, limited.body(), limited.headers)
        await _send(send, answer, head=scope["method"] == "HEAD")


async def _principal(rest: Rest, credential: str | None, address: str) -> Principal:
    """Who asks; counted against the per-user limit, or, when no user is named (no
    token, the anon key, the service key), against the same limit per client address,
    so anonymous requests cannot take the pool unbounded."""
    if credential is None:
        role = rest.settings.rest_anon_role
        caller = Principal(role, None, {"role": role})
    else:
        try:
            caller = rest.authenticate(credential)
        except Unauthorized as error:
            raise _jwt_error(error) from error
    if rest.limiters is not None:
        if caller.user_id is not None:
            await count_request(rest.limiters, caller)
        elif caller.role != "service_role":
            limiters = rest.limiters
            key = global_key("rate-rest-address", address)
            await limiters.enforce(limiters.api_user, key, "anonymous requests per address")
    return caller


async def _send(send: Send, answer: Answer, *, head: bool) -> None:
    headers = [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
        *answer.headers,
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else answer.body})
