"""POST, PATCH and DELETE on /rest/v1/<table>: PostgREST's semantics (representations,
Location, upserts, columns=, missing=default, singular answers rolled back) and its
error mapping, as a company's member."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany

REPRESENTATION = {"Prefer": "return=representation"}


@pytest.fixture
def member(auth: AuthHeaders, tenant: SeededCompany) -> dict[str, str]:
    return auth(tenant.member)


def contact(tenant: SeededCompany, **values: Any) -> dict[str, Any]:
    return {"company_id": str(tenant.company_id), "email": f"{uuid.uuid4().hex[:8]}@x.io", **values}


async def test_insert_one_row_answers_its_representation_with_select(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    row = contact(tenant, first_name="Bea", tags=["new"], metadata={"a": {"b": 1}})
    response = await rest_app.post(
        "/rest/v1/contacts?select=id,first_name,tags,metadata,email",
        json=row,
        headers={**member, **REPRESENTATION},
    )
    assert response.status_code == 201, response.text
    [created] = response.json()
    assert created["first_name"] == "Bea"
    assert created["tags"] == ["new"]
    assert created["metadata"] == {"a": {"b": 1}}
    assert set(created) == {"id", "first_name", "tags", "metadata", "email"}
    assert response.headers["preference-applied"] == "return=representation"
    assert response.headers["content-range"] == "*/*"


async def test_insert_many_rows_minimal_answers_201_without_a_body(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    rows = [contact(tenant, first_name=f"Many {i}") for i in range(3)]
    response = await rest_app.post(
        "/rest/v1/contacts", json=rows, headers={**member, "Prefer": "return=minimal,count=exact"}
    )
    assert response.status_code == 201, response.text
    assert response.content == b""
    assert response.headers["content-range"] == "*/3"
    listed = await rest_app.get(
        "/rest/v1/contacts?first_name=like.Many*&select=first_name", headers=member
    )
    assert sorted(r["first_name"] for r in listed.json()) == ["Many 0", "Many 1", "Many 2"]


async def test_headers_only_answers_the_location_of_the_new_row(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    response = await rest_app.post(
        "/rest/v1/contacts",
        json=contact(tenant),
        headers={**member, "Prefer": "return=headers-only"},
    )
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith("/contacts?")
    assert f"company_id=eq.{tenant.company_id}" in location  # the key is (company_id, id)
    found = await rest_app.get(f"/rest/v1{location}", headers=member)
    assert len(found.json()) == 1


async def test_columns_with_missing_default_fill_defaults_where_null_would_fail(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    rows = [contact(tenant, tags=["x"]), contact(tenant)]
    path = "/rest/v1/contacts?columns=company_id,email,tags&select=tags"
    nulls = await rest_app.post(path, json=rows, headers={**member, **REPRESENTATION})
    assert nulls.status_code == 400, nulls.text  # tags NOT NULL: the second row has none
    assert nulls.json()["code"] == "23502"
    prefer = {"Prefer": "return=representation, missing=default"}
    filled = await rest_app.post(path, json=rows, headers={**member, **prefer})
    assert filled.status_code == 201, filled.text
    assert filled.json() == [{"tags": ["x"]}, {"tags": []}]
    assert "missing=default" in filled.headers["preference-applied"]


async def test_unknown_columns_are_pgrst204(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    body = contact(tenant, nickname="x")
    response = await rest_app.post("/rest/v1/contacts", json=body, headers=member)
    assert response.status_code == 400
    assert response.json()["code"] == "PGRST204"
    assert "'nickname' column of 'contacts'" in response.json()["message"]
    by_columns = await rest_app.post(
        "/rest/v1/contacts?columns=email,nope", json=body, headers=member
    )
    assert by_columns.json()["code"] == "PGRST204"


@pytest.mark.parametrize(
    "body", ["", "{", "[1, 2]", '"text"', '[{"email": "a@b.c"}, {"phone": "1"}]']
)
async def test_bad_bodies_are_400(
    rest_app: httpx.AsyncClient, member: dict[str, str], body: str
) -> None:
    response = await rest_app.post(
        "/rest/v1/contacts", content=body, headers={**member, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "PGRST102"


async def test_a_hostile_body_is_stopped_by_the_json_guard(
    rest_app: httpx.AsyncClient, member: dict[str, str]
) -> None:
    deep = "[" * 200 + "]" * 200
    response = await rest_app.post(
        "/rest/v1/contacts", content=deep, headers={**member, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    lone = b'{"email": "\\ud800"}'
    response = await rest_app.post(
        "/rest/v1/contacts", content=lone, headers={**member, "Content-Type": "application/json"}
    )
    assert response.status_code == 422


async def test_upserts_merge_or_ignore_duplicates(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, auth: AuthHeaders
) -> None:
    service = auth(Principal.service())
    contact_id = str(tenant.rows["contacts"])
    merge = {"Prefer": "return=representation,resolution=merge-duplicates"}
    body = [
        {"id": contact_id, "company_id": str(tenant.company_id), "first_name": "Merged"},
        {"id": str(uuid.uuid4()), "company_id": str(tenant.company_id), "first_name": "New"},
    ]
    merged = await rest_app.post(
        "/rest/v1/contacts?select=first_name", json=body, headers={**service, **merge}
    )
    assert merged.status_code == 201, merged.text
    assert merged.json() == [{"first_name": "Merged"}, {"first_name": "New"}]
    assert "resolution=merge-duplicates" in merged.headers["preference-applied"]
    ignore = {"Prefer": "return=representation,resolution=ignore-duplicates"}
    body[0]["first_name"] = "Ignored"
    ignored = await rest_app.post(
        "/rest/v1/contacts?on_conflict=company_id,id&select=first_name",
        json=body[:1],
        headers={**service, **ignore},
    )
    assert ignored.status_code == 201, ignored.text
    assert ignored.json() == []
    again = await rest_app.get(
        f"/rest/v1/contacts?id=eq.{contact_id}&select=first_name", headers=service
    )
    assert again.json() == [{"first_name": "Merged"}]


async def test_an_owner_ignores_a_duplicate_invitation_on_its_unique_key(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, auth: AuthHeaders
) -> None:
    owner = auth(tenant.owner)
    invitation = {
        "company_id": str(tenant.company_id),
        "email": "twice@example.com",
        "role": "user",
        "invited_by": str(tenant.owner.user_id),
    }
    path = "/rest/v1/invitations?on_conflict=company_id,email&select=email,role"
    prefer = {"Prefer": "return=representation,resolution=ignore-duplicates"}
    first = await rest_app.post(path, json=invitation, headers={**owner, **prefer})
    assert first.status_code == 201, first.text
    assert first.json() == [{"email": "twice@example.com", "role": "user"}]
    second = await rest_app.post(
        path, json={**invitation, "role": "admin"}, headers={**owner, **prefer}
    )
    assert second.status_code == 201, second.text
    assert second.json() == []
    duplicate = await rest_app.post("/rest/v1/invitations", json=invitation, headers=owner)
    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json()["code"] == "23505"


async def test_a_member_cannot_choose_a_primary_key_and_a_missing_reference_is_409(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    body = contact(tenant, id=str(uuid.uuid4()))
    chosen = await rest_app.post("/rest/v1/contacts", json=body, headers=member)
    assert chosen.status_code == 403, chosen.text  # ids are the database's (column grants)
    assert chosen.json()["code"] == "42501"
    deal = {"company_id": str(tenant.company_id), "title": "T", "contact_id": str(uuid.uuid4())}
    dangling = await rest_app.post("/rest/v1/deals", json=deal, headers=member)
    assert dangling.status_code == 409, dangling.text
    assert dangling.json()["code"] == "23503"


async def test_the_anonymous_role_cannot_write(
    rest_app: httpx.AsyncClient, tenant: SeededCompany
) -> None:
    response = await rest_app.post("/rest/v1/contacts", json=contact(tenant))
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "42501"


async def test_patch_changes_the_filtered_rows_and_answers_them(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    contact_id = tenant.rows["contacts"]
    response = await rest_app.patch(
        f"/rest/v1/contacts?id=eq.{contact_id}&select=id,last_name",
        json={"last_name": "Patched", "metadata": {"k": [1, 2]}},
        headers={**member, **REPRESENTATION},
    )
    assert response.status_code == 200, response.text
    assert response.json() == [{"id": str(contact_id), "last_name": "Patched"}]
    assert response.headers["content-range"] == "0-0/*"
    minimal = await rest_app.patch(
        f"/rest/v1/contacts?id=eq.{uuid.uuid4()}", json={"last_name": "Nobody"}, headers=member
    )
    assert minimal.status_code == 204
    assert minimal.headers["content-range"] == "*/*"


async def test_delete_removes_the_filtered_rows_and_answers_them(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    rows = [contact(tenant, first_name="Gone") for _ in range(3)]
    await rest_app.post("/rest/v1/contacts", json=rows, headers=member)
    one = await rest_app.delete(
        "/rest/v1/contacts?first_name=eq.Gone&order=email&limit=1&select=email",
        headers={**member, **REPRESENTATION},
    )
    assert one.status_code == 200, one.text
    assert one.json() == [{"email": min(r["email"] for r in rows)}]
    rest = await rest_app.delete(
        "/rest/v1/contacts?first_name=eq.Gone", headers={**member, "Prefer": "count=exact"}
    )
    assert rest.status_code == 204
    assert rest.headers["content-range"] == "0-1/2"


async def test_an_insert_answers_embeds_of_the_new_rows(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    deal = {
        "company_id": str(tenant.company_id),
        "title": "Embedded",
        "contact_id": str(tenant.rows["contacts"]),
        "value": 10.5,
    }
    response = await rest_app.post(
        "/rest/v1/deals?select=title,value,contacts(email)",
        json=deal,
        headers={**member, **REPRESENTATION},
    )
    assert response.status_code == 201, response.text
    assert response.json() == [
        {"title": "Embedded", "value": 10.5, "contacts": {"email": "ann@example.com"}}
    ]


async def test_a_singular_write_of_several_rows_is_406_and_rolled_back(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    rows = [contact(tenant, first_name="Twin") for _ in range(2)]
    await rest_app.post("/rest/v1/contacts", json=rows, headers=member)
    singular = {**member, **REPRESENTATION, "Accept": "application/vnd.pgrst.object+json"}
    response = await rest_app.patch(
        "/rest/v1/contacts?first_name=eq.Twin", json={"last_name": "Changed"}, headers=singular
    )
    assert response.status_code == 406, response.text
    assert response.json()["code"] == "PGRST116"
    assert response.json()["details"] == "The result contains 2 rows"
    kept = await rest_app.get(
        "/rest/v1/contacts?first_name=eq.Twin&select=last_name", headers=member
    )
    assert kept.json() == [{"last_name": None}, {"last_name": None}]
    one = await rest_app.post(
        "/rest/v1/contacts?select=first_name",
        json=contact(tenant, first_name="Single"),
        headers=singular,
    )
    assert one.status_code == 201, one.text
    assert one.json() == {"first_name": "Single"}


async def test_tx_rollback_leaves_nothing(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    prefer = {"Prefer": "return=representation, tx=rollback"}
    response = await rest_app.post(
        "/rest/v1/contacts", json=contact(tenant, first_name="Ghost"), headers={**member, **prefer}
    )
    assert response.status_code == 201, response.text
    found = await rest_app.get("/rest/v1/contacts?first_name=eq.Ghost", headers=member)
    assert found.json() == []


async def test_the_service_role_writes_any_company(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, auth: AuthHeaders
) -> None:
    service = auth(Principal.service())
    response = await rest_app.post(
        "/rest/v1/contacts?select=company_id",
        json=contact(tenant),
        headers={**service, **REPRESENTATION},
    )
    assert response.status_code == 201, response.text
    assert response.json() == [{"company_id": str(tenant.company_id)}]


async def test_a_patch_filters_its_rows_and_its_representation_s_embeds_apart(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    deal_id = tenant.rows["deals"]
    path = (
        f"/rest/v1/deals?id=eq.{deal_id}&select=title,contacts(email)"
        "&contacts.email=eq.nobody@example.com"
    )
    response = await rest_app.patch(
        path, json={"title": "Both filters"}, headers={**member, **REPRESENTATION}
    )
    assert response.status_code == 200, response.text
    assert response.json() == [{"title": "Both filters", "contacts": None}]


async def test_a_statement_kept_for_a_shape_takes_each_request_s_own_values(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    names = []
    for name in ("First", "Second"):
        created = await rest_app.post(
            "/rest/v1/contacts?select=id,first_name,deals(title)&deals.title=eq.none",
            json=contact(tenant, first_name=name),
            headers={**member, **REPRESENTATION},
        )
        assert created.json()[0]["first_name"] == name, created.text
        names.append(created.json()[0]["id"])
    for contact_id, name in zip(names, ("One", "Two"), strict=True):
        patched = await rest_app.patch(
            f"/rest/v1/contacts?id=eq.{contact_id}&limit=1&order=id",
            json={"last_name": name},
            headers={**member, **REPRESENTATION},
        )
        assert [(row["id"], row["last_name"]) for row in patched.json()] == [(contact_id, name)]
    for contact_id in names:
        deleted = await rest_app.delete(
            f"/rest/v1/contacts?id=eq.{contact_id}&select=id", headers={**member, **REPRESENTATION}
        )
        assert deleted.json() == [{"id": contact_id}]


async def test_put_creates_then_replaces_the_row_its_primary_key_names(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, auth: AuthHeaders
) -> None:
    service = {**auth(Principal.service()), **REPRESENTATION}
    contact_id, company_id = str(uuid.uuid4()), str(tenant.company_id)
    path = f"/rest/v1/contacts?company_id=eq.{company_id}&id=eq.{contact_id}&select=first_name"
    body = {"id": contact_id, "company_id": company_id, "first_name": "Put"}
    created = await rest_app.put(path, json=body, headers=service)
    assert created.status_code == 200, created.text
    assert created.json() == [{"first_name": "Put"}]
    replaced = await rest_app.put(path, json={**body, "first_name": "Again"}, headers=service)
    assert replaced.json() == [{"first_name": "Again"}]
    mismatch = await rest_app.put(path, json={**body, "id": str(uuid.uuid4())}, headers=service)
    assert mismatch.status_code == 400
    assert mismatch.json()["code"] == "PGRST115"
    partial = await rest_app.put(
        f"/rest/v1/contacts?id=eq.{contact_id}", json=body, headers=service
    )
    assert partial.status_code == 405
    assert partial.json()["code"] == "PGRST105"


async def test_a_csv_body_inserts_its_rows(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    company = tenant.company_id
    body = f'company_id,email,first_name\n{company},c1@x.io,"Csv, One"\n{company},c2@x.io,NULL\n'
    headers = {**member, **REPRESENTATION, "Content-Type": "text/csv"}
    response = await rest_app.post(
        "/rest/v1/contacts?select=email,first_name", content=body, headers=headers
    )
    assert response.status_code == 201, response.text
    assert response.json() == [
        {"email": "c1@x.io", "first_name": "Csv, One"},
        {"email": "c2@x.io", "first_name": None},
    ]
    ragged = await rest_app.post("/rest/v1/contacts", content="email\na,b\n", headers=headers)
    assert ragged.status_code == 400
    assert ragged.json()["code"] == "PGRST102"


async def test_max_affected_with_strict_handling_refuses_and_rolls_back_more_rows(
    rest_app: httpx.AsyncClient, tenant: SeededCompany, member: dict[str, str]
) -> None:
    await rest_app.post(
        "/rest/v1/contacts", json=[contact(tenant, first_name="Capped") for _ in range(3)],
        headers=member,
    )  # fmt: skip
    strict = {**member, "Prefer": "handling=strict, max-affected=2"}
    refused = await rest_app.delete("/rest/v1/contacts?first_name=eq.Capped", headers=strict)
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "PGRST124"
    assert refused.json()["details"] == "The query affects 3 rows"
    kept = await rest_app.get("/rest/v1/contacts?first_name=eq.Capped", headers=member)
    assert len(kept.json()) == 3
    lenient = {**member, "Prefer": "max-affected=2"}  # without handling=strict: ignored
    done = await rest_app.delete("/rest/v1/contacts?first_name=eq.Capped", headers=lenient)
    assert done.status_code == 204
