"""What /rest/v1 answers to what it cannot serve: PostgREST's codes and statuses."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.rest.conftest import Books


@pytest.mark.parametrize(
    ("query", "position"),
    [
        ("select=id,", 4),
        ("select=books(id", 9),
        ("select=id::", 5),
        ("select=...id", 6),
        ("id=gtx.1", 1),
        ("id=in.(1,2", 8),
        ("nickname=is.maybe", 4),
        ("or=(id.eq.1", 9),
        ("or=(id.eqq.1)", 5),
        ("order=id.sideways", 4),
        ("limit=ten", 1),
    ],
)
async def test_malformed_parameters_are_400_pgrst100_naming_the_position(
    books: Books, query: str, position: int
) -> None:
    response = await books.get(f"authors?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "PGRST100"
    assert body["message"].startswith("failed to parse")
    assert f"at position {position}," in body["details"]


async def test_unknown_column_is_400_42703(books: Books) -> None:
    for query in ("select=nope", "nope=eq.1", "order=nope", "or=(nope.eq.1)"):
        response = await books.get(f"authors?{query}")
        assert response.status_code == 400
        assert response.json() == {
            "code": "42703", "message": "column authors.nope does not exist",
            "details": None, "hint": None,
        }  # fmt: skip


async def test_unknown_relation_is_404_pgrst205_with_a_hint(books: Books) -> None:
    response = await books.get("author")
    assert response.status_code == 404
    assert response.json() == {
        "code": "PGRST205",
        "message": "Could not find the table 'rest_fixtures.author' in the schema cache",
        "details": None,
        "hint": "Perhaps you meant the table 'rest_fixtures.authors'",
    }


async def test_a_value_of_the_wrong_type_is_postgresql_s_400(books: Books) -> None:
    response = await books.get("authors?id=eq.one")
    assert response.status_code == 400
    assert response.json()["code"] == "22P02"


async def test_a_column_the_role_may_not_read_is_refused_by_postgresql(books: Books) -> None:
    response = await books.get("secrets?select=id")
    assert response.status_code == 200
    for query in ("select=secret", "secret=eq.hidden", "select=id&order=secret"):
        response = await books.get(f"secrets?{query}")
        assert response.status_code == 401, query  # anonymous: 401, as PostgREST
        assert response.json()["code"] == "42501"


async def test_an_unexposed_schema_is_406_pgrst106(books: Books) -> None:
    response = await books.client.get("/rest/v1/users", headers={"accept-profile": "auth"})
    assert response.status_code == 406
    assert response.json() == {
        "code": "PGRST106", "message": "Invalid schema: auth", "details": None,
        "hint": "Only the following schemas are exposed: public, rest_fixtures",
    }  # fmt: skip


async def test_public_is_the_default_profile(books: Books) -> None:
    response = await books.client.get("/rest/v1/authors")
    assert response.status_code == 404  # authors is in rest_fixtures, not public
    response = await books.client.get("/rest/v1/authors", headers={"accept-profile": "public"})
    assert response.status_code == 404


async def test_a_bad_token_is_401_and_a_bad_path_404(books: Books) -> None:
    response = await books.client.get("/rest/v1/books", headers={"authorization": "Bearer x.y.z"})
    assert response.status_code == 401
    assert response.json()["code"] == "PGRST301"
    response = await books.client.get("/rest/v1/a/b/c")
    assert (response.status_code, response.json()["code"]) == (404, "PGRST125")


async def test_an_unsupported_method_is_405(books: Books) -> None:
    response = await books.client.request("TRACE", "/rest/v1/books")
    assert response.status_code == 405


async def test_deep_nesting_is_refused_not_a_recursion_error(books: Books) -> None:
    for query in (
        "or=(" + "and(" * 1600 + "id.eq.1" + ")" * 1601,
        "select=" + "books(" * 1400 + "id" + ")" * 1400,
    ):
        response = await books.get(f"authors?{query}")
        assert response.status_code == 400, response.text
        assert "nested more than 16 levels" in response.json()["details"]


async def test_unknown_preferences_are_refused_only_when_strict(books: Books) -> None:
    response = await books.get("books?select=id", prefer="handling=strict, count=exact, foo")
    assert response.status_code == 400
    assert response.json() == {
        "code": "PGRST122", "message": "Invalid preferences given with handling=strict",
        "details": "Invalid preferences: foo", "hint": None,
    }  # fmt: skip
    lenient = "tx=rollback, foo, count=exact, handling=lenient"
    response = await books.get("books?select=id&limit=1", prefer=lenient)
    assert response.status_code == 206
    assert response.headers["preference-applied"] == "count=exact, tx=rollback, handling=lenient"


async def test_aggregates_are_not_allowed(books: Books) -> None:
    response = await books.get("books?select=count()")
    assert (response.status_code, response.json()["code"]) == (400, "PGRST123")


async def test_options_answers_the_allowed_methods(books: Books) -> None:
    response = await books.client.options("/rest/v1/books",
                                          headers={"accept-profile": "rest_fixtures"})  # fmt: skip
    assert (response.status_code, response.headers["allow"]) == (
        200, "OPTIONS,GET,HEAD,POST,PUT,PATCH,DELETE"
    )  # fmt: skip
    response = await books.client.options("/rest/v1/recent_books",
                                          headers={"accept-profile": "rest_fixtures"})  # fmt: skip
    assert response.headers["allow"] == "OPTIONS,GET,HEAD"


async def test_a_json_path_key_or_a_cast_can_never_become_sql(books: Books) -> None:
    # A key of dashes and digits once went into the statement as it was: "--1" opened a
    # comment, and a quoted alias holding a newline closed it, so the text after it ran.
    attack = quote('data->--1,"\nSELECT 1 --":id')
    response = await books.get(f"authors?select={attack}")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "PGRST100"
    response = await books.get("authors?select=id,odd:data->--1,last:data->-1&order=id")
    assert response.status_code == 200, response.text
    assert all(row["odd"] is None for row in response.json())  # "--1" is a key, not SQL
    for cast in ("id::uuid FROM authors", "id::text;drop", "id::int)", "id::text--"):
        response = await books.get(f"authors?select={quote(cast)}")
        assert response.status_code == 400, (cast, response.text)
        assert response.json()["code"] == "PGRST100"
    casts = await books.rows(
        "authors?select="
        + quote("id::double precision,born::timestamp with time zone,tags::text[]")
        + "&order=id&limit=1"
    )
    assert casts[0]["id"] == 1
    assert casts[0]["born"] is None or "T" in casts[0]["born"]  # now a timestamp


@pytest.mark.parametrize("query", ["limit=²", "offset=٣x", "select=id&limit=¹"])
async def test_digits_that_are_not_ascii_are_400_not_500(books: Books, query: str) -> None:
    response = await books.get(f"authors?{query}")
    assert response.status_code == 400, response.text


async def test_max_affected_in_digits_that_are_not_ascii_is_refused(books: Books) -> None:
    response = await books.client.get(
        "/rest/v1/authors",
        headers={
            **books.headers,
            "accept-profile": "rest_fixtures",
            "prefer": "handling=strict, max-affected=²".encode("latin-1"),
        },
    )
    assert response.status_code == 400, response.text


async def test_numbers_of_thousands_of_digits_are_refused_or_ignored_never_a_500(
    books: Books,
) -> None:
    huge = "9" * 5000
    for query in (f"limit={huge}", f"offset={huge}"):
        response = await books.get(f"authors?{query}")
        assert response.status_code == 400, response.text
    ranged = await books.get("authors?order=id", range=f"0-{huge}")
    assert ranged.status_code in (200, 206), ranged.text  # unreadable: ignored, as PostgREST
    preferred = await books.get("authors", prefer=f"handling=strict, max-affected={huge}")
    assert preferred.status_code == 400, preferred.text
