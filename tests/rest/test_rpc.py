"""/rest/v1/rpc/<function>: named arguments in a POST body or a GET's query, overloads
chosen by argument names, scalar and set results, filters, order, ranges and embeds on
rows a function returns, read-only GETs, and PostgREST's errors — over fixture functions
in a schema of their own, exposed beside ``public``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import AuthHeaders, served
from tests.factories import SeededCompany

SCHEMA = "rpc_fixtures"
FIXTURES = """
CREATE SCHEMA IF NOT EXISTS rpc_fixtures;
GRANT USAGE ON SCHEMA rpc_fixtures TO anon, authenticated, service_role;
CREATE TABLE IF NOT EXISTS rpc_fixtures.notes (id serial PRIMARY KEY, note text);
GRANT SELECT, INSERT ON rpc_fixtures.notes TO anon, authenticated;
GRANT USAGE ON SEQUENCE rpc_fixtures.notes_id_seq TO anon, authenticated;
CREATE OR REPLACE FUNCTION rpc_fixtures.add(a int, b int) RETURNS int
  LANGUAGE sql IMMUTABLE AS 'SELECT a + b';
CREATE OR REPLACE FUNCTION rpc_fixtures.add(a int, b int, c int) RETURNS int
  LANGUAGE sql IMMUTABLE AS 'SELECT a + b + c';
CREATE OR REPLACE FUNCTION rpc_fixtures.greet(name text DEFAULT 'you') RETURNS text
  LANGUAGE sql IMMUTABLE AS $$SELECT 'hello ' || name$$;
CREATE OR REPLACE FUNCTION rpc_fixtures.echo(jsonb) RETURNS jsonb
  LANGUAGE sql IMMUTABLE AS 'SELECT $1';
CREATE OR REPLACE FUNCTION rpc_fixtures.numbers(n int)
  RETURNS TABLE (value int, label text)
  LANGUAGE sql STABLE AS $$SELECT i, 'n' || i FROM generate_series(1, n) i$$;
CREATE OR REPLACE FUNCTION rpc_fixtures.squares(n int) RETURNS SETOF int
  LANGUAGE sql STABLE AS 'SELECT i * i FROM generate_series(1, n) i';
CREATE OR REPLACE FUNCTION rpc_fixtures.tags_of(tags text[]) RETURNS int
  LANGUAGE sql IMMUTABLE AS 'SELECT cardinality(tags)';
CREATE OR REPLACE FUNCTION rpc_fixtures.joined(VARIADIC parts text[]) RETURNS text
  LANGUAGE sql IMMUTABLE AS $$SELECT array_to_string(parts, '-')$$;
CREATE OR REPLACE FUNCTION rpc_fixtures.note(note text) RETURNS void
  LANGUAGE sql VOLATILE AS $$INSERT INTO rpc_fixtures.notes (note) VALUES (note)$$;
CREATE OR REPLACE FUNCTION rpc_fixtures.visible_contacts() RETURNS SETOF public.contacts
  LANGUAGE sql STABLE AS 'SELECT * FROM public.contacts';
"""


@pytest.fixture(scope="module")
async def rpc_app(
    settings: Settings, api_urls: StackUrls, owner_conn: psycopg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """An application exposing ``public`` and the fixture functions' schema."""
    owner_conn.execute(FIXTURES)
    configured = settings.model_copy(
        update={"rest_schemas": f"public,{SCHEMA}", "rate_limits_enabled": False}
    )
    async with served(create_app(configured, api_urls)) as client:
        yield client


READ = {"Accept-Profile": SCHEMA}
WRITE = {"Content-Profile": SCHEMA}


async def test_post_named_arguments_answers_the_scalar(rpc_app: httpx.AsyncClient) -> None:
    response = await rpc_app.post("/rest/v1/rpc/add", json={"a": 1, "b": 2}, headers=WRITE)
    assert response.status_code == 200, response.text
    assert response.json() == 3


async def test_overloads_are_chosen_by_argument_names(rpc_app: httpx.AsyncClient) -> None:
    three = await rpc_app.post("/rest/v1/rpc/add", json={"a": 1, "b": 2, "c": 3}, headers=WRITE)
    assert three.json() == 6
    by_get = await rpc_app.get("/rest/v1/rpc/add?a=4&b=5", headers=READ)
    assert by_get.status_code == 200, by_get.text
    assert by_get.json() == 9


async def test_defaults_and_array_arguments(rpc_app: httpx.AsyncClient) -> None:
    assert (await rpc_app.post("/rest/v1/rpc/greet", json={}, headers=WRITE)).json() == (
        "hello you"
    )
    named = await rpc_app.get("/rest/v1/rpc/greet?name=Ann", headers=READ)
    assert named.json() == "hello Ann"
    tags = await rpc_app.post("/rest/v1/rpc/tags_of", json={"tags": ["a", "b"]}, headers=WRITE)
    assert tags.json() == 2


async def test_a_single_unnamed_jsonb_parameter_takes_the_whole_body(
    rpc_app: httpx.AsyncClient,
) -> None:
    body = {"any": ["shape", {"at": 1}]}
    response = await rpc_app.post("/rest/v1/rpc/echo", json=body, headers=WRITE)
    assert response.status_code == 200, response.text
    assert response.json() == body


async def test_set_returning_rows_take_filters_order_ranges_and_counts(
    rpc_app: httpx.AsyncClient,
) -> None:
    response = await rpc_app.post(
        "/rest/v1/rpc/numbers?value=gt.2&order=value.desc&limit=2&select=label",
        json={"n": 6},
        headers={**WRITE, "Prefer": "count=exact"},
    )
    assert response.status_code == 206, response.text
    assert response.json() == [{"label": "n6"}, {"label": "n5"}]
    assert response.headers["content-range"] == "0-1/4"
    by_get = await rpc_app.get("/rest/v1/rpc/numbers?n=3&label=eq.n2", headers=READ)
    assert by_get.json() == [{"value": 2, "label": "n2"}]
    one = await rpc_app.get(
        "/rest/v1/rpc/numbers?n=3&value=eq.1",
        headers={**READ, "Accept": "application/vnd.pgrst.object+json"},
    )
    assert one.json() == {"value": 1, "label": "n1"}
    many = await rpc_app.get(
        "/rest/v1/rpc/numbers?n=3", headers={**READ, "Accept": "application/vnd.pgrst.object+json"}
    )
    assert many.status_code == 406
    assert many.json()["code"] == "PGRST116"


async def test_a_set_of_scalars_is_an_array(rpc_app: httpx.AsyncClient) -> None:
    response = await rpc_app.get("/rest/v1/rpc/squares?n=4", headers=READ)
    assert response.json() == [1, 4, 9, 16]


async def test_a_writing_function_is_405_by_get_and_204_by_post(
    rpc_app: httpx.AsyncClient,
) -> None:
    by_get = await rpc_app.get("/rest/v1/rpc/note?note=read-only", headers=READ)
    assert by_get.status_code == 405, by_get.text
    assert by_get.json()["code"] == "25006"
    by_post = await rpc_app.post("/rest/v1/rpc/note", json={"note": "written"}, headers=WRITE)
    assert by_post.status_code == 204, by_post.text
    notes = await rpc_app.get("/rest/v1/notes?note=eq.written", headers=READ)
    assert len(notes.json()) >= 1


@pytest.mark.parametrize(
    ("path", "body"),
    [("add", {"a": 1}), ("add", {"x": 1, "y": 2}), ("nothing_here", {}), ("numbers", {})],
)
async def test_no_matching_function_is_pgrst202(
    rpc_app: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await rpc_app.post(f"/rest/v1/rpc/{path}", json=body, headers=WRITE)
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "PGRST202"
    assert f"{SCHEMA}.{path}" in response.json()["message"]


async def test_bad_arguments_are_400_not_500(rpc_app: httpx.AsyncClient) -> None:
    wrong_type = await rpc_app.post("/rest/v1/rpc/add", json={"a": "x", "b": 1}, headers=WRITE)
    assert wrong_type.status_code == 400, wrong_type.text
    assert wrong_type.json()["code"] == "22P02"
    not_json = await rpc_app.post(
        "/rest/v1/rpc/add", content="{", headers={**WRITE, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    assert not_json.json()["code"] == "PGRST102"


async def test_rows_of_a_table_embed_and_obey_row_level_security(
    rpc_app: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant_a: SeededCompany,
    tenant_b: SeededCompany,
) -> None:
    response = await rpc_app.post(
        "/rest/v1/rpc/visible_contacts?select=id,email,deals(title)",
        json={},
        headers={**WRITE, **auth(tenant_a.member)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == [
        {
            "id": str(tenant_a.rows["contacts"]),
            "email": "ann@example.com",
            "deals": [{"title": "Renewal"}],
        }
    ]
    other = await rpc_app.post(
        f"/rest/v1/rpc/visible_contacts?id=eq.{tenant_b.rows['contacts']}",
        json={},
        headers={**WRITE, **auth(tenant_a.member)},
    )
    assert other.json() == []


ARGUMENT_NAMES = ["a", "b", "c", "n", "name", "tags", "note", "x", ""]
argument_values = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6)
argument_values = argument_values | st.lists(argument_values, max_size=3)


@examples(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    function=st.sampled_from(["add", "greet", "echo", "numbers", "squares", "tags_of", "note"]),
    arguments=st.dictionaries(st.sampled_from(ARGUMENT_NAMES), argument_values, max_size=3)
    | argument_values,
    by_get=st.booleans(),
    extra=st.sampled_from(["", "select=value", "value=gt.1", "order=label.desc", "limit=x"]),
)
async def test_no_call_is_a_server_error(
    rpc_app: httpx.AsyncClient, function: str, arguments: Any, by_get: bool, extra: str
) -> None:
    if by_get:
        pairs = arguments.items() if isinstance(arguments, dict) else []
        query = "&".join(f"{quote(k)}={quote(str(v))}" for k, v in pairs)
        response = await rpc_app.get(f"/rest/v1/rpc/{function}?{query}&{extra}", headers=READ)
    else:
        response = await rpc_app.post(
            f"/rest/v1/rpc/{function}?{extra}",
            content=orjson.dumps(arguments),
            headers={**WRITE, "Content-Type": "application/json", "Prefer": "tx=rollback"},
        )
    assert response.status_code < 500, (function, arguments, by_get, extra, response.text)


@pytest.mark.parametrize("body", ["[" * 100_000, '{"\\ud800": 1}'])
async def test_a_body_too_deep_or_with_a_lone_surrogate_is_400_whatever_its_type(
    rpc_app: httpx.AsyncClient, body: str
) -> None:
    # text/plain passes beside the JSON guard of application/json bodies.
    response = await rpc_app.post(
        "/rest/v1/rpc/add", content=body, headers={**WRITE, "Content-Type": "text/plain"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "PGRST102"
