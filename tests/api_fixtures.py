"""The API under test: one application (and its pools) per session, called in-process
through httpx's ASGI transport, or over TCP through a uvicorn server where a client
library needs a real URL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from syntera.app import create_app
from syntera.auth.tokens import issue_access_token, load_keys
from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.db.slow import TimedCursor
from syntera.embedded import StackUrls
from syntera.tenancy import Principal
from tests.conftest import TEST_SERVICE_KEY, StackDatabase
from tests.factories import SeededCompany, create_tenant


@pytest.fixture(scope="session")
def api_urls(
    stack: StackUrls, database: StackDatabase, api_database_url: str, api_redis_url: str
) -> StackUrls:
    return dataclasses.replace(
        stack,
        database_url=database.owner_url,
        api_database_url=api_database_url,
        redis_url=api_redis_url,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings, api_urls: StackUrls) -> AsyncIterator[FastAPI]:
    application = create_app(settings, api_urls)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


@contextlib.asynccontextmanager
async def served(
    app: FastAPI, base_url: str = "http://api.test"
) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan running (its own pools, caches and workers), and an
    in-process client of it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield http


def token_for(settings: Settings, principal: Principal) -> str:
    """An access token for ``principal``, as /auth/v1/token would issue it."""
    if principal.role == "service_role":
        return TEST_SERVICE_KEY
    assert principal.user_id is not None
    return issue_access_token(
        load_keys(settings),
        user_id=principal.user_id,
        email=None,
        session_id=principal.user_id,
        lifetime_s=600,
        issuer="http://api.test/auth/v1",
        user_metadata={},
        app_metadata={},
    ).token


MakeTenant = Callable[[], Awaitable[SeededCompany]]


@pytest.fixture(scope="session")
def make_tenant(
    api_pool: AsyncConnectionPool[TenantConnection], owner_conn: psycopg.Connection
) -> MakeTenant:
    """Makes a fresh company with an owner, an admin, a member and one row in every
    table, each time it is awaited."""

    async def make() -> SeededCompany:
        return await create_tenant(api_pool, owner_conn)

    return make


@pytest.fixture(scope="module")
async def tenant_a(make_tenant: MakeTenant) -> SeededCompany:
    """A company shared by one module's tests (they must not change what others read)."""
    return await make_tenant()


@pytest.fixture(scope="module")
async def tenant_b(make_tenant: MakeTenant) -> SeededCompany:
    """A second company of the module, for the tests between the two."""
    return await make_tenant()


@pytest.fixture
async def tenant(make_tenant: MakeTenant) -> SeededCompany:
    """A fresh company with an owner, an admin, a member and one row in every table."""
    return await make_tenant()


@pytest.fixture(scope="session")
def auth(settings: Settings) -> AuthHeaders:
    return AuthHeaders(settings)


@dataclasses.dataclass(frozen=True)
class AuthHeaders:
    settings: Settings

    def __call__(self, principal: Principal) -> dict[str, str]:
        """The Authorization header of ``principal``."""
        return {"Authorization": f"Bearer {token_for(self.settings, principal)}"}


@contextlib.contextmanager
def serving(app: FastAPI, **options: Any) -> Iterator[str]:
    """``app`` served by uvicorn (with ``options``) on a free local port, in a thread;
    its base URL. Stopped when the block ends, workers included: an event stream still
    open (a browser's) is closed after a grace period rather than waited for, since a
    server left running would go on claiming the jobs of the tests that follow."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options.setdefault("log_level", "warning")
    options.setdefault("timeout_graceful_shutdown", 3)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the served app did not stop within 60 s"


@pytest.fixture(scope="session")
def live_server(settings: Settings, api_urls: StackUrls) -> Iterator[str]:
    """The API served by uvicorn on a free local port, in a thread; its base URL."""
    # Without per-request limits: schemathesis sends thousands of requests as one user.
    unlimited = settings.model_copy(update={"rate_limits_enabled": False})
    with serving(create_app(unlimited, api_urls)) as url:
        yield url


StatementLog = list[str]


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> StatementLog:
    """Every statement the API's pools send from the test's own thread while it runs, in
    order (the first line of each): count them to hold a route to its budget. (Servers
    in threads of their own, such as the auth tests' mail workers, are not counted.)"""
    sent: StatementLog = []
    send = TimedCursor.execute
    here = threading.get_ident()

    async def counted(self: TimedCursor, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(query, bytes):
            text = query.decode()
        elif isinstance(query, str):
            text = query
        else:  # psycopg.sql.Composed
            text = query.as_string(self.connection)
        if threading.get_ident() == here:
            sent.append(" ".join(text.split())[:120])
        return await send(self, query, params, **kwargs)

    monkeypatch.setattr(TimedCursor, "execute", counted)
    return sent


# An API served over TCP (event streams need a real connection), with the stream timers
# short enough for tests: heartbeats and access re-checks every second. For the event
# streams' tests and the widget's.
STREAM_SETTINGS = {
    "events_heartbeat_s": 1.0,
    "events_recheck_s": 1.0,
    "events_send_timeout_s": 3.0,
    "events_streams_per_user": 3,
    "events_streams_per_widget_session": 2,
    "rate_limit_typing_per_minute": 5,
}


@pytest.fixture(scope="session")
def stream_settings(settings: Settings) -> Settings:
    return settings.model_copy(update=STREAM_SETTINGS)


@pytest.fixture(scope="session")
def events_url(stream_settings: Settings, api_urls: StackUrls) -> Iterator[str]:
    """The API with short stream timers, served by uvicorn in a thread."""
    with serving(create_app(stream_settings, api_urls)) as url:
        yield url


@pytest.fixture
async def http(events_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=events_url, timeout=15) as client:
        yield client


SUPABASE_JS = Path(__file__).parent / "auth" / "js"


@pytest.fixture(scope="session")
def supabase_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/auth/js (``@supabase/supabase-js`` and the scripts run with it) installed with
    ``npm ci`` (from the lock file) in a folder of the session; its path."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("needs node and npm (Debian's nodejs and npm packages)")
    folder = tmp_path_factory.mktemp("supabase-js")
    for source in [SUPABASE_JS / "package.json", SUPABASE_JS / "package-lock.json",
                   *SUPABASE_JS.glob("*.mjs")]:  # fmt: skip
        shutil.copy(source, folder / source.name)
    command = [npm, "ci", "--no-audit", "--no-fund"]
    installed = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, timeout=300, check=False
    )
    if installed.returncode != 0:
        pytest.fail(f"npm ci of @supabase/supabase-js failed:\n{installed.stderr[-2000:]}")
    return folder
