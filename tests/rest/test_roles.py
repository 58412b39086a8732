"""Who is asking: each request runs as its token's role (any role the API's login may
become), with its claims; without a token as the anonymous role."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.factories import SeededCompany
from tests.rest.conftest import Books


def token(role: str, **claims: Any) -> dict[str, str]:
    signed = jwt.encode(
        {"role": role, "exp": int(time.time()) + 600, **claims}, TEST_JWT_SECRET, algorithm="HS256"
    )
    return {"authorization": f"Bearer {signed}"}


async def test_a_token_s_role_is_the_transaction_s_role(books: Books) -> None:
    rest = Books(books.client, token("rest_reader"))
    rows = await rest.rows("authors?select=id&order=id")
    assert [row["id"] for row in rows] == [1, 2, 3]
    # rest_reader may not read secrets' id (granted to anon and authenticated only): 403
    # since it carries a token.
    response = await rest.get("secrets?select=id")
    assert (response.status_code, response.json()["code"]) == (403, "42501")


async def test_a_role_the_login_may_not_become_is_refused(books: Books) -> None:
    response = await Books(books.client, token("rest_stranger")).get("authors")
    assert response.status_code == 403
    assert response.json()["code"] == "42501"
    response = await Books(books.client, token("no_such_role_anywhere")).get("authors")
    assert response.status_code == 401
    assert response.json()["code"] == "22023"


async def test_the_claims_and_the_request_are_the_transaction_s(books: Books) -> None:
    rest = Books(books.client, token("rest_reader", sub="someone"))
    rows = await rest.rows("whoami", x_probe="42")
    assert len(rows) == 1
    row = rows[0]
    assert (row["role"], row["method"], row["path"], row["probe"]) == (
        "rest_reader", "GET", "/rest/v1/whoami", "42"
    )  # fmt: skip
    assert json.loads(row["claims"])["sub"] == "someone"
    anonymous = await books.rows("whoami")
    assert anonymous[0]["role"] == "anon"


async def test_anonymous_requests_run_as_the_anon_role(books: Books) -> None:
    rows = await books.rows("authors?select=id&id=eq.1")
    assert rows == [{"id": 1}]
    response = await books.client.get("/rest/v1/contacts")
    assert response.status_code in (200, 401)
    if response.status_code == 200:
        assert response.json() == []


async def test_tx_rollback_is_applied_when_allowed(books: Books) -> None:
    response = await books.get("authors?select=id&limit=1", prefer="tx=rollback")
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "tx=rollback"


@pytest.mark.parametrize("role", ["member", "admin", "owner"])
async def test_members_read_their_company_through_rest(
    rest_as: Any, tenant_a: SeededCompany, role: str
) -> None:
    rest = rest_as(getattr(tenant_a, role))
    rows = await rest.rows("deals?select=id,contacts(first_name)")
    assert rows == [{"id": str(tenant_a.rows["deals"]), "contacts": {"first_name": "Ann"}}]


async def test_the_service_key_bypasses_row_level_security(
    rest_app: httpx.AsyncClient, tenant_a: SeededCompany, tenant_b: SeededCompany
) -> None:
    from tests.conftest import TEST_SERVICE_KEY

    response = await rest_app.get(
        f"/rest/v1/contacts?select=id&id=in.({tenant_a.rows['contacts']},"
        f"{tenant_b.rows['contacts']})",
        headers={"authorization": f"Bearer {TEST_SERVICE_KEY}"},
    )
    assert response.status_code == 200
    assert len(response.json()) == 2


async def test_v1_still_refuses_a_token_of_another_role(rest_app: httpx.AsyncClient) -> None:
    """Only /rest/v1 lets a token name any role; /v1 knows its three."""
    response = await rest_app.get("/v1/contacts", headers=token("rest_reader"))
    assert response.status_code == 401


async def test_the_credential_is_the_bearer_else_the_apikey_as_on_v1(books: Books) -> None:
    """One rule for every route (``syntera.api.deps.credential_from``): another scheme
    names no token, and the ``apikey`` beside it does not act: the anonymous role, as
    PostgREST reads ``Basic``; the key acts alone; an empty bearer is PostgREST's 401."""
    reader = token("rest_reader")["authorization"].removeprefix("Bearer ")
    basic = {"authorization": "Basic dXNlcjpwYXNz"}
    rows = await Books(books.client, {**basic, "apikey": reader}).rows("whoami")
    assert rows[0]["role"] == "anon"
    assert (await Books(books.client, {"apikey": reader}).rows("whoami"))[0][
        "role"
    ] == "rest_reader"
    assert (await Books(books.client, basic).rows("whoami"))[0]["role"] == "anon"
    beside = {**token("rest_reader"), "apikey": "not.a.jwt"}
    assert (await Books(books.client, beside).rows("whoami"))[0]["role"] == "rest_reader"
    for empty in ("Bearer", "Bearer   "):
        response = await Books(books.client, {"authorization": empty}).get("whoami")
        assert (response.status_code, response.json()["code"]) == (401, "PGRST301")
