"""Acknowledged means durable: messages the API answered 201 for survive a SIGKILL of
each store right after, once the store is back."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from bson import ObjectId
from pymongo import MongoClient

from syntera.app import create_app
from syntera.config import Settings
from syntera.db.migrations import migrate
from syntera.db.postgres import create_api_pool
from syntera.embedded import EmbeddedStack
from tests.api_fixtures import AuthHeaders, serving
from tests.conftest import create_database
from tests.factories import create_tenant

pytestmark = [pytest.mark.slow, pytest.mark.unscoped_mongo]


async def post_while(
    http: httpx.AsyncClient, headers: dict[str, str], conversation: str, stop: asyncio.Event
) -> list[str]:
    """Post messages, eight at a time, until ``stop``: the ids answered 201."""
    acknowledged: list[str] = []

    async def poster(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                answer = await http.post(
                    f"/v1/conversations/{conversation}/messages", headers=headers,
                    json={"sender_type": "user", "content": f"poster {n} message {i}"},
                )  # fmt: skip
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
                continue
            if answer.status_code == 201:
                acknowledged.append(answer.json()["id"])
            else:
                await asyncio.sleep(0.05)

    await asyncio.gather(*(poster(n) for n in range(8)))
    return acknowledged


async def test_no_acknowledged_message_is_lost_when_a_store_is_killed(
    settings: Settings, auth: AuthHeaders, tmp_path: Path
) -> None:
    stack = EmbeddedStack(tmp_path / "stack")
    urls = stack.start()
    try:
        database = create_database(urls, "kills")
        migrate(database.owner_url)
        local = settings.model_copy(update={"data_dir": tmp_path / "stack",
                                            "rate_limits_enabled": False})  # fmt: skip
        with psycopg.connect(database.owner_url, autocommit=True) as owner_conn:
            async with create_api_pool(local, database.api_url) as pool:
                tenant = await create_tenant(pool, owner_conn)
        app_urls = dataclasses.replace(
            urls, database_url=database.owner_url, api_database_url=database.api_url
        )
        headers = auth(tenant.member)
        lost: dict[str, int] = {}
        counted: dict[str, int] = {}
        with serving(create_app(local, app_urls)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=10) as http:
                started = await http.post(
                    "/v1/conversations", headers=headers,
                    json={"agent_id": str(tenant.rows["agent_configs"])},
                )  # fmt: skip
                conversation = started.json()["id"]
                for victim in ("mongodb", "postgres", "redis"):
                    stop = asyncio.Event()
                    posting = asyncio.create_task(post_while(http, headers, conversation, stop))
                    await asyncio.sleep(1.0)
                    pid = next(s.pid for s in stack.status() if s.name == victim)
                    assert pid is not None
                    os.kill(pid, signal.SIGKILL)
                    await asyncio.sleep(0.5)
                    stop.set()
                    acknowledged = await posting
                    stack.start()  # the killed server comes back, with its data
                    for _ in range(200):
                        if (await http.get("/readyz")).status_code == 200:
                            break
                        await asyncio.sleep(0.1)
                    counted[victim] = len(acknowledged)
                    lost[victim] = missing(urls.mongodb_uri, local, database.owner_url,
                                           tenant.company_id, acknowledged)  # fmt: skip
        print(f"acknowledged per killed store: {counted}; lost: {lost}")
        assert all(counted[victim] > 0 for victim in counted), counted
        assert lost == dict.fromkeys(lost, 0), (lost, counted)
    finally:
        stack.stop()


def missing(
    mongodb_uri: str, settings: Settings, owner_url: str, company: Any, ids: list[str]
) -> int:
    """How many acknowledged messages are not in MongoDB, or lack their analytics event."""
    client: MongoClient[Any] = MongoClient(mongodb_uri)
    try:
        found = client[settings.mongodb_db]["messages"].count_documents(
            {"company_id": str(company), "_id": {"$in": [ObjectId(i) for i in ids]}}
        )
    finally:
        client.close()
    with psycopg.connect(owner_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM public.analytics_events WHERE company_id = %s"
            " AND event_type = 'message.received' AND properties ->> 'message_id' = ANY(%s)",
            (company, ids),
        ).fetchone()
    events = row[0] if row else 0
    return (len(ids) - found) + (len(ids) - events)
