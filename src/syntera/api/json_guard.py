"""Every JSON input bounded at the edge, before anything reads it.

A body is checked once, whole, before FastAPI parses it: nesting at most ``MAX_DEPTH``
levels, strings and keys of bounded length and valid Unicode (no lone surrogates, which
no store can encode), integers that fit in 64 bits (what PostgreSQL's bigint, BSON's
int64 and float comparisons handle), no NaN or Infinity. A body that breaks a bound is a
422 naming the field; it never reaches a route, so it can never be stored, queued (a
webhook payload) or half-written, and nothing stored can later fail to serialise.
Query strings are held to the same rules for their values.

A request with more than one Content-Type header is refused (400) whatever its route:
the guard, FastAPI's body parser and any proxy in between could each believe a
different one, and JSON the guard took for text would reach the stores unchecked. Of
one header, the guard and the fast paths judge "JSON" by FastAPI's own rule. The stores
hold what they write to the same bounds again (``syntera.db.storable``).

Malformed JSON is passed through: FastAPI answers it with 400.
"""

from __future__ import annotations

import email.message
import json
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from syntera.api.errors import Problem, field_problem
from syntera.api.limits import BodyTooLarge
from syntera.api.middleware import HttpMiddleware
from syntera.db.storable import MAX_DEPTH, Unacceptable, check_text, check_value

MAX_QUERY_VALUE_CHARS = 10_000
SEVERAL_CONTENT_TYPES = "the request has more than one Content-Type header; send one"


def _reject_constant(name: str) -> Any:
    raise Unacceptable(f"{name} is not a JSON number")


def check_body(body: bytes) -> None:
    """Raise Unacceptable if the JSON ``body`` breaks a bound (malformed JSON passes)."""
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except RecursionError as error:
        raise Unacceptable(f"nested more than {MAX_DEPTH} levels") from error
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, Unacceptable):
            raise
        return  # not JSON: FastAPI says so (400)
    check_value(value)


def check_query(query_string: bytes) -> None:
    """Raise Unacceptable for a query value that is not valid UTF-8, holds NUL or is
    over its length bound."""
    if (
        len(query_string) <= MAX_QUERY_VALUE_CHARS
        and query_string.isascii()
        and b"%" not in query_string
        and b"\x00" not in query_string
    ):
        return  # every value is ASCII text shorter than the whole: nothing to decode
    try:
        text = query_string.decode("ascii")
    except UnicodeDecodeError as error:
        raise Unacceptable("not URL-encoded", "query") from error
    for name, value in parse_qsl(text, keep_blank_values=True, errors="strict"):
        if "\x00" in value or "\x00" in name:
            raise Unacceptable("no NUL characters", name)
        try:
            check_text(value, MAX_QUERY_VALUE_CHARS)
        except Unacceptable as error:
            error.parts.insert(0, name)
            raise


def content_types(scope: Scope) -> list[bytes]:
    """The values of the request's Content-Type headers (ASGI names are lower case)."""
    return [value for name, value in scope["headers"] if name == b"content-type"]


def is_json(scope: Scope) -> bool:
    """Whether FastAPI reads the body as JSON: the request's Content-Type (the first;
    JsonGuard refuses a request with more) by FastAPI's own rule."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value == b"application/json" or _json_media_type(value)
    return False  # FastAPI's strict content type: no header is not JSON


@lru_cache(maxsize=64)
def _json_media_type(value: bytes) -> bool:
    """FastAPI's test of a Content-Type (``fastapi.routing``, read by the email package):
    ``application/json`` or ``application/*+json``, whatever the case, spacing and
    parameters."""
    message = email.message.Message()
    message["content-type"] = value.decode("latin-1")
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def read_body(receive: Receive) -> bytes | None:
    """The whole body of a request; None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` whole once, then what ``receive`` gives."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class JsonGuard(HttpMiddleware):
    """Check every JSON body and query string of a request (see the module's text)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if len(content_types(scope)) > 1:
            # The guard, FastAPI and a proxy could each believe a different one.
            problem = Problem(400, "Bad Request", SEVERAL_CONTENT_TYPES)
            await problem.response(Request(scope, receive))(scope, receive, send)
            return
        try:
            check_query(scope.get("query_string", b""))
        except (Unacceptable, UnicodeDecodeError) as error:
            await self._refuse(scope, receive, send, error)
            return
        if not is_json(scope):
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
        except BodyTooLarge as error:  # raised by the size limit around this guard
            problem = Problem(413, "Content Too Large", str(error.detail))
            await problem.response(Request(scope, receive))(scope, receive, send)
            return
        if body is None:
            await self.app(scope, receive, send)  # disconnected: the app sees it
            return
        try:
            check_body(body)
        except Unacceptable as error:
            await self._refuse(scope, receive, send, error)
            return
        await self.app(scope, replaying(body, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
        if isinstance(error, Unacceptable):
            problem = field_problem(error.path, error.message)
        else:
            problem = field_problem("query", "not valid UTF-8")
        response = problem.response(Request(scope, receive))
        await response(scope, receive, send)
