"""No write is a server error: any body, ``columns=``, ``on_conflict=``, ``select=``,
filter and ``Prefer`` header to POST, PATCH or DELETE on /rest/v1 is either done or a
4xx naming what is wrong (hypothesis, over the real endpoint, every change rolled back)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

COLUMNS = ["company_id", "email", "first_name", "tags", "metadata", "id", "nope", '"email"']
PIECES = [*COLUMNS, ",", " ", "(", ")", "*", "!", "deals", "eq.", ".", '"', ":", "%"]
text = st.lists(st.sampled_from(PIECES), max_size=6).map("".join) | st.text(max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
rows = st.dictionaries(st.sampled_from(COLUMNS), values, max_size=4)
bodies = rows | st.lists(rows, max_size=3) | values
PREFER = ["return=representation", "return=minimal", "return=headers-only", "missing=default",
          "resolution=merge-duplicates", "resolution=ignore-duplicates", "count=exact"]  # fmt: skip
QUERY_KEYS = ["columns", "on_conflict", "select", "email", "first_name", "order", "limit"]


@pytest.fixture(scope="module")
async def writer(tenant_a: SeededCompany, auth: AuthHeaders) -> dict[str, str]:
    return auth(tenant_a.owner)


@examples(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["POST", "PATCH", "DELETE"]),
    body=bodies,
    query=st.lists(st.tuples(st.sampled_from(QUERY_KEYS), text), max_size=3),
    prefer=st.lists(st.sampled_from(PREFER), max_size=3),
    singular=st.booleans(),
)
async def test_no_write_is_a_server_error(
    rest_app: httpx.AsyncClient,
    writer: dict[str, str],
    method: str,
    body: Any,
    query: list[tuple[str, str]],
    prefer: list[str],
    singular: bool,
) -> None:
    query_string = "&".join(f"{quote(key)}={quote(value)}" for key, value in query)
    headers = {
        **writer,
        "Content-Type": "application/json",
        "Prefer": ", ".join([*prefer, "tx=rollback"]),
    }
    if singular:
        headers["Accept"] = "application/vnd.pgrst.object+json"
    response = await rest_app.request(
        method, f"/rest/v1/contacts?{query_string}", content=orjson.dumps(body), headers=headers
    )
    assert response.status_code < 500, (method, body, query, prefer, response.text)
    if response.status_code >= 400:
        answer: dict[str, Any] = response.json()
        assert "code" in answer or "title" in answer  # the JSON guard's 422
