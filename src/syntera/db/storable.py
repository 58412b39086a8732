"""What every store can hold and give back: the bounds of a JSON value.

A value nested deeper than ``MAX_DEPTH`` levels is stored by PostgreSQL and MongoDB but
no longer serialised on the way out (pydantic stops at about 255 levels), so every list
that holds it fails; a lone surrogate cannot be encoded as UTF-8 at all. The JSON guard
(``syntera.api.json_guard``) holds every request body to these bounds at the edge; the
stores hold every JSON value to the same bounds again, before it is written
(``storable``, ``jsonb``), so that nothing is stored that cannot be read back, whatever
got past the edge. A value outside them is an ``InvalidField`` naming where it is.
"""

from __future__ import annotations

from typing import Any, TypeVar

from psycopg.types.json import Jsonb

from syntera.errors import InvalidField

MAX_DEPTH = 32
MAX_STRING_CHARS = 200_000
MAX_KEY_CHARS = 256
INT64 = range(-(2**63), 2**63)
SHOWN_PARTS = 12

V = TypeVar("V")


class Unacceptable(ValueError):
    """A JSON value outside the bounds; ``parts`` is where (keys and indexes, outermost
    first), filled in as the error travels out of the nested values."""

    def __init__(self, message: str, *parts: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts = list(parts)

    @property
    def path(self) -> str:
        shown = self.parts[:SHOWN_PARTS] + (["…"] if len(self.parts) > SHOWN_PARTS else [])
        # A key may itself hold the lone surrogate being reported: show it escaped.
        text = ".".join(part[:40] for part in shown) or "body"
        return text.encode("utf-8", "backslashreplace").decode()


def check_text(text: str, limit: int) -> None:
    """Raise Unacceptable if ``text`` is over ``limit`` characters or not valid Unicode."""
    if len(text) > limit:
        raise Unacceptable(f"longer than {limit} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise Unacceptable("not valid Unicode (a lone surrogate)") from error


def check_value(value: Any, depth: int = 0) -> None:
    """Raise Unacceptable for the first part of ``value`` outside the bounds: nested at
    most ``MAX_DEPTH`` levels, strings and keys of bounded length and valid Unicode,
    integers that fit in 64 bits. The path is only built for an error, so a good value
    costs one walk and no allocations."""
    if depth > MAX_DEPTH:
        raise Unacceptable(f"nested more than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            try:
                if isinstance(key, str):
                    check_text(key, MAX_KEY_CHARS)
                check_value(item, depth + 1)
            except Unacceptable as error:
                error.parts.insert(0, str(key))
                raise
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            try:
                check_value(item, depth + 1)
            except Unacceptable as error:
                error.parts.insert(0, str(index))
                raise
    elif isinstance(value, str):
        check_text(value, MAX_STRING_CHARS)
    elif isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        raise Unacceptable("integers must fit in 64 bits")


def storable(field: str, value: V) -> V:
    """``value``, if a store can hold it and give it back; InvalidField naming where in
    ``field`` it is not (before anything is written)."""
    try:
        check_value(value)
    except Unacceptable as error:
        error.parts.insert(0, field)
        raise InvalidField(error.path, error.message) from None
    return value


def jsonb(field: str, value: Any) -> Jsonb:
    """``value`` as a jsonb parameter of the column (or field) ``field``, checked by
    ``storable``."""
    return Jsonb(storable(field, value))
