"""The JSON guard's bounds on query strings, at the unit: its shortcut for plain ASCII
query strings refuses exactly what the full check refuses."""

from __future__ import annotations

import pytest

from syntera.api.json_guard import MAX_QUERY_VALUE_CHARS, check_query
from syntera.db.storable import Unacceptable


@pytest.mark.parametrize(
    "query",
    [
        b"a=\x00",  # a raw NUL (no client encodes it so, anyone can send it)
        b"a=%00",
        b"a=" + b"x" * (MAX_QUERY_VALUE_CHARS + 1),
        b"a=%ED%A0%80",  # a lone surrogate's UTF-8: not UTF-8
        "a=é".encode(),  # not URL-encoded
    ],
)
def test_what_breaks_a_bound_is_refused(query: bytes) -> None:
    with pytest.raises((Unacceptable, UnicodeDecodeError)):  # both refused by JsonGuard
        check_query(query)


@pytest.mark.parametrize(
    "query",
    [b"", b"id=eq.5", b"a=b+c&d=", b"a=" + b"x" * (MAX_QUERY_VALUE_CHARS - 2), b"q=%C3%A9"],
)
def test_plain_queries_pass(query: bytes) -> None:
    check_query(query)
