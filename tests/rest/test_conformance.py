"""PostgREST 12 behaviours checked against its own spec tests and documentation: request
bodies by Content-Type (forms, refused types), ``Prefer: timezone``, computed columns,
array and VARIADIC arguments of RPC."""

from __future__ import annotations

import httpx

from tests.rest.conftest import Books
from tests.rest.test_rpc import WRITE, rpc_app  # noqa: F401 (the fixture)

FIXTURES_WRITE = {"content-profile": "rest_fixtures", "prefer": "tx=rollback"}
FORM = "application/x-www-form-urlencoded"


async def test_a_form_body_inserts_one_row_of_text_values(
    rpc_app: httpx.AsyncClient,  # noqa: F811
) -> None:
    response = await rpc_app.post(
        "/rest/v1/notes?select=note",
        content=b"note=space+opera%21&note=the+last+wins",
        headers={**WRITE, "content-type": FORM, "prefer": "return=representation"},
    )
    assert response.status_code == 201, response.text
    assert response.json() == [{"note": "the last wins"}]


async def test_a_form_body_names_an_rpc_s_arguments(
    rpc_app: httpx.AsyncClient,  # noqa: F811
) -> None:
    response = await rpc_app.post(
        "/rest/v1/rpc/add", content=b"a=1&b=2", headers={**WRITE, "content-type": FORM}
    )
    assert response.status_code == 200, response.text
    assert response.json() == 3


async def test_a_body_of_another_content_type_is_400_pgrst102(
    books: Books,
    rpc_app: httpx.AsyncClient,  # noqa: F811
) -> None:
    """PostgREST 12 answers 400 PGRST102 "Content-Type not acceptable: <type>" (its
    error table lists 415; the server answers 400). Before, the body was read as JSON
    whatever its type."""
    response = await rpc_app.post(
        "/rest/v1/notes", content=b'{"note": "x"}', headers={**WRITE, "content-type": "text/plain"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "code": "PGRST102", "message": "Content-Type not acceptable: text/plain",
        "details": None, "hint": None,
    }  # fmt: skip
    response = await books.client.patch(
        "/rest/v1/genres?id=eq.1", content=b"<name>x</name>",
        headers={**FIXTURES_WRITE, "content-type": "application/xml; charset=utf-8"},
    )  # fmt: skip
    assert (response.status_code, response.json()["code"]) == (400, "PGRST102")
    response = await rpc_app.post(
        "/rest/v1/rpc/add", content=b'{"a": 1, "b": 2}',
        headers={**WRITE, "content-type": "text/plain"},
    )  # fmt: skip
    assert (response.status_code, response.json()["code"]) == (400, "PGRST102")
    # JSON of any spelling of its type is read, and no header is JSON.
    for kind in ("application/json; charset=utf-8", "application/vnd.pgrst.object+json", None):
        response = await rpc_app.post(
            "/rest/v1/notes", content=b'{"note": "json"}',
            headers={**WRITE, **({"content-type": kind} if kind else {})},
        )  # fmt: skip
        assert response.status_code == 201, (kind, response.text)


async def test_prefer_timezone_answers_timestamps_in_that_zone(books: Books) -> None:
    response = await books.get("events", prefer="timezone=America/Los_Angeles")
    assert response.status_code == 200, response.text
    assert response.json() == [{"id": 1, "at": "2024-01-01T04:00:00-08:00"}]
    assert response.headers["preference-applied"] == "timezone=America/Los_Angeles"
    # An unknown zone is ignored (not applied), and refused with handling=strict.
    response = await books.get("events", prefer="timezone=Mars/Olympus")
    assert response.json() == [{"id": 1, "at": "2024-01-01T12:00:00+00:00"}]
    assert "preference-applied" not in response.headers
    response = await books.get("events", prefer="handling=strict, timezone=Mars/Olympus")
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST122"
    assert response.json()["details"] == "Invalid preferences: timezone=Mars/Olympus"


async def test_computed_columns_are_selected_filtered_and_ordered(books: Books) -> None:
    rows = await books.rows("books?select=id,label&label=like.*19*&order=label.desc&limit=2")
    assert rows == [
        {"id": 2, "label": "The Dispossessed (1974)"},
        {"id": 4, "label": "Parable of the Sower (1993)"},
    ]
    # Not part of *; through an embed too.
    [book] = await books.rows("books?id=eq.1")
    assert "label" not in book
    [author] = await books.rows("authors?select=name,books!author_id(label)&id=eq.3")
    assert author == {"name": "Italo", "books": [{"label": "Invisible Cities (1972)"}]}
    response = await books.get("books?select=nope")
    assert (response.status_code, response.json()["code"]) == (400, "42703")


async def test_array_and_variadic_arguments_by_get_and_post(
    rpc_app: httpx.AsyncClient,  # noqa: F811
) -> None:
    """PostgREST's RpcSpec: a repeated query parameter is an array; a VARIADIC
    parameter takes one by name (a JSON array in a body)."""
    read = {"accept-profile": "rpc_fixtures"}
    response = await rpc_app.get("/rest/v1/rpc/joined?parts=a&parts=b&parts=c", headers=read)
    assert (response.status_code, response.json()) == (200, "a-b-c"), response.text
    # One value is the variadic array of one (it was sent as the text "hi": a 400).
    response = await rpc_app.get("/rest/v1/rpc/joined?parts=hi", headers=read)
    assert (response.status_code, response.json()) == (200, "hi"), response.text
    response = await rpc_app.get("/rest/v1/rpc/joined?parts={x,y}", headers=read)
    assert (response.status_code, response.json()) == (200, "x-y"), response.text
    response = await rpc_app.post("/rest/v1/rpc/joined", json={"parts": ["p", "q"]}, headers=WRITE)
    assert (response.status_code, response.json()) == (200, "p-q"), response.text
    response = await rpc_app.get("/rest/v1/rpc/tags_of?tags=a&tags=b&tags=c", headers=read)
    assert (response.status_code, response.json()) == (200, 3), response.text
    # One value where the function takes one: refused by PostgreSQL (400), never a 500.
    response = await rpc_app.get("/rest/v1/rpc/add?a=1&a=2&b=3", headers=read)
    assert response.status_code == 400, response.text


async def test_parameters_of_an_embed_not_selected_are_400_pgrst108(books: Books) -> None:
    """QuerySpec: a filter (or order, limit, offset) on a resource the select does not
    embed is refused; it was silently ignored."""
    response = await books.get("books?select=id&nope.title=eq.x")
    assert response.status_code == 400
    assert response.json() == {
        "code": "PGRST108",
        "message": "Cannot apply filter because 'nope' is not an embedded resource in this request",
        "details": None,
        "hint": "Verify that 'nope' is included in the 'select' query parameter.",
    }
    for query in (
        "authors?select=id,books!author_id(id)&books.nope.title=eq.x",
        "books?select=id&nope.order=id",
        "books?select=id&nope.limit=1",
        "books?select=id,writer:authors!author_id(name)&authors.name=eq.Ursula",
    ):
        response = await books.get(query)
        assert (response.status_code, response.json()["code"]) == (400, "PGRST108"), query
    rows = await books.rows(
        "authors?select=id,books!author_id(id,reviews(stars))&books.reviews.stars=eq.5&id=eq.1"
    )
    assert rows == [
        {"id": 1, "books": [{"id": 1, "reviews": [{"stars": 5}]}, {"id": 2, "reviews": []}]}
    ]


async def test_an_exact_count_is_of_the_top_rows_through_embeds(books: Books) -> None:
    """A to-many embed does not multiply the count; an ``!inner`` one filters it."""
    response = await books.get("authors?select=id,books!author_id(id)", prefer="count=exact")
    assert response.headers["content-range"] == "0-2/3"
    response = await books.get(
        "authors?select=id,books!author_id!inner(id)&books.year=gt.1975", prefer="count=exact"
    )
    assert response.headers["content-range"] == "0-0/1"
    assert response.json() == [{"id": 2, "books": [{"id": 3}, {"id": 4}, {"id": 6}]}]


async def test_json_paths_order_and_filter(books: Books) -> None:
    rows = await books.rows("authors?select=id,city:data->>city&order=data->>city.desc")
    assert [row["city"] for row in rows] == ["Sanremo", "Pasadena", "Berkeley"]
    rows = await books.rows("authors?select=id&order=data->awards->hugo.desc.nullslast")
    assert [row["id"] for row in rows] == [1, 2, 3]
    rows = await books.rows("authors?select=id&data->awards->>hugo=gt.2")
    assert rows == [{"id": 1}]
