"""GET /rest/v1/<relation>: every operator, select, embeds, order, ranges and counts,
over the fixtures' books and authors (PostgREST's documentation's cases)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import SeededCompany
from tests.rest.conftest import Books


async def test_a_member_reads_their_contact_by_id(rest_as: Any, tenant_a: SeededCompany) -> None:
    rest = rest_as(tenant_a.member)
    contact_id = tenant_a.rows["contacts"]
    rows = await rest.rows(f"contacts?id=eq.{contact_id}")
    assert [row["id"] for row in rows] == [str(contact_id)]
    assert rows[0]["first_name"] == "Ann"


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("id=eq.2", [2]),
        ("id=neq.2", [1, 3]),
        ("id=gt.1", [2, 3]),
        ("id=gte.2", [2, 3]),
        ("id=lt.2", [1]),
        ("id=lte.2", [1, 2]),
        ("name=like.*tav*", [2]),
        ("name=ilike.URS*", [1]),
        ("name=match.^I", [3]),
        ("name=imatch.^i", [3]),
        ("nickname=is.null", [1, 3]),
        ("nickname=not.is.null", [2]),
        ("nickname=is.not_null", [2]),
        ("nickname=isdistinct.O.", [1, 3]),
        ("id=in.(1,3)", [1, 3]),
        ('name=in.("Ursula",Italo)', [1, 3]),
        ("id=in.()", []),
        ("id=not.in.(1,3)", [2]),
        ("tags=cs.{sf}", [1, 2]),
        ("tags=cd.{sf,fantasy}", [1, 2]),
        ("tags=ov.{fable,fantasy}", [1, 3]),
        ("span=ov.[8,12)", [1, 2]),
        ("span=sl.[25,26)", [1, 2]),
        ("span=sr.[3,4)", [2, 3]),
        ("span=adj.[40,50)", [3]),
        ("tsv=fts.wizard", [1]),
        ("tsv=fts(english).cities", [3]),
        ("tsv=plfts.parable sower", [2]),
        ("tsv=phfts(english).winter nights", [3]),
        ("tsv=wfts.wizard or sower", [1, 2]),
        ("tsv=not.fts.wizard", [2, 3]),
        ("data->>city=eq.Pasadena", [2]),
        ("data->awards->>hugo=eq.5", [1]),
        ('data->awards=cs.{"hugo":2}', [2]),
        ("name=eq(any).{Ursula,Italo}", [1, 3]),
        ("name=like(all).{*r*,*s*}", [1]),
        ("score=gt.9&score=lt.9.4", [2]),
        ("born=lt.1930-01-01", [1, 3]),
        ("or=(id.eq.1,id.eq.3)", [1, 3]),
        ("or=(id.eq.1,and(id.gt.2,name.eq.Italo))", [1, 3]),
        ("and=(id.gt.1,or(name.eq.Octavia,name.eq.Italo))&id=lt.3", [2]),
        ("not.or=(id.eq.1,id.eq.3)", [2]),
        ('or=(name.eq."Ursula",nickname.is.not_null)', [1, 2]),
        ("or=(id.in.(1,2),name.like.It*)", [1, 2, 3]),
        ("or=(tags.cs.{fable},data->>city.eq.Berkeley)", [1, 3]),
    ],
)
async def test_filters(books: Books, query: str, ids: list[int]) -> None:
    rows = await books.rows(f"authors?select=id&{query}&order=id")
    assert [row["id"] for row in rows] == ids


async def test_select_with_aliases_casts_and_json_paths(books: Books) -> None:
    rows = await books.rows(
        "authors?select=who:name,id::text,city:data->>city,data->awards->hugo,born::text&id=eq.1"
    )
    assert rows == [
        {"who": "Ursula", "id": "1", "city": "Berkeley", "hugo": 5, "born": "1929-10-21"}
    ]


async def test_star_and_every_column(books: Books) -> None:
    rows = await books.rows("books?id=eq.1")
    assert rows == [
        {"id": 1, "title": "A Wizard of Earthsea", "year": 1968, "author_id": 1, "editor_id": 2}
    ]


async def test_embeds_many_to_one_and_one_to_many(books: Books) -> None:
    rows = await books.rows("books?select=title,author:authors!author_id(name),"
                            "reviews(stars)&id=eq.1&reviews.order=stars.desc")  # fmt: skip
    assert rows == [
        {"title": "A Wizard of Earthsea", "author": {"name": "Ursula"},
         "reviews": [{"stars": 5}, {"stars": 4}]}
    ]  # fmt: skip


async def test_embed_by_foreign_key_column_and_nested_embeds(books: Books) -> None:
    rows = await books.rows("authors?select=name,books!author_id(title,reviews(stars))&id=eq.3")
    assert rows == [{"name": "Italo", "books": [{"title": "Invisible Cities",
                                                 "reviews": [{"stars": 3}]}]}]  # fmt: skip
    rows = await books.rows("books?select=title,editor_id(name)&id=eq.6")
    assert rows == [{"title": "Lilith's Brood", "editor_id": {"name": "Italo"}}]


async def test_filters_order_and_limits_on_embeds(books: Books) -> None:
    rows = await books.rows(
        "authors?select=name,books!author_id(title,year)&order=id"
        "&books.year=gte.1974&books.order=year.desc&books.limit=1"
    )
    assert rows == [
        {"name": "Ursula", "books": [{"title": "The Dispossessed", "year": 1974}]},
        {"name": "Octavia", "books": [{"title": "Lilith's Brood", "year": 2000}]},
        {"name": "Italo", "books": []},
    ]
    rows = await books.rows(
        "authors?select=id,books!author_id(id)&order=id&books.or=(id.eq.1,id.eq.6)&books.offset=0"
    )
    assert rows == [{"id": 1, "books": [{"id": 1}]}, {"id": 2, "books": [{"id": 6}]},
                    {"id": 3, "books": []}]  # fmt: skip


async def test_inner_embeds_and_null_filters_on_embeds(books: Books) -> None:
    rows = await books.rows("authors?select=id,books!author_id!inner(id)&books.year=lt.1970")
    assert rows == [{"id": 1, "books": [{"id": 1}]}]
    rows = await books.rows("books?select=id,editor:authors!editor_id(name)&editor=not.is.null"
                            "&order=id")  # fmt: skip
    assert [row["id"] for row in rows] == [1, 3, 6]
    rows = await books.rows("books?select=id,editor:authors!editor_id(id)&editor=is.null&order=id")
    assert [row["id"] for row in rows] == [2, 4, 5]


async def test_spread_of_a_to_one_embed(books: Books) -> None:
    rows = await books.rows("books?select=title,...authors!author_id(author:name)&id=eq.3")
    assert rows == [{"title": "Kindred", "author": "Octavia"}]


async def test_ambiguous_embed_is_300_with_the_candidates(books: Books) -> None:
    response = await books.get("books?select=*,authors(*)")
    assert response.status_code == 300
    body = response.json()
    assert body["code"] == "PGRST201"
    assert {d["relationship"].split(" ")[0] for d in body["details"]} == {
        "books_author_id_fkey", "books_editor_id_fkey"
    }  # fmt: skip
    assert "authors!books_author_id_fkey" in body["hint"]


async def test_no_relationship_is_400_pgrst200(books: Books) -> None:
    response = await books.get("reviews?select=*,authors(*)")
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST200"


@pytest.mark.parametrize(
    ("order", "ids"),
    [
        ("nickname.desc.nullslast,id", [2, 1, 3]),
        ("nickname.asc.nullsfirst,id.desc", [3, 1, 2]),
        ("data->>city", [1, 2, 3]),
        ("score.desc", [1, 2, 3]),
        ("born", [3, 1, 2]),
    ],
)
async def test_order(books: Books, order: str, ids: list[int]) -> None:
    rows = await books.rows(f"authors?select=id&order={order}")
    assert [row["id"] for row in rows] == ids


async def test_limit_offset_and_range_headers(books: Books) -> None:
    response = await books.get("books?select=id&order=id&limit=2&offset=1")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()] == [2, 3]
    assert response.headers["content-range"] == "1-2/*"
    response = await books.get("books?select=id&order=id", range="2-3", range_unit="items")
    assert [r["id"] for r in response.json()] == [3, 4]
    assert response.headers["content-range"] == "2-3/*"


async def test_exact_count_in_content_range_and_206(books: Books) -> None:
    response = await books.get("books?select=id&order=id&limit=2", prefer="count=exact")
    assert response.status_code == 206
    assert response.headers["content-range"] == "0-1/6"
    response = await books.get("books?select=id", prefer="count=exact")
    assert response.status_code == 200
    assert response.headers["content-range"] == "0-5/6"
    response = await books.get("books?id=gt.100", prefer="count=exact")
    assert (response.status_code, response.json()) == (200, [])
    assert response.headers["content-range"] == "*/0"


async def test_planned_and_estimated_counts_answer_a_number(books: Books) -> None:
    for kind in ("planned", "estimated"):
        response = await books.get("books?select=id&limit=1", prefer=f"count={kind}")
        total = response.headers["content-range"].split("/")[1]
        assert total.isdigit(), response.headers


async def test_offset_beyond_the_count_is_416(books: Books) -> None:
    response = await books.get("books?offset=10", prefer="count=exact")
    assert response.status_code == 416
    assert response.json() == {
        "code": "PGRST103", "message": "Requested range not satisfiable",
        "details": "An offset of 10 was requested, but there are only 6 rows.", "hint": None,
    }  # fmt: skip
    response = await books.get("books", range="5-2")
    assert response.status_code == 416
    response = await books.get("books?limit=-1")
    assert response.status_code == 416


async def test_max_rows_bounds_every_page(books: Books, rest_app: Any) -> None:
    rest = rest_app._transport.app.state.rest
    before = rest.settings
    rest.settings = before.model_copy(update={"rest_max_rows": 2})
    try:
        response = await books.get("books?select=id&order=id", prefer="count=exact")
    finally:
        rest.settings = before
    assert [r["id"] for r in response.json()] == [1, 2]
    assert (response.status_code, response.headers["content-range"]) == (206, "0-1/6")


async def test_head_answers_the_headers_without_a_body(books: Books) -> None:
    response = await books.client.head(
        "/rest/v1/books", headers={"accept-profile": "rest_fixtures", "prefer": "count=exact"}
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-range"] == "0-5/6"


async def test_singular_object_and_pgrst116(books: Books) -> None:
    accept = "application/vnd.pgrst.object+json"
    response = await books.get("books?select=id,title&id=eq.3", accept=accept)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(accept)
    assert response.json() == {"id": 3, "title": "Kindred"}
    for query, rows in (("id=gt.100", 0), ("id=lt.3", 2)):
        response = await books.get(f"books?{query}", accept=accept)
        assert response.status_code == 406
        assert response.json() == {
            "code": "PGRST116",
            "message": "JSON object requested, multiple (or no) rows returned",
            "details": f"The result contains {rows} rows",
            "hint": None,
        }


async def test_csv(books: Books) -> None:
    response = await books.get("authors?select=id,name,nickname&order=id", accept="text/csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text == "id,name,nickname\n1,Ursula,\n2,Octavia,O.\n3,Italo,"


async def test_a_media_type_that_cannot_be_produced_is_406(books: Books) -> None:
    response = await books.get("books", accept="application/xml")
    assert response.status_code == 406
    assert response.json()["code"] == "PGRST107"


async def test_views_are_served(books: Books) -> None:
    rows = await books.rows("recent_books?select=title&order=id")
    assert rows == [{"title": "Lilith's Brood"}]


async def test_a_statement_cached_for_a_shape_takes_each_request_s_values(books: Books) -> None:
    shape = ("authors?select=id,books!author_id(id)&or=(id.eq.{a},name.like.{b}*)"
             "&books.limit={n}&books.order=id&order=id&offset={o}")  # fmt: skip
    first = await books.rows(shape.format(a=1, b="Oct", n=1, o=0))
    second = await books.rows(shape.format(a=3, b="Urs", n=2, o=1))
    assert first == [{"id": 1, "books": [{"id": 1}]}, {"id": 2, "books": [{"id": 3}]}]
    assert second == [{"id": 3, "books": [{"id": 5}]}]


async def test_a_read_is_two_statements_in_one_round_trip(
    rest_as: Any, tenant_a: SeededCompany, statements: list[str]
) -> None:
    """The role with the claims, the request's settings and READ ONLY, then the read: sent
    in one pipeline whose Sync ends the transaction (db.postgres.run_as: no BEGIN or
    COMMIT), no membership read."""
    rest = rest_as(tenant_a.member)
    await rest.rows(f"contacts?id=eq.{tenant_a.rows['contacts']}")
    assert len(statements) == 2, statements
    assert statements[0].startswith("SELECT set_config('role'")
    assert statements[1].startswith("WITH pgrst_source AS")


async def test_views_embed_along_their_tables_keys(books: Books) -> None:
    """recent_books shows books' id: reviews' key to books reaches it (view lineage)."""
    rows = await books.rows("recent_books?select=title,reviews(stars)")
    assert rows == [{"title": "Lilith's Brood", "reviews": []}]
    rows = await books.rows("reviews?select=stars,recent_books(title)&order=id")
    assert [row["recent_books"] for row in rows] == [None, None, None, None]
    rows = await books.rows("reviews?select=stars,book_id(title)&id=eq.1")
    assert rows == [{"stars": 5, "book_id": {"title": "A Wizard of Earthsea"}}]


async def test_public_s_views_keep_embeds_by_column_unambiguous(
    rest_as: Any, tenant_a: SeededCompany
) -> None:
    rows = await rest_as(tenant_a.member).rows("deals?select=title,contact_id(first_name)")
    assert rows == [{"title": "Renewal", "contact_id": {"first_name": "Ann"}}]


async def test_order_by_a_column_of_a_to_one_embed(books: Books) -> None:
    rows = await books.rows(
        "books?select=id,author:authors!author_id(name)&order=author(name).desc,id"
    )
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 6, 5]
    response = await books.get("authors?select=id,books!author_id(id)&order=books(id)")
    assert (response.status_code, response.json()["code"]) == (400, "PGRST118")
    response = await books.get("books?select=id&order=authors(name)")
    assert (response.status_code, response.json()["code"]) == (400, "PGRST108")


async def test_many_to_many_embeds_through_a_junction_table(books: Books) -> None:
    rows = await books.rows("books?select=id,genres(name)&id=in.(1,3,4)&order=id"
                            "&genres.order=name")  # fmt: skip
    assert rows == [
        {"id": 1, "genres": [{"name": "fantasy"}]},
        {"id": 3, "genres": [{"name": "fantasy"}, {"name": "science fiction"}]},
        {"id": 4, "genres": []},
    ]
    rows = await books.rows("genres?select=name,books!book_genres!inner(id)&books.id=gt.2"
                            "&order=id")  # fmt: skip
    assert rows == [{"name": "science fiction", "books": [{"id": 3}]},
                    {"name": "fantasy", "books": [{"id": 3}]},
                    {"name": "fable", "books": [{"id": 5}]}]  # fmt: skip
