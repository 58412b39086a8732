"""The API through PgBouncer in transaction mode (``pool_mode = transaction``, Debian's
pgbouncer 1.18, which keeps no prepared statements): nothing of one request's session
reaches the next, and the API, isolation, workflow and budget tests pass through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syntera.config import Settings
from syntera.db.postgres import create_api_pool, transaction_as
from tests.conftest import StackDatabase
from tests.factories import SeededCompany
from tests.pgbouncer import MISSING, THROUGH_PGBOUNCER, pgbouncer_binary, start_pgbouncer
from tests.subsession import run_session

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
