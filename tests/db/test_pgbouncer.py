"""The API through PgBouncer in transaction mode (``pool_mode = transaction``, Debian's
pgbouncer 1.18, which keeps no prepared statements): nothing of one request's session
reaches the next, every hot path works past psycopg's prepare threshold, and the API,
isolation, workflow and budget tests pass through it."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from syntera.app import create_app
from syntera.config import Settings
from syntera.db.postgres import PREPARE_THRESHOLD, create_api_pool, transaction_as
from syntera.embedded import StackUrls
from tests.api_fixtures import AuthHeaders
from tests.conftest import StackDatabase
from tests.factories import SeededCompany
from tests.pgbouncer import MISSING, THROUGH_PGBOUNCER, pgbouncer_binary, start_pgbouncer
from tests.subsession import run_session
from tests.widget.helpers import open_chat

pytestmark = pytest.mark.skipif(pgbouncer_binary() is None, reason=MISSING)


@pytest.fixture(scope="module")
def one_server_connection(database: StackDatabase, stack_dir: Path) -> Iterator[str]:
    """PgBouncer with a single server connection: every client transaction reuses it."""
    yield from start_pgbouncer(database.api_url, stack_dir / "pgbouncer-one", pool_size=1)


async def test_no_session_state_leaks_between_transactions(
    one_server_connection: str, settings: Settings, tenant_a: SeededCompany
) -> None:
    pooled = settings.model_copy(update={"pg_transaction_pooler": True})
    async with create_api_pool(pooled, one_server_connection) as pool:
        for _ in range(7):  # past psycopg's prepare threshold of 5
            async with transaction_as(pool, tenant_a.member) as conn:
                cursor = await conn.execute(
                    "SELECT current_user AS who, current_setting('statement_timeout') AS t,"
                    " (SELECT count(*) FROM public.contacts) AS contacts"
                )
                row = await cursor.fetchone()
                assert row is not None
                assert (row["who"], row["t"]) == ("authenticated", "15s")
                assert row["contacts"] >= 1
    # A bare connection on the same server connection finds nothing left behind.
    with psycopg.connect(one_server_connection, autocommit=True) as bare:
        row = bare.execute(
            "SELECT current_user, current_setting('request.jwt.claims', true),"
            " current_setting('request.membership', true), current_setting('statement_timeout')"
        ).fetchone()
    assert row is not None
    assert row[0] == "authenticator"
    assert row[1] in (None, "")
    assert row[2] in (None, "")
    assert row[3] == "0"


@pytest.mark.slow
@pytest.mark.skipif(THROUGH_PGBOUNCER, reason="already running through PgBouncer")
def test_the_api_isolation_workflow_and_budget_tests_pass_through_pgbouncer() -> None:
    """The same tests, in a session whose API connects only through PgBouncer."""
    modules = [
        "tests/api/test_isolation.py",
        "tests/api/test_statement_budgets.py",
        "tests/workflows",
        "tests/crm",
        "tests/conversations/test_conversations_api.py",
    ]
    run_session(modules, SYNTERA_TEST_THROUGH_PGBOUNCER="1")


def test_prepared_statements_are_off_behind_a_transaction_pooler_unless_set() -> None:
    assert Settings(pg_transaction_pooler=False).prepared_statements
    assert not Settings(pg_transaction_pooler=True).prepared_statements
    # PgBouncer >= 1.21 with max_prepared_statements keeps them: the operator says so.
    both = Settings(pg_transaction_pooler=True, database_prepared_statements=True)
    assert both.prepared_statements
    assert not Settings(database_prepared_statements=False).prepared_statements


@pytest.fixture(scope="module")
def shared_server_connections(database: StackDatabase, stack_dir: Path) -> Iterator[str]:
    """PgBouncer with two server connections for the API's four client connections:
    each transaction may land on a server connection another client prepared on."""
    yield from start_pgbouncer(database.api_url, stack_dir / "pgbouncer-hot", pool_size=2)


# Behind a pooler, prepared statements are off either by saying there is a pooler (the
# default follows) or by turning them off alone.
BEHIND_A_POOLER = {
    "pooler": {"pg_transaction_pooler": True},
    "prepared statements off": {"database_prepared_statements": False},
}


@pytest.fixture(scope="module", params=list(BEHIND_A_POOLER))
async def pooled_api(
    request: pytest.FixtureRequest,
    settings: Settings,
    api_urls: StackUrls,
    shared_server_connections: str,
) -> AsyncIterator[httpx.AsyncClient]:
    """The API connecting only through PgBouncer, called in-process."""
    update: dict[str, Any] = {
        "pg_pool_min_size": 4,
        "pg_pool_max_size": 4,
        "rate_limits_enabled": False,
        **BEHIND_A_POOLER[request.param],
    }
    pooled = Settings.model_validate({**settings.model_dump(), **update})
    urls = dataclasses.replace(api_urls, api_database_url=shared_server_connections)
    app = create_app(pooled, urls)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


async def test_every_hot_path_works_through_pgbouncer_past_the_prepare_threshold(
    pooled_api: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    http = pooled_api
    member = auth(tenant.member)
    contact = f"/v1/contacts/{tenant.rows['contacts']}"
    chat = await open_chat(http, member, tenant.rows["agent_configs"])
    started = await http.post(
        "/v1/conversations", headers=member, json={"agent_id": str(tenant.rows["agent_configs"])}
    )
    assert started.status_code == 201, started.text
    conversation = f"/v1/conversations/{started.json()['id']}"

    def create() -> Awaitable[httpx.Response]:
        email = f"hot-{uuid.uuid4().hex[:12]}@example.com"
        return http.post("/v1/contacts", headers=member, json={"email": email})

    calls: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        "GET one": lambda: http.get(contact, headers=member),
        "GET page": lambda: http.get("/v1/contacts?limit=20", headers=member),
        "GET search": lambda: http.get("/v1/contacts?q=ann&limit=20", headers=member),
        "GET deals": lambda: http.get("/v1/deals?limit=20", headers=member),
        "POST create": create,
        "PATCH": lambda: http.patch(contact, headers=member, json={"first_name": "Annie"}),
        "POST message": lambda: http.post(
            f"{conversation}/messages",
            headers=member,
            json={"sender_type": "agent", "content": "Hello"},
        ),
        "POST widget message": lambda: http.post(
            f"{chat.url}/messages", headers=chat.session, json={"content": "Hi"}
        ),
        "GET messages": lambda: http.get(f"{conversation}/messages", headers=member),
    }
    # Each statement more often than psycopg's threshold, on every client connection:
    # four at once, so transactions of different clients share server connections.
    for _ in range(3 * PREPARE_THRESHOLD):
        for name, call in calls.items():
            answers = await asyncio.gather(*(call() for _ in range(4)))
            for answer in answers:
                assert answer.status_code < 300, f"{name}: {answer.status_code} {answer.text}"
