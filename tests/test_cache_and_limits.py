"""Redis (the embedded Valkey): cache-aside that is never stale after a write, keys that
always name their tenant, rate limits, widget sessions, and life without Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg.types.json import Jsonb

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import REDIS, EmbeddedStack, StackUrls
from syntera.errors import RateLimited
from syntera.metrics import REDIS_FALLBACKS
from syntera.ratelimit import LEASE_MAX, LEASE_SHARE, Limiters, SlidingWindow
from tests.api_fixtures import AuthHeaders, MakeTenant, served
from tests.factories import SeededCompany
from tests.widget.helpers import open_chat

KEY_FORM = re.compile(r"^(t:\{[0-9a-f-]{36}\}|g:[a-z-]+:\{[^{}:]+\})(:|$)")


@pytest.fixture
def agent_url(tenant: SeededCompany) -> str:
    """The URL of the tenant's seeded agent."""
    return f"/v1/agents/{tenant.rows['agent_configs']}"


async def test_agent_cache_is_never_stale_after_a_write_in_any_process(
    client: httpx.AsyncClient,
    settings: Settings,
    api_urls: StackUrls,
    auth: AuthHeaders,
    tenant: SeededCompany,
    agent_url: str,
    owner_conn: psycopg.Connection,
) -> None:
    headers = auth(tenant.member)
    assert (await client.get(agent_url, headers=headers)).json()["name"] == "Support"
    # A change behind the API's back is not seen: the answer comes from the cache.
    owner_conn.execute(
        "UPDATE agent_configs SET name = 'Changed directly' WHERE id = %s",
        (tenant.rows["agent_configs"],),
    )
    assert (await client.get(agent_url, headers=headers)).json()["name"] == "Support"

    # Another API process (its own app, pools and cache) sees each write at once.
    other = create_app(settings, api_urls)
    async with served(other, "http://other") as other_client:
        assert (await other_client.get(agent_url, headers=headers)).json()["name"] == "Support"
        patched = await client.patch(agent_url, headers=headers, json={"name": "Renamed"})
        assert patched.status_code == 200
        assert (await other_client.get(agent_url, headers=headers)).json()["name"] == "Renamed"
        await client.post(f"{agent_url}/public-key", headers=headers)
        assert (await other_client.get(agent_url, headers=headers)).json()["has_public_key"] is True
        await client.patch(agent_url, headers=headers, json={"enabled": False})
        assert (await other_client.get(agent_url, headers=headers)).json()["enabled"] is False
        assert (await client.delete(agent_url, headers=headers)).status_code == 204
        assert (await other_client.get(agent_url, headers=headers)).status_code == 404


async def test_a_failed_write_does_not_invalidate_and_a_rolled_back_one_is_not_seen(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, agent_url: str
) -> None:
    headers = auth(tenant.member)
    await client.get(agent_url, headers=headers)
    refused = await client.patch(agent_url, headers=headers, json={"temperature": 5})
    assert refused.status_code == 422
    assert (await client.get(agent_url, headers=headers)).json()["temperature"] == "0.70"


async def test_cached_agents_of_one_company_never_reach_another(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    agent_url: str,
    make_tenant: MakeTenant,
) -> None:
    other = await make_tenant()
    assert (await client.get(agent_url, headers=auth(tenant.member))).status_code == 200  # cached
    assert (await client.get(agent_url, headers=auth(other.member))).status_code == 404
    keys = {}
    for who in (tenant, other):
        response = await client.post(
            f"/v1/agents/{who.rows['agent_configs']}/public-key", headers=auth(who.member)
        )
        keys[who.company_id] = response.json()["public_key"]
    for _ in range(2):  # the second round is served from the key cache
        for who in (tenant, other):
            chat = await client.post(
                "/v1/public/conversations", headers={"X-Api-Key": keys[who.company_id]}
            )
            assert chat.status_code == 201, chat.text
            assert chat.json()["conversation"]["company_id"] == str(who.company_id)
            assert chat.json()["conversation"]["agent_id"] == str(who.rows["agent_configs"])


async def test_every_redis_key_starts_with_its_tenant_or_a_fixed_prefix(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany, stack: StackUrls
) -> None:
    headers = auth(tenant.member)
    agent = tenant.rows["agent_configs"]
    await client.get(f"/v1/agents/{agent}", headers=headers)
    key = (await client.post(f"/v1/agents/{agent}/public-key", headers=headers)).json()
    chat = await client.post("/v1/public/conversations", headers={"X-Api-Key": key["public_key"]})
    await client.post(
        "/auth/v1/token", params={"grant_type": "password"},
        json={"email": "nobody@example.com", "password": "wrong password"},
    )  # fmt: skip
    assert chat.status_code == 201
    redis = aioredis.Redis.from_url(stack.redis_url)
    try:
        keys = [k.decode() async for k in redis.scan_iter(count=1000)]
    finally:
        await redis.aclose()
    assert len(keys) >= 5
    assert [k for k in keys if not KEY_FORM.match(k)] == []
    assert any(k.startswith(f"t:{{{tenant.company_id}}}:") for k in keys)


async def test_sliding_window_trips_at_the_limit_and_resets(stack: StackUrls) -> None:
    redis = aioredis.Redis.from_url(stack.redis_url)
    window = SlidingWindow(redis, limit=3, window_s=1.0, timeout_s=0.5)
    key = f"g:test-window:{time.time_ns()}"
    try:
        assert [(await window.hit(key)).allowed for _ in range(4)] == [True, True, True, False]
        refused = await window.hit(key)
        assert refused.retry_after_s == 1
        await asyncio.sleep(1.05)
        assert (await window.hit(key)).allowed
    finally:
        await redis.aclose()


async def test_api_limit_per_user_answers_429_with_retry_after(
    settings: Settings, api_urls: StackUrls, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    limited = create_app(settings.model_copy(update={"rate_limit_api_per_minute": 5}), api_urls)
    async with served(limited, "http://other") as http:
        codes = [
            (await http.get("/v1/contacts", headers=auth(tenant.member))).status_code
            for _ in range(6)
        ]
        assert codes == [200] * 5 + [429]
        refused = await http.get("/v1/contacts", headers=auth(tenant.member))
        assert refused.headers["content-type"] == "application/problem+json"
        assert 0 < int(refused.headers["retry-after"]) <= 60
        # Per user: a teammate is not limited by it.
        assert (await http.get("/v1/contacts", headers=auth(tenant.admin))).status_code == 200


async def test_rest_requests_naming_no_user_are_limited_per_address(
    settings: Settings, api_urls: StackUrls, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    limited = create_app(settings.model_copy(update={"rate_limit_api_per_minute": 3}), api_urls)
    async with served(limited, "http://other") as http:
        codes = [(await http.get("/rest/v1/companies")).status_code for _ in range(4)]
        assert codes[3] == 429
        assert all(code != 429 for code in codes[:3])
        assert (await http.get("/rest/v1/companies")).json()["code"] == "PGRST429"
        # A signed-in member counts against their own limit, not the address's.
        member = await http.get("/rest/v1/companies", headers=auth(tenant.member))
        assert member.status_code == 200


async def test_limit_leases_never_admit_more_than_the_limit_across_processes(
    settings: Settings, stack: StackUrls
) -> None:
    """Two processes' limiters take leases of one user's minute: together they admit at
    most the limit, and lose at most a lease's share of it to what they hold unspent."""
    limit = 100
    clients = [aioredis.Redis.from_url(stack.redis_url) for _ in range(2)]
    tuned = settings.model_copy(update={"rate_limit_api_per_minute": limit})
    processes = [Limiters.from_settings(tuned, client) for client in clients]
    key = f"g:rate-user:{{{time.time_ns()}}}"
    admitted = 0
    try:
        for turn in range(3 * limit):
            limiters = processes[turn % 2]
            try:
                await limiters.enforce(limiters.api_user, key, "requests per user")
                admitted += 1
            except RateLimited:
                pass
    finally:
        for client in clients:
            await client.aclose()
    assert limit - 2 * (limit // LEASE_SHARE) <= admitted <= limit


async def test_a_busy_user_costs_one_redis_round_trip_per_lease(
    settings: Settings, stack: StackUrls
) -> None:
    client = aioredis.Redis.from_url(stack.redis_url)
    limiters = Limiters.from_settings(settings.model_copy(update={
        "rate_limit_api_per_minute": 10_000}), client)  # fmt: skip
    key = f"g:rate-user:{{{time.time_ns()}}}"
    try:
        for _ in range(100):
            await limiters.enforce(limiters.api_user, key, "requests per user")
        window = int(time.time() // 60)
        counted = int(await client.get(f"{key}:{window}") or 0)
    finally:
        await client.aclose()
    # Two leases of LEASE_MAX (64) cover the 100 requests: two round trips, not a hundred.
    # (A minute that turned over during the loop would start a third lease.)
    assert counted in (2 * LEASE_MAX, LEASE_MAX), counted


async def test_widget_session_limit_and_revocation(
    settings: Settings, api_urls: StackUrls, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    limited = create_app(
        settings.model_copy(update={"rate_limit_widget_session_per_minute": 3}), api_urls
    )
    async with served(limited, "http://other") as http:
        chat = await open_chat(http, auth(tenant.member), tenant.rows["agent_configs"])
        session, url = chat.session, chat.url
        codes = [
            (
                await http.post(f"{url}/messages", headers=session, json={"content": "hi"})
            ).status_code
            for _ in range(4)
        ]
        assert codes == [201, 201, 201, 429]
        assert (await http.delete(f"{url}/session", headers=session)).status_code in (204, 429)


async def test_a_revoked_widget_session_is_refused(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    chat = await open_chat(client, auth(tenant.member), tenant.rows["agent_configs"])
    session, url = chat.session, chat.url
    assert (await client.get(f"{url}/messages", headers=session)).status_code == 200
    assert (await client.delete(f"{url}/session", headers=session)).status_code == 204
    assert (await client.get(f"{url}/messages", headers=session)).status_code == 401


@pytest.fixture
def own_valkey() -> Iterator[tuple[EmbeddedStack, str]]:
    """A Valkey of this test alone, to kill and restart."""
    path = Path(tempfile.mkdtemp(prefix="syntera-valkey-", dir="/tmp"))
    stack = EmbeddedStack(path)
    urls = stack.start((REDIS,))
    yield stack, urls.redis_url
    stack.stop()
    shutil.rmtree(path, ignore_errors=True)


async def test_requests_keep_succeeding_while_redis_is_down_and_recover_after(
    settings: Settings,
    api_urls: StackUrls,
    auth: AuthHeaders,
    tenant: SeededCompany,
    agent_url: str,
    own_valkey: tuple[EmbeddedStack, str],
) -> None:
    valkey, redis_url = own_valkey
    app = create_app(settings, dataclasses.replace(api_urls, redis_url=redis_url))
    headers = auth(tenant.member)
    async with served(app, "http://other") as http:
        assert (await http.get(agent_url, headers=headers)).status_code == 200
        key = (await http.post(f"{agent_url}/public-key", headers=headers)).json()["public_key"]
        before = REDIS_FALLBACKS.labels("agent_read")._value.get()

        valkey.stop()  # Redis is gone, mid-run
        started = time.monotonic()
        read = await http.get(agent_url, headers=headers)
        write = await http.post("/v1/contacts", headers=headers, json={"first_name": "Kept"})
        listed = await http.get("/v1/contacts", headers=headers)
        widget = await http.post("/v1/public/conversations", headers={"X-Api-Key": key})
        ready = await http.get("/readyz")
        elapsed = time.monotonic() - started
        assert read.status_code == 200
        assert write.status_code == 201
        assert listed.status_code == 200
        assert widget.status_code == 503  # the widget fails closed without Redis
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["redis"]
        assert REDIS_FALLBACKS.labels("agent_read")._value.get() > before
        assert elapsed < 5 * (settings.redis_timeout_s * 4 + 0.5)

        valkey.start((REDIS,))  # back, on the same port
        await asyncio.sleep(0.2)
        assert (await http.get("/readyz")).status_code == 200
        assert (await http.get(agent_url, headers=headers)).status_code == 200
        chat = await http.post("/v1/public/conversations", headers={"X-Api-Key": key})
        assert chat.status_code == 201


async def test_conversation_header_and_newest_page_are_never_stale_after_a_write(
    client: httpx.AsyncClient,
    settings: Settings,
    api_urls: StackUrls,
    auth: AuthHeaders,
    tenant: SeededCompany,
    stack: StackUrls,
) -> None:
    headers = auth(tenant.member)
    started = await client.post(
        "/v1/conversations", headers=headers, json={"agent_id": str(tenant.rows["agent_configs"])}
    )
    url = f"/v1/conversations/{started.json()['id']}"
    other = create_app(settings, api_urls)
    async with served(other, "http://other") as reader:

        async def header() -> dict[str, object]:
            response = await reader.get(url, headers=headers)
            assert response.status_code == 200
            body: dict[str, object] = response.json()
            return body

        async def newest() -> list[dict[str, object]]:
            response = await reader.get(f"{url}/messages", headers=headers)
            data: list[dict[str, object]] = response.json()["data"]
            return data

        assert (await header())["summary"] is None
        assert await newest() == []
        # Behind the API's back: the cached newest page is what is served (so the checks
        # below see the cache at work). The header is read fresh, since it carries the
        # reader's own unread count; the cache only guards access to it.
        import pymongo
        from bson import ObjectId

        direct: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(stack.mongodb_uri)
        database = direct[settings.mongodb_db]
        written = database["messages"].insert_one({
            "company_id": str(tenant.company_id),
            "conversation_id": started.json()["id"], "thread_id": None,
            "sender_type": "user", "role": "user", "content": "written directly",
            "message_type": "text", "attachments": [], "ai_metadata": None,
            "metadata": {"reactions": []}, "sender_id": None, "read_by": [],
            "created_at": datetime.now(UTC),
        })  # fmt: skip
        database["conversations"].update_one(
            {"company_id": str(tenant.company_id), "_id": ObjectId(started.json()["id"])},
            {"$set": {"summary": "written directly"}},
        )
        assert await newest() == []
        assert (await header())["summary"] == "written directly"
        database["messages"].delete_one(
            {
                "company_id": str(tenant.company_id),
                "conversation_id": started.json()["id"],
                "_id": written.inserted_id,
            }
        )
        direct.close()

        await client.patch(url, headers=headers, json={"summary": "Via the API"})
        assert (await header())["summary"] == "Via the API"
        thread = (await client.post(f"{url}/threads", headers=headers, json={"title": "A"})).json()
        assert [t["title"] for t in (await header())["threads"]] == ["A"]  # type: ignore[union-attr]
        await client.patch(f"{url}/threads/{thread['id']}", headers=headers, json={"title": "B"})
        assert [t["title"] for t in (await header())["threads"]] == ["B"]  # type: ignore[union-attr]
        message = (await client.post(f"{url}/messages", headers=headers, json={
            "sender_type": "user", "role": "user", "content": "hi", "thread_id": thread["id"],
        })).json()  # fmt: skip
        assert [m["id"] for m in await newest()] == [message["id"]]
        assert (await header())["threads"][0]["message_count"] == 1  # type: ignore[index]
        await client.post(
            f"{url}/messages/{message['id']}/reactions", headers=headers, json={"emoji": "+1"}
        )
        assert (await newest())[0]["metadata"]["reactions"][0]["emoji"] == "+1"  # type: ignore[index]
        await client.post(f"{url}/messages/{message['id']}/read", headers=headers)
        assert len((await newest())[0]["read_by"]) == 1  # type: ignore[arg-type]
        await client.post(f"{url}/end", headers=headers)
        assert (await header())["status"] == "ended"
        await client.post(f"{url}/archive", headers=headers)
        assert (await header())["status"] == "archived"


async def test_concurrent_misses_of_one_key_load_it_once(stack: StackUrls) -> None:
    from syntera.cache import Cache

    redis = aioredis.Redis.from_url(stack.redis_url)
    cache = Cache(redis, timeout_s=0.5)
    loads = 0

    async def load() -> dict[str, int]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        return {"answer": 42}

    key = f"g:test-stampede:{time.time_ns()}"
    try:
        values = await asyncio.gather(
            *(cache.read("test", key, f"{key}:generation", 60, load) for _ in range(20))
        )
        assert values == [{"answer": 42}] * 20
        assert loads == 1
        assert await cache.read("test", key, f"{key}:generation", 60, load) == {"answer": 42}
        assert loads == 1  # a hit
        await cache.invalidate(f"{key}:generation")
        await cache.read("test", key, f"{key}:generation", 60, load)
        assert loads == 2
    finally:
        await redis.delete(key, f"{key}:generation")
        await redis.aclose()


async def test_a_value_json_cannot_hold_is_served_uncached(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    agent_url: str,
    owner_conn: psycopg.Connection,
) -> None:
    headers = auth(tenant.member)
    huge = {"gain": 2**70}  # valid JSON and jsonb; beyond what the cache's encoder takes
    refused = await client.patch(agent_url, headers=headers, json={"voice_settings": huge})
    assert refused.status_code == 422, "the API takes no integer beyond 64 bits"
    assert refused.json()["errors"][0]["field"] == "voice_settings.gain"
    # A row written by other means (an older version, SQL) still reads, uncached.
    owner_conn.execute(
        "UPDATE public.agent_configs SET voice_settings = %s WHERE id = %s",
        (Jsonb(huge), tenant.rows["agent_configs"]),
    )
    for _ in range(2):
        response = await client.get(agent_url, headers=headers)
        assert response.status_code == 200
        assert response.json()["voice_settings"] == huge
