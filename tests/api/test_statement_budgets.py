"""How many statements the hot paths send (zulip's query-count tests): a change that adds
a round trip to one of them fails here, and says which statements it now sends."""

from __future__ import annotations

import httpx

from tests.api_fixtures import AuthHeaders, StatementLog
from tests.factories import SeededCompany

# BEGIN, the caller's role and claims, the caller's membership: pipelined, one round trip.
OPEN_TRANSACTION = 3


async def test_reading_a_contact_is_the_transaction_and_one_select(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, statements: StatementLog
) -> None:
    contact_id = tenant.rows["contacts"]
    response = await client.get(f"/v1/contacts/{contact_id}", headers=auth(tenant.member))
    assert response.status_code == 200
    assert len(statements) == OPEN_TRANSACTION + 1, statements
    assert statements[-1].startswith('SELECT "id"'), statements


async def test_a_page_of_contacts_is_the_transaction_and_one_select(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, statements: StatementLog
) -> None:
    response = await client.get("/v1/contacts?limit=20", headers=auth(tenant.member))
    assert response.status_code == 200
    assert len(statements) == OPEN_TRANSACTION + 1, statements


async def test_creating_a_contact_is_the_transaction_and_one_insert(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, statements: StatementLog
) -> None:
    response = await client.post(
        "/v1/contacts", headers=auth(tenant.member), json={"email": "new@example.com"}
    )
    assert response.status_code == 201, response.text
    assert len(statements) == OPEN_TRANSACTION + 1, statements
    assert statements[-1].startswith("INSERT INTO"), statements
