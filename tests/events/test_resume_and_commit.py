"""Resuming a stream exactly where it stopped, and events only for committed changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from syntera.app import create_app
from syntera.config import Settings
from syntera.conversations import service
from syntera.conversations.schemas import MessageCreate
from syntera.conversations.store import ConversationStore
from syntera.db.mongo import create_mongo_client
from syntera.db.postgres import TenantConnection
from syntera.db.redis import create_redis
from syntera.embedded import StackUrls
from syntera.events.bus import Publisher, Retention
from syntera.tenancy import Principal
from syntera.unit_of_work import open_unit_of_work
from tests.api_fixtures import AuthHeaders, serving
from tests.events.test_member_streams import start
from tests.events_helpers import subscribe
from tests.factories import SeededCompany


async def post(http: httpx.AsyncClient, headers: dict[str, str], conversation_id: str, text: str):
    response = await http.post(
        f"/v1/conversations/{conversation_id}/messages",
        headers=headers,
        json={"sender_type": "user", "content": text},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_resume_replays_exactly_the_missed_events_in_order(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    conversation = await start(http, member, tenant.rows["agent_configs"])
    async with subscribe(http, "/v1/events", headers=member) as stream:
        await post(http, member, conversation["id"], "seen")
        seen = await stream.next()
    missed = [(await post(http, member, conversation["id"], f"missed {i}"))["id"] for i in range(3)]
    assert seen.id is not None
    for how in ({"headers": {**member, "Last-Event-ID": seen.id}},
                {"headers": member, "params": {"last_event_id": seen.id}}):  # fmt: skip
        async with subscribe(http, "/v1/events", **how) as resumed:  # type: ignore[arg-type]
            replayed = await resumed.events(len(missed))
            after = await post(http, member, conversation["id"], "live")
            live = await resumed.next()
            await resumed.nothing_within(0.3)
        assert [event.data["data"]["id"] for event in replayed] == missed
        assert live.data["data"]["id"] == after["id"]
        missed.append(after["id"])  # missed by the next resume from the same position


async def test_a_position_older_than_the_window_gets_reset_then_live_events(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    conversation = await start(http, member, tenant.rows["agent_configs"])
    async with subscribe(http, "/v1/events", headers={**member, "Last-Event-ID": "1-0"}) as stream:
        reset = await stream.next()
        await post(http, member, conversation["id"], "after the reset")
        live = await stream.next()
    assert reset.event == "reset"
    assert reset.id is None
    assert live.event == "message.created"


@pytest.fixture(scope="module")
def short_window_url(stream_settings: Settings, api_urls: StackUrls) -> Iterator[str]:
    """An API keeping only 100 events per company for resuming."""
    settings = stream_settings.model_copy(update={"events_retention_count": 100})
    with serving(create_app(settings, api_urls)) as url:
        yield url


async def test_a_position_trimmed_away_gets_reset_a_kept_one_replays(
    short_window_url: str, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    async with httpx.AsyncClient(base_url=short_window_url, timeout=15) as http:
        conversation = await start(http, member, tenant.rows["agent_configs"])
        async with subscribe(http, "/v1/events", headers=member) as stream:
            await post(http, member, conversation["id"], "first")
            first = await stream.next()
        history = [{"sender_type": "user", "content": f"old {i}"} for i in range(400)]
        imported = await http.post(
            f"/v1/conversations/{conversation['id']}/messages/import",
            headers=member,
            json={"messages": history},
        )
        assert imported.status_code == 201
        assert first.id is not None
        async with subscribe(
            http, "/v1/events", headers={**member, "Last-Event-ID": first.id}
        ) as stream:
            assert (await stream.next()).event == "reset"
        async with subscribe(http, "/v1/events", headers=member) as stream:
            await post(http, member, conversation["id"], "recent")
            recent = await stream.next()
        await post(http, member, conversation["id"], "after recent")
        assert recent.id is not None
        async with subscribe(
            http, "/v1/events", headers={**member, "Last-Event-ID": recent.id}
        ) as stream:
            replayed = await stream.next()
        assert replayed.data["data"]["content"] == "after recent"


async def test_refused_writes_emit_nothing(
    http: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    member = auth(tenant.member)
    conversation = await start(http, member, tenant.rows["agent_configs"])
    url = f"/v1/conversations/{conversation['id']}"
    async with subscribe(http, "/v1/events", headers=member) as stream:
        for refused in (
            await http.post(f"{url}/messages", headers=member, json={"sender_type": "robot"}),
            await http.post(
                "/v1/conversations",
                headers=member,
                json={"agent_id": str(tenant.rows["agent_configs"]), "contact_id": "0" * 32},
            ),
            await http.patch(url, headers=member, json={"tags": None}),
            await http.post(
                f"{url}/messages",
                headers=member,
                json={"sender_type": "user", "content": "x", "thread_id": "nope"},
            ),
        ):
            assert 400 <= refused.status_code < 500, refused.text
        await http.post(f"{url}/end", headers=member)
        ended = await stream.next()
        closed = await http.post(
            f"{url}/messages", headers=member, json={"sender_type": "user", "content": "late"}
        )
        assert closed.status_code == 409
        await stream.nothing_within(0.5)
    assert ended.event == "conversation.ended"


async def test_a_rolled_back_transaction_publishes_nothing(
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    api_pool: AsyncConnectionPool[TenantConnection],
    settings: Settings,
    api_urls: StackUrls,
) -> None:
    """The service queued its events; the transaction then failed: none is published."""
    member = auth(tenant.member)
    conversation = await start(http, member, tenant.rows["agent_configs"])
    redis = create_redis(settings, api_urls.redis_url)
    mongo = create_mongo_client(settings, api_urls.mongodb_uri)
    publisher = Publisher(redis, Retention(1000, 60), 1.0)
    store = ConversationStore(mongo[settings.mongodb_db])
    message = MessageCreate(sender_type="agent", content="never committed")
    try:
        async with subscribe(http, "/v1/events", headers=member) as stream:

            async def write_then_fail() -> None:
                async with open_unit_of_work(
                    api_pool, Principal.service(), company_id=tenant.company_id, events=publisher
                ) as tx:
                    await service.append(tx, store, conversation["id"], [message])
                    assert tx.after_commit  # the event waits for the commit
                    raise RuntimeError("the request failed after the write")

            with pytest.raises(RuntimeError):
                await write_then_fail()
            await stream.nothing_within(0.5)
            async with open_unit_of_work(
                api_pool, Principal.service(), company_id=tenant.company_id, events=publisher
            ) as tx:
                [stored] = await service.append(tx, store, conversation["id"], [message])
            committed = await stream.next()
        assert committed.data["data"]["id"] == stored.id
    finally:
        await redis.aclose()
        await mongo.close()


def test_retention_is_the_configured_window(stream_settings: Settings) -> None:
    assert dataclasses.astuple(
        Retention(stream_settings.events_retention_count, stream_settings.events_retention_s)
    ) == (10_000, 900)
