"""Round-trip budgets of the hot paths (zulip's query-count tests): the PostgreSQL round
trips (read off libpq's protocol trace: each Sync or simple Query sent is one) and the
Redis round trips (each packet sent) of one request. A change that adds one fails here
and shows what the request now sends."""

from __future__ import annotations

import inspect
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from redis.asyncio.connection import Connection as RedisConnection

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


@dataclass
class Trips:
    postgres: list[str] = field(default_factory=list)  # the messages sent, for the failure
    redis: int = 0

    @property
    def postgres_trips(self) -> int:
        return sum(1 for message in self.postgres if message.split(" ")[0] in ("Sync", "Query"))


@pytest.fixture
async def one_connection_app(settings: Settings, api_urls: StackUrls) -> AsyncIterator[FastAPI]:
    """The API with a pool of one PostgreSQL connection, so that one trace sees it all."""
    app = create_app(settings.model_copy(update={"pg_pool_min_size": 1, "pg_pool_max_size": 1}),
                     api_urls)  # fmt: skip
    async with app.router.lifespan_context(app):
        yield app


@contextmanager
def redis_sends(trips: Trips) -> Iterator[None]:
    """Count the packets this thread sends to Redis (a pipeline is one)."""
    here, send = threading.get_ident(), RedisConnection.send_packed_command

    async def counted(self: RedisConnection, command: Any, check_health: bool = True) -> None:
        if threading.get_ident() == here:
            trips.redis += 1
        await send(self, command, check_health)

    RedisConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        RedisConnection.send_packed_command = send  # type: ignore[method-assign]


@asynccontextmanager
async def traced(app: FastAPI) -> AsyncIterator[Trips]:
    trips = Trips()
    pool = app.state.stores.postgres
    with tempfile.TemporaryFile() as trace:
        async with pool.connection() as conn:
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            with redis_sends(trips):
                yield trips
        finally:
            async with pool.connection() as conn:
                conn.pgconn.untrace()
            trace.seek(0)
            lines = trace.read().decode(errors="replace").splitlines()
            trips.postgres = [" ".join(line.split("\t")[2:4])[:100] for line in lines
                              if line.startswith("F\t")]  # fmt: skip


async def request(app: FastAPI, method: str, path: str, headers: dict[str, str],
                  body: Any = None) -> tuple[httpx.Response, Trips]:  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        await http.request(method, path, headers=headers, json=body)  # warm: caches, plans
        async with traced(app) as trips:
            answer = await http.request(method, path, headers=headers, json=body)
    return answer, trips


async def test_reading_a_contact_is_one_round_trip_to_each_store(
    one_connection_app: FastAPI, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    path = f"/v1/contacts/{tenant.rows['contacts']}"
    answer, trips = await request(one_connection_app, "GET", path, auth(tenant.member))
    assert answer.status_code == 200
    assert trips.postgres_trips == 1, trips.postgres  # BEGIN … SELECT … COMMIT, pipelined
    assert trips.redis == 0  # the per-user limit: spent from the warm-up's lease


async def test_a_page_of_contacts_is_one_round_trip_to_each_store(
    one_connection_app: FastAPI, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    answer, trips = await request(one_connection_app, "GET", "/v1/contacts?limit=20",
                                  auth(tenant.member))  # fmt: skip
    assert answer.status_code == 200
    assert trips.postgres_trips == 1, trips.postgres
    assert trips.redis == 0


async def test_creating_a_contact_is_one_round_trip(
    one_connection_app: FastAPI, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    """BEGIN with the caller and their membership, the INSERT (finding the company in
    the database) and COMMIT, pipelined; a refused one (409 here) too."""
    answer, trips = await request(one_connection_app, "POST", "/v1/contacts",
                                  auth(tenant.member), {"email": "budget@example.com"})  # fmt: skip
    assert answer.status_code in (201, 409), answer.text  # the warm-up made it already
    assert trips.postgres_trips == 1, trips.postgres
    assert trips.redis == 0


async def test_changing_a_deal_is_one_round_trip(
    one_connection_app: FastAPI, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    """A deal's stage move, as a board's drag: BEGIN, the caller, the UPDATE (finding the
    company in the database) and COMMIT, pipelined."""
    path = f"/v1/deals/{tenant.rows['deals']}"
    answer, trips = await request(one_connection_app, "PATCH", path, auth(tenant.member),
                                  {"stage": "proposal"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["stage"] == "proposal"
    assert trips.postgres_trips == 1, trips.postgres
    assert trips.redis == 0


async def test_posting_a_message_is_two_postgresql_and_three_redis_round_trips(
    one_connection_app: FastAPI, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    """PostgreSQL: BEGIN with the caller; the analytics event with COMMIT. Redis: the
    conversation's cached header, the cache invalidation, the live event (the limit is
    spent from a lease)."""
    headers = auth(tenant.member)
    transport = httpx.ASGITransport(app=one_connection_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        started = await http.post("/v1/conversations", headers=headers,
                                  json={"agent_id": str(tenant.rows["agent_configs"])})  # fmt: skip
    path = f"/v1/conversations/{started.json()['id']}/messages"
    body = {"sender_type": "user", "content": "within budget?"}
    answer, trips = await request(one_connection_app, "POST", path, headers, body)
    assert answer.status_code == 201, answer.text
    assert trips.postgres_trips == 2, trips.postgres
    assert trips.redis == 3, trips.redis


def _api_routes(routes: list[Any]) -> Iterator[Any]:
    from fastapi.routing import APIRoute

    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router (FastAPI >= 0.165)
            yield from _api_routes(route.original_router.routes)


def _runs_on_the_loop(call: Any) -> bool:
    return any(
        inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
        for target in (call, type(call).__call__ if not inspect.isfunction(call) else None)
    )


def test_no_route_or_dependency_hops_to_a_thread(settings: Settings, api_urls: StackUrls) -> None:
    """FastAPI runs a plain-function endpoint or dependency in its thread pool: a thread
    hand-off per request (bench/mixed.py found the conversation store's dependency so).
    Every endpoint and dependency of the API is a coroutine function."""

    def plain(dependant: Any) -> Iterator[str]:
        for sub in dependant.dependencies:
            if sub.call is not None and not _runs_on_the_loop(sub.call):
                yield getattr(sub.call, "__qualname__", repr(sub.call))
            yield from plain(sub)

    routes = list(_api_routes(create_app(settings, api_urls).routes))
    assert len(routes) > 100
    found = {
        f"{route.path}: {name}"
        for route in routes
        for name in ([] if _runs_on_the_loop(route.endpoint) else [route.name])
        + list(plain(route.dependant))
    }
    assert not found, sorted(found)
