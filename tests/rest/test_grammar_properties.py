"""No select, filter or order string is a server error: every input either parses and
builds a statement, or is a 4xx naming what is wrong (hypothesis, over the parser and
builder and over the real endpoint)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from syntera.rest.errors import RestError
from syntera.rest.grammar import parse_query
from syntera.rest.query import build_read, read_values
from syntera.rest.schema import SchemaCache

PIECES = [
    "id", "name", "title", "data", "tags", "books", "authors", "reviews", "author_id",
    "nope", "eq", "neq", "gt", "in", "is", "null", "not", "not_null", "fts", "like", "cs",
    "or", "and", "any", "all", "english", "asc", "desc", "nullslast", "inner", "left",
    ".", ",", "(", ")", "->", "->>", "::", "!", ":", "*", "...", '"', "{", "}", "[", "]",
    " ", "%", "'", ";", "\\", "-", "1", "0", "é", "\u2028",
]  # fmt: skip
grammar_text = st.lists(st.sampled_from(PIECES), max_size=14).map("".join) | st.text(max_size=30)
KEYS = ["select", "order", "id", "name", "or", "and", "not.or", "books.id", "books.order",
        "books.limit", "limit", "offset", "data->a", "books.or", "tags"]  # fmt: skip


@pytest.fixture(scope="module")
async def fixture_cache(rest_app: httpx.AsyncClient) -> SchemaCache:
    state = rest_app._transport.app.state.rest  # type: ignore[attr-defined]
    cache: SchemaCache = await state.schema.current()
    return cache


@examples(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(params=st.lists(st.tuples(st.sampled_from(KEYS), grammar_text), max_size=4))
def test_the_parser_and_builder_raise_only_rest_errors(
    fixture_cache: SchemaCache, params: list[tuple[str, str]]
) -> None:
    query_string = "&".join(f"{quote(key)}={quote(value)}" for key, value in params)
    for relation in ("authors", "books"):
        refused: RestError | None = None
        try:
            query = parse_query(query_string)
            built = build_read(fixture_cache, fixture_cache.relation("rest_fixtures", relation),
                               query, limit=10, offset=3, count="exact", max_rows=None)  # fmt: skip
            # A statement cached for this shape is given the same values.
            assert built.params.items() <= read_values(query).items()
        except RestError as error:
            refused = error
        if refused is not None:
            assert 400 <= refused.status < 500 or refused.status == 300, refused.status
            assert refused.code


@examples(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    key=st.sampled_from(KEYS), value=grammar_text, relation=st.sampled_from(["authors", "books"])
)
async def test_no_query_string_is_a_server_error(
    rest_app: httpx.AsyncClient, key: str, value: str, relation: str
) -> None:
    response = await rest_app.get(
        f"/rest/v1/{relation}?{quote(key)}={quote(value)}",
        headers={"accept-profile": "rest_fixtures"},
    )
    assert response.status_code < 500, (key, value, response.text)
    if response.status_code >= 400:
        body: dict[str, Any] = response.json()
        assert set(body) >= {"code", "message"} or "title" in body  # the JSON guard's 422
