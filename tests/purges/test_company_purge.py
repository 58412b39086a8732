"""Deleting a company removes it from every store: MongoDB, the file storage, the vector
store and Redis, through a durable purge recorded with the delete."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from syntera.api.state import Stores
from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.embedded import StackUrls
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.purges.registry import stored_elsewhere
from syntera.purges.worker import STEP_DONE, PurgeWorker
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.conftest import StackDatabase
from tests.factories import SeededCompany
from tests.widget.helpers import open_chat

pytestmark = pytest.mark.unscoped_mongo  # the checks scan whole collections on purpose


@dataclass
class Footprint:
    """What a company left in each store outside PostgreSQL."""

    documents: int
    files: int
    keys: list[str]


async def fill(client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany) -> Any:
    """Data of the company in every store: a widget chat with messages (MongoDB, a widget
    session, cached agent, rate limits, an event stream in Redis) and an uploaded file."""
    member = auth(tenant.member)
    chat = await open_chat(client, member, tenant.rows["agent_configs"])
    for text in ("hello", "is it in stock?"):
        sent = await client.post(
            f"{chat.url}/messages", headers=chat.session, json={"content": text}
        )
        assert sent.status_code == 201
    assert (await client.get(f"{chat.url}/messages", headers=chat.session)).status_code == 200
    uploaded = await client.post(
        "/v1/kb/documents", headers=member, files={"file": ("faq.txt", b"Shipping: 2 days.")}
    )
    assert uploaded.status_code == 202, uploaded.text
    return chat


async def footprint(app: FastAPI, settings: Settings, company_id: UUID) -> Footprint:
    stores: Stores = app.state.stores
    database = stores.mongo[settings.mongodb_db]
    documents = 0
    for name in await database.list_collection_names():
        documents += await database[name].count_documents({"company_id": str(company_id)})
    files_root = settings.data_dir / "kb-files" / str(company_id)
    files = sum(1 for path in files_root.rglob("*") if path.is_file()) if files_root.exists() else 0
    keys = [
        key.decode() async for key in stores.redis.scan_iter(match=f"*{company_id}*", count=1000)
    ]
    return Footprint(documents, files, keys)


@pytest.fixture
def purger(
    app: FastAPI, api_pool: AsyncConnectionPool[TenantConnection], settings: Settings
) -> PurgeWorker:
    stores: Stores = app.state.stores
    return PurgeWorker(
        api_pool,
        stored_elsewhere(
            app.state.conversations, KnowledgeBase.from_settings(settings), stores.redis
        ),
    )


def purge_of(owner_conn: psycopg.Connection, company_id: UUID) -> dict[str, Any]:
    row = owner_conn.execute(
        "SELECT status, steps, attempts, key_digests FROM syntera.purges WHERE company_id = %s",
        (company_id,),
    ).fetchone()
    assert row is not None, "no purge was recorded"
    return dict(zip(("status", "steps", "attempts", "key_digests"), row, strict=True))


async def test_deleting_a_company_removes_it_from_every_store_and_no_other(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    settings: Settings,
    make_tenant: MakeTenant,
    owner_conn: psycopg.Connection,
    purger: PurgeWorker,
) -> None:
    leaving, staying = await make_tenant(), await make_tenant()
    chat = await fill(client, auth, leaving)
    await fill(client, auth, staying)
    kept_before = await footprint(app, settings, staying.company_id)
    before = await footprint(app, settings, leaving.company_id)
    assert before.documents >= 3
    assert before.files == 1
    assert before.keys

    deleted = await client.delete("/v1/companies/current", headers=auth(leaving.owner))
    assert deleted.status_code == 204
    # What the company issued stops at the commit, before any purge ran.
    refused = await client.get(f"{chat.url}/messages", headers=chat.session)
    assert refused.status_code == 401
    started = await client.post(
        "/v1/public/conversations", headers={"X-Api-Key": chat.session["X-Api-Key"]}
    )
    assert started.status_code == 401
    recorded = purge_of(owner_conn, leaving.company_id)
    assert recorded["status"] == "pending"
    assert len(recorded["key_digests"]) == 1

    while await purger.run_once():
        pass
    done = purge_of(owner_conn, leaving.company_id)
    assert done["status"] == "completed"
    assert done["steps"]["mongodb"]["messages"] == 2
    assert done["steps"]["mongodb"]["conversations"] == 1
    assert done["steps"]["files"] == {"files": 1}
    assert done["steps"]["redis"]["keys"] >= 3
    after = await footprint(app, settings, leaving.company_id)
    assert after == Footprint(0, 0, [])
    chunks = owner_conn.execute(
        "SELECT count(*) FROM public.knowledge_base_chunks WHERE company_id = %s",
        (leaving.company_id,),
    ).fetchone()
    assert chunks == (0,)
    kept_after = await footprint(app, settings, staying.company_id)
    assert (kept_after.documents, kept_after.files) == (kept_before.documents, kept_before.files)
    assert set(kept_before.keys) <= set(kept_after.keys)


async def test_a_purge_left_by_a_worker_that_stopped_is_taken_over(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    settings: Settings,
    make_tenant: MakeTenant,
    owner_conn: psycopg.Connection,
    purger: PurgeWorker,
) -> None:
    """A worker claims the purge, finishes one store and is gone (its lease runs out):
    the next worker takes the purge over, skips the finished store, completes it."""
    leaving = await make_tenant()
    await fill(client, auth, leaving)
    assert (
        await client.delete("/v1/companies/current", headers=auth(leaving.owner))
    ).status_code == 204
    claim = await purger.claim()
    assert claim is not None
    assert claim.company_id == leaving.company_id
    counts = await purger.stores.company["mongodb"](claim.company_id, claim.key_digests)
    await purger._record(claim, STEP_DONE, step="mongodb", counts=Jsonb(counts), lease_s=60)
    assert (await purger.claim()) is None  # still under the first worker's lease
    owner_conn.execute(
        "UPDATE syntera.purges SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (claim.id,),
    )
    assert await purger.run_once()
    done = purge_of(owner_conn, leaving.company_id)
    assert done["status"] == "completed"
    assert done["attempts"] == 2
    assert done["steps"]["mongodb"] == counts  # not redone
    assert await footprint(app, settings, leaving.company_id) == Footprint(0, 0, [])


async def test_a_rolled_back_delete_records_no_purge(
    owner_conn: psycopg.Connection, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()

    def delete_then_fail() -> None:
        with owner_conn.transaction():
            owner_conn.execute("DELETE FROM public.companies WHERE id = %s", (tenant.company_id,))
            raise RuntimeError("changed our mind")

    with pytest.raises(RuntimeError):
        delete_then_fail()
    assert owner_conn.execute(
        "SELECT count(*) FROM syntera.purges WHERE company_id = %s", (tenant.company_id,)
    ).fetchone() == (0,)


def test_maintenance_purges_lists_and_retries_failed_ones(
    stack: StackUrls, database: StackDatabase, owner_conn: psycopg.Connection
) -> None:
    purge_id = owner_conn.execute(
        "INSERT INTO syntera.purges (kind, company_id, status, attempts, last_error, steps)"
        " VALUES ('company', gen_random_uuid(), 'failed', 6, 'S3 refused', "
        ' \'{"mongodb": {"conversations": 3, "messages": 40}}\') RETURNING id'
    ).fetchone()[0]  # type: ignore[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(SYNTERA_DATABASE_URL=database.owner_url, COLUMNS="250")

    def syntera(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syntera", "maintenance", "purges", *args], env=env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    listed = syntera()
    assert listed.returncode == 0, listed.stderr
    assert str(purge_id) in listed.stdout
    assert "failed" in listed.stdout
    assert "S3 refused" in listed.stdout
    assert "messages 40" in listed.stdout
    retried = syntera("--retry", str(purge_id))
    assert retried.returncode == 0, retried.stderr
    assert owner_conn.execute(
        "SELECT status, attempts FROM syntera.purges WHERE id = %s", (purge_id,)
    ).fetchone() == ("pending", 0)
    again = syntera("--retry", str(purge_id))
    assert again.returncode == 1
    assert "no failed purge" in again.stderr
    assert syntera("--retry", "not-a-uuid").returncode == 2
    owner_conn.execute("DELETE FROM syntera.purges WHERE id = %s", (purge_id,))


@pytest.mark.slow
async def test_a_purge_worker_killed_mid_purge_is_taken_over(
    app: FastAPI,
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    settings: Settings,
    make_tenant: MakeTenant,
    owner_conn: psycopg.Connection,
    purger: PurgeWorker,
    database: StackDatabase,
    api_urls: StackUrls,
) -> None:
    """`syntera worker` is SIGKILLed while it purges a company with 30,000 messages; the
    purge stays running under the dead worker's lease, then another worker completes it."""
    leaving = await make_tenant()
    await fill(client, auth, leaving)
    stores: Stores = app.state.stores
    messages = stores.mongo[settings.mongodb_db]["messages"]
    filler = [{"company_id": str(leaving.company_id), "conversation_id": "filler", "n": i}
              for i in range(30_000)]  # fmt: skip
    for start in range(0, len(filler), 5000):
        await messages.insert_many(filler[start : start + 5000])
    assert (
        await client.delete("/v1/companies/current", headers=auth(leaving.owner))
    ).status_code == 204
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")},
        **api_urls.as_env(),
        "SYNTERA_DATABASE_URL": database.owner_url,
        "SYNTERA_DATA_DIR": str(settings.data_dir),
        "SYNTERA_PURGE_LEASE_S": "2",
        "SYNTERA_KB_PRELOAD_MODEL": "false",
    }
    process = subprocess.Popen(  # noqa: ASYNC220 (started once; the loop is idle meanwhile)
        [sys.executable, "-m", "syntera", "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(600):
            if purge_of(owner_conn, leaving.company_id)["status"] == "running":
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the worker never claimed the purge")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    left = purge_of(owner_conn, leaving.company_id)
    assert left["status"] == "running", "killed mid-purge, not finished"
    assert await purger.claim() is None, "not taken while the dead worker's lease runs"
    await asyncio.sleep(2.1)
    assert await purger.run_once()
    done = purge_of(owner_conn, leaving.company_id)
    assert done["status"] == "completed"
    assert done["attempts"] == 2
    assert await footprint(app, settings, leaving.company_id) == Footprint(0, 0, [])
