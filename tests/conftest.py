"""The test session's servers: one embedded stack, started once, and a migrated database.

Nothing here is a mock: PostgreSQL, the MongoDB-wire server and Valkey are the embedded
servers of DESIGN.md. Each test makes its own tenants, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.migrations import migrate
from syntera.db.postgres import TenantConnection, create_api_pool
from syntera.embedded import EmbeddedStack, StackUrls

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

# Before any MongoDB client exists: watch every command for unscoped tenant queries.
from tests.mongo_watch import watch  # noqa: E402
from tests.pgbouncer import THROUGH_PGBOUNCER, start_pgbouncer  # noqa: E402
from tests.redis_cluster import THROUGH_CLUSTER, start_cluster  # noqa: E402

# The API's fixtures (the app, an HTTP client, tokens, a live server) for every package.
pytest_plugins = ["tests.api_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: takes seconds (servers started, killed or loaded); "
        '`pytest -m "not slow"` is the quick inner loop',
    )
    config.addinivalue_line(
        "markers",
        "unscoped_mongo(reason): reads MongoDB across companies on purpose "
        "(backups, retention); the tenant-filter watch is off for it",
    )


@pytest.fixture(autouse=True)
def every_mongodb_query_is_scoped(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test during which a tenant collection was queried without ``company_id``
    leading its filter (or a document inserted without one)."""
    if request.node.get_closest_marker("unscoped_mongo"):
        yield
        return
    watch.violations.clear()
    yield
    assert watch.violations == [], "MongoDB queried without the tenant first"


@dataclass(frozen=True)
class StackDatabase:
    """A migrated database of the session's PostgreSQL."""

    owner_url: str
    api_url: str


def server_url(stack_urls: StackUrls) -> str:
    """The PostgreSQL server the tests use: the embedded one, or the superuser URL in
    SYNTERA_TEST_DATABASE_URL (to run the same tests on, say, PostgreSQL 15)."""
    return os.environ.get("SYNTERA_TEST_DATABASE_URL") or stack_urls.database_url


def create_database(stack_urls: StackUrls, prefix: str) -> StackDatabase:
    """A new, empty database with a unique name, and its owner and authenticator URLs."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = server_url(stack_urls)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(url)
    return StackDatabase(
        owner_url=make_conninfo(**{**params, "dbname": name}),
        api_url=make_conninfo(**{**params, "dbname": name, "user": "authenticator"}),
    )


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    """A short directory (Unix-socket paths are limited to 107 bytes) for the stack."""
    path = Path(tempfile.mkdtemp(prefix="syntera-test-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(stack_dir: Path) -> Iterator[StackUrls]:
    """The embedded PostgreSQL, MongoDB-wire server and Valkey of this test session."""
    embedded = EmbeddedStack(stack_dir)
    urls = embedded.start()
    yield urls
    embedded.stop()


@pytest.fixture(scope="session")
def database(stack: StackUrls) -> StackDatabase:
    """A database with every migration applied."""
    db = create_database(stack, "test")
    migrate(db.owner_url)
    return db


TEST_JWT_SECRET = "test-jwt-secret-of-at-least-thirty-two-bytes"
TEST_SERVICE_KEY = "test-service-key"


@pytest.fixture(scope="session")
def settings(stack_dir: Path) -> Settings:
    """Settings for the API under test (known keys, so tests can mint tokens)."""
    return Settings(
        data_dir=stack_dir,
        pg_pool_min_size=1,
        pg_pool_max_size=10,
        jwt_secret=TEST_JWT_SECRET,
        service_key=TEST_SERVICE_KEY,
        # Tests run the knowledge-base worker themselves, when and where they need it.
        kb_worker_enabled=False,
        purge_worker_enabled=False,  # the purge tests run the worker themselves
        departure_worker_enabled=False,  # so do the tests of members who leave
        mail_worker_enabled=False,  # on in the auth flows' servers (tests/auth/conftest.py)
        workflow_worker_enabled=False,
        reply_worker_enabled=False,  # the agents' tests run the reply worker themselves
        insights_worker_enabled=False,  # the insights tests run their worker themselves
        kb_preload_model=False,  # loaded by the tests that embed, once per session
        pg_transaction_pooler=THROUGH_PGBOUNCER,
        redis_cluster=THROUGH_CLUSTER,
    )


@pytest.fixture(scope="session")
def api_redis_url(stack: StackUrls, stack_dir: Path) -> Iterator[str]:
    """The API's Redis: the embedded Valkey, or a three-master Valkey cluster when
    SYNTERA_TEST_REDIS_CLUSTER=1."""
    if THROUGH_CLUSTER:
        yield from start_cluster(stack_dir / "valkey-cluster")
    else:
        yield stack.redis_url


@pytest.fixture(scope="session")
def api_database_url(database: StackDatabase, stack_dir: Path) -> Iterator[str]:
    """Where the API connects as ``authenticator``: the database itself, or PgBouncer in
    front of it when SYNTERA_TEST_THROUGH_PGBOUNCER=1."""
    if THROUGH_PGBOUNCER:
        yield from start_pgbouncer(database.api_url, stack_dir / "pgbouncer-session")
    else:
        yield database.api_url


@pytest.fixture(scope="session")
async def api_pool(
    api_database_url: str, settings: Settings
) -> AsyncIterator[AsyncConnectionPool[TenantConnection]]:
    """The API's pool, connected as ``authenticator``."""
    pool = create_api_pool(settings, api_database_url)
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def owner_conn(database: StackDatabase) -> Iterator[psycopg.Connection]:
    """An autocommit connection as the schema owner, for setting up fixtures."""
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        yield conn
