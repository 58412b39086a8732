"""The cache, the limits and the widget sessions on a real three-master Valkey cluster
(``SYNTERA_REDIS_CLUSTER=true``): every operation that touches several keys finds them in
one slot, and the keys spread over the nodes by tenant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import redis.asyncio as aioredis

from syntera.app import create_app
from syntera.config import Settings
from syntera.db.redis import connect_redis, create_redis, global_key
from syntera.embedded import StackUrls
from syntera.ratelimit import Limiters
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany
from tests.redis_cluster import THROUGH_CLUSTER, start_cluster
from tests.subsession import run_session
from tests.widget.helpers import open_chat

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster_url(stack_dir: Path) -> Iterator[str]:
    yield from start_cluster(stack_dir / f"cluster-{uuid4().hex[:6]}")


@pytest.fixture(scope="module")
def cluster_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"redis_cluster": True, "rate_limit_widget_session_per_minute": 3}
    )


@pytest.fixture(scope="module")
async def on_cluster(
    cluster_settings: Settings, api_urls: StackUrls, cluster_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    urls = StackUrls(api_urls.database_url, api_urls.api_database_url, api_urls.mongodb_uri,
                     cluster_url)  # fmt: skip
    app = create_app(cluster_settings, urls)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield http


async def cluster_keys(cluster_url: str) -> dict[str, list[str]]:
    """Every key of the cluster, by the node that holds it."""
    cluster = aioredis.RedisCluster.from_url(cluster_url)
    await cluster.initialize()  # learns the nodes from the one it was given
    try:
        found: dict[str, list[str]] = {}
        for node in cluster.get_nodes():
            client = aioredis.Redis(host=node.host, port=node.port)
            found[node.name] = [key.decode() async for key in client.scan_iter(count=1000)]
            await client.aclose()
        return found
    finally:
        await cluster.aclose()


async def test_the_agent_cache_is_never_stale_on_a_cluster(
    on_cluster: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    url = f"/v1/agents/{tenant.rows['agent_configs']}"
    headers = auth(tenant.member)
    for name in ("First", "Second", "Third"):
        assert (await on_cluster.get(url, headers=headers)).status_code == 200  # cached
        changed = await on_cluster.patch(url, headers=headers, json={"name": name})
        assert changed.status_code == 200
        assert (await on_cluster.get(url, headers=headers)).json()["name"] == name


async def test_widget_sessions_and_their_limits_work_on_a_cluster(
    on_cluster: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    chat = await open_chat(on_cluster, auth(tenant.member), tenant.rows["agent_configs"])
    codes = [
        (await on_cluster.post(f"{chat.url}/messages", headers=chat.session,
                               json={"content": "hi"})).status_code
        for _ in range(4)
    ]  # fmt: skip
    assert codes == [201, 201, 201, 429], "the session's limit: three per minute"
    ended = await on_cluster.delete(f"{chat.url}/session", headers=chat.session)
    assert ended.status_code in (204, 429)


async def test_the_sign_in_throttle_works_on_a_cluster(on_cluster: httpx.AsyncClient) -> None:
    email = f"cluster-{uuid4().hex[:10]}@example.com"
    password = "correct horse battery"
    signed_up = await on_cluster.post(
        "/auth/v1/signup", json={"email": email, "password": password}
    )
    assert signed_up.status_code == 200
    codes = [
        (await on_cluster.post("/auth/v1/token?grant_type=password",
                               json={"email": email, "password": "wrong password"})).status_code
        for _ in range(6)
    ]  # fmt: skip
    assert codes == [400] * 5 + [429]


async def test_one_companys_keys_share_a_node_and_companies_spread(
    on_cluster: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant, cluster_url: str
) -> None:
    companies = [await make_tenant() for _ in range(6)]
    for company in companies:
        await on_cluster.get(f"/v1/agents/{company.rows['agent_configs']}",
                             headers=auth(company.member))  # fmt: skip
    by_node = await cluster_keys(cluster_url)
    homes = {}
    for company in companies:
        tag = f"t:{{{company.company_id}}}:"
        nodes = {node for node, keys in by_node.items() if any(k.startswith(tag) for k in keys)}
        assert len(nodes) == 1, (company.company_id, nodes)
        homes[company.company_id] = nodes.pop()
    assert len(set(homes.values())) > 1, "six companies on one node of three"


@pytest.mark.slow
@pytest.mark.skipif(THROUGH_CLUSTER, reason="already on the cluster")
def test_the_widget_agent_conversation_and_event_tests_pass_on_a_cluster() -> None:
    modules = [
        "tests/widget/test_widget_api.py",
        "tests/agents",
        "tests/conversations/test_conversations_api.py",
        # Live events on a cluster: streams, Pub/Sub across nodes, two API processes.
        "tests/events/test_member_streams.py",
        "tests/events/test_resume_and_commit.py",
        "tests/events/test_access.py",
        "tests/events/test_delivery.py::test_events_fan_out_between_two_api_processes",
    ]
    run_session(modules, SYNTERA_TEST_REDIS_CLUSTER="1")


async def test_a_fresh_cluster_client_takes_concurrent_limit_checks(
    cluster_settings: Settings, cluster_url: str
) -> None:
    """redis-py's asyncio cluster client fails when concurrent first calls initialise it
    together; connect_redis (run at API start-up) learns the slot map first."""
    client = create_redis(cluster_settings, cluster_url)
    await connect_redis(client)
    limiters = Limiters.from_settings(cluster_settings, client)
    try:
        await asyncio.gather(*(
            limiters.enforce(limiters.api_user, global_key("rate-user", f"u{n}"), "requests")
            for n in range(64)
        ))  # fmt: skip
    finally:
        await client.aclose()


async def test_a_command_that_times_out_fails_at_the_timeout_and_runs_at_most_once(
    cluster_settings: Settings, cluster_url: str
) -> None:
    """redis-py's cluster client retries a timed-out command by default, with backoff,
    where the single-node client is told not to: a request would wait on Redis beyond
    ``redis_timeout_s``, and a write that was only slow (a publish, a limit's INCR) would
    be applied again. Ours fails at the timeout, and the write is applied at most once
    (here never: the server drops the command of the connection the client closed)."""
    client = create_redis(cluster_settings, cluster_url)
    await connect_redis(client)
    key = global_key("test", uuid4().hex, "calls")
    timeout_s = cluster_settings.redis_timeout_s
    node = client.get_node_from_key(key)
    pauser = aioredis.Redis(host=node.host, port=node.port)
    try:
        # The key's node holds writes for longer than the client waits.
        await pauser.execute_command("CLIENT", "PAUSE", int(timeout_s * 1000) + 700, "WRITE")
        started = asyncio.get_running_loop().time()
        with pytest.raises(aioredis.RedisError):  # the timeout, as redis-py has it
            await client.incr(key)
        assert asyncio.get_running_loop().time() - started < timeout_s + 0.5
        await asyncio.sleep(timeout_s + 2)  # the pause is over; a retry would have run
        assert await client.get(key) in (None, b"1")
    finally:
        await pauser.execute_command("CLIENT", "UNPAUSE")
        await pauser.aclose()
        await client.delete(key)
        await client.aclose()
