"""Every JSON input bounded at the edge, before anything reads it.

A body is checked once, whole, before FastAPI parses it: nesting at most ``MAX_DEPTH``
levels, strings and keys of bounded length and valid Unicode (no lone surrogates, which
no store can encode), integers that fit in 64 bits (what PostgreSQL's bigint, BSON's
int64 and float comparisons handle), no NaN or Infinity. A body that breaks a bound is a
422 naming the field; it never reaches a route, so it can never be stored, queued (a
webhook payload) or half-written, and nothing stored can later fail to serialise.
Query strings are held to the same rules for their values.

Malformed JSON is passed through: FastAPI answers it with 400.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syntera.api.errors import Problem, field_problem
from syntera.api.limits import BodyTooLarge

MAX_DEPTH = 32
MAX_STRING_CHARS = 200_000
MAX_KEY_CHARS = 256
MAX_QUERY_VALUE_CHARS = 10_000
INT64 = range(-(2**63), 2**63)


class Unacceptable(ValueError):
    """A JSON value outside the bounds; ``parts`` is where (keys and indexes, outermost
    first), filled in as the error travels out of the nested values."""

    def __init__(self, message: str, *parts: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts = list(parts)

    @property
    def path(self) -> str:
        shown = self.parts[:12] + (["…"] if len(self.parts) > 12 else [])
        # A key may itself hold the lone surrogate being reported: show it escaped.
        text = ".".join(part[:40] for part in shown) or "body"
        return text.encode("utf-8", "backslashreplace").decode()


def _reject_constant(name: str) -> Any:
    raise Unacceptable(f"{name} is not a JSON number")


def _check_text(text: str, limit: int) -> None:
    if len(text) > limit:
        raise Unacceptable(f"longer than {limit} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise Unacceptable("not valid Unicode (a lone surrogate)") from error


def check_value(value: Any, depth: int = 0) -> None:
    """Raise Unacceptable for the first part of ``value`` outside the bounds. The path
    is only built for an error, so a good body costs one walk and no allocations."""
    if depth > MAX_DEPTH:
        raise Unacceptable(f"nested more than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            try:
                _check_text(key, MAX_KEY_CHARS)
                check_value(item, depth + 1)
            except Unacceptable as error:
                error.parts.insert(0, key)
                raise
    elif isinstance(value, list):
        for index, item in enumerate(value):
            try:
                check_value(item, depth + 1)
            except Unacceptable as error:
                error.parts.insert(0, str(index))
                raise
    elif isinstance(value, str):
        _check_text(value, MAX_STRING_CHARS)
    elif isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        raise Unacceptable("integers must fit in 64 bits")


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
    try:
        text = query_string.decode("ascii")
    except UnicodeDecodeError as error:
        raise Unacceptable("not URL-encoded", "query") from error
    for name, value in parse_qsl(text, keep_blank_values=True, errors="strict"):
        if "\x00" in value or "\x00" in name:
            raise Unacceptable("no NUL characters", name)
        try:
            _check_text(value, MAX_QUERY_VALUE_CHARS)
        except Unacceptable as error:
            error.parts.insert(0, name)
            raise


def is_json(scope: Scope) -> bool:
    headers: dict[bytes, bytes] = dict(scope["headers"])
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return content_type == b"application/json" or content_type.endswith(b"+json")


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


class JsonGuard:
    """Check every JSON body and query string of a request (see the module's text)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
