"""Operator tools: database statistics, explain as a user, metrics, slow statements and
retention, against the embedded servers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pymongo
import pytest
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.db.slow import TimedCursor
from syntera.embedded import StackUrls
from syntera.ops.retention import (
    DELETE_FINISHED_FREE_REPLIES,
    DELETE_FINISHED_INSIGHT_JOBS,
    DELETE_FINISHED_PAID_REPLIES,
    purge_archived_conversations,
    purge_events,
    purge_finished_work,
)
from syntera.ops.stats import explain_as_user, mongo_stats, postgres_stats
from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.conftest import StackDatabase


def test_postgres_stats_name_index_use_sizes_statements_and_connections(
    database: StackDatabase, owner_conn: psycopg.Connection
) -> None:
    owner_conn.execute("SELECT count(*) FROM contacts WHERE company_id = gen_random_uuid()")
    stats = postgres_stats(database.owner_url)
    indexes = {row["index"]: row for row in stats["indexes"]}
    assert "idx_contacts_company_created" in indexes
    assert {"scans", "tuples_read", "tuples_fetched", "bytes", "never_used"} <= set(
        indexes["idx_contacts_company_created"]
    )
    assert any(row["never_used"] for row in stats["indexes"])
    tables = {row["table"]: row for row in stats["tables"]}
    assert tables["contacts"]["total_bytes"] > 0
    assert stats["slowest_statements"], stats.get("slowest_statements_unavailable")
    assert {"statement", "calls", "mean_ms"} <= set(stats["slowest_statements"][0])
    assert any(row["total"] >= 1 for row in stats["connections"])


def test_mongo_stats_name_collections_connections_and_the_profiler(stack: StackUrls) -> None:
    name = f"stats_{uuid.uuid4().hex[:8]}"
    with pymongo.MongoClient(stack.mongodb_uri) as client:
        client[name]["messages"].insert_many(
            [{"company_id": "c", "conversation_id": "x", "n": i} for i in range(50)]
        )
        client[name].command("profile", 1, slowms=0)
        client[name]["messages"].find_one({"company_id": "c", "conversation_id": "x", "n": 7})
    stats = mongo_stats(stack.mongodb_uri, name)
    [messages] = [c for c in stats["collections"] if c["collection"] == "messages"]
    assert messages["documents"] == 50
    assert messages["bytes"] > 0
    assert "_id_" in messages["indexes"]
    assert stats["connections"]["current"] >= 1
    assert stats["profiler"]["level"] == 1


async def test_explain_as_a_user_shows_the_row_level_security_filter(
    database: StackDatabase,
    owner_conn: psycopg.Connection,
    make_tenant: MakeTenant,
) -> None:
    tenant = await make_tenant()
    row = owner_conn.execute(
        "SELECT email FROM auth.users WHERE id = %s", (tenant.member.user_id,)
    ).fetchone()
    assert row is not None
    plan = explain_as_user(database.owner_url, "SELECT * FROM contacts", row[0])
    assert "InitPlan" in plan  # the policy's (SELECT private.current_company_id())
    assert "company_id" in plan
    assert "rows=1 " in plan.replace("rows=1)", "rows=1 ")  # one contact: the tenant's own
    as_owner = explain_as_user(database.owner_url, "SELECT * FROM contacts", None)
    assert "InitPlan" not in as_owner
    with pytest.raises(LookupError):
        explain_as_user(database.owner_url, "SELECT 1", "nobody@example.com")


def test_explain_changes_nothing(database: StackDatabase, owner_conn: psycopg.Connection) -> None:
    before = owner_conn.execute("SELECT count(*) FROM companies").fetchone()
    explain_as_user(database.owner_url, "DELETE FROM companies", None)
    assert owner_conn.execute("SELECT count(*) FROM companies").fetchone() == before


@pytest.mark.slow
def test_syntera_db_stats_and_explain_commands(stack: StackUrls, database: StackDatabase) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(SYNTERA_DATABASE_URL=database.owner_url, SYNTERA_MONGODB_URI=stack.mongodb_uri,
               COLUMNS="200")  # fmt: skip

    def syntera(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "syntera", *args], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    machine = json.loads(syntera("db", "stats", "--json"))
    assert {"indexes", "tables", "slowest_statements", "connections"} <= set(machine["postgres"])
    assert "collections" in machine["mongodb"]
    human = syntera("db", "stats")
    assert "PostgreSQL indexes" in human
    assert "never used" in human
    assert "Seq Scan" in syntera("db", "explain", "SELECT * FROM companies")


async def test_metrics_name_requests_pools_cache_and_fallbacks(
    client: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    await client.get(f"/v1/agents/{tenant.rows['agent_configs']}", headers=auth(tenant.member))
    await client.get(f"/v1/contacts/{uuid.uuid4()}", headers=auth(tenant.member))
    text = (await client.get("/metrics")).text
    assert (
        'syntera_http_requests_total{method="GET",route="/v1/contacts/{row_id}",status="404"}'
        in text
    )
    assert (
        'syntera_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/agents/{row_id}"}'
        in text
    )
    assert 'syntera_postgres_pool_connections{state="in_use"}' in text
    assert 'syntera_postgres_pool_connections{state="max"}' in text
    assert 'syntera_mongodb_pool_connections{state="open"}' in text
    assert 'syntera_cache_requests_total{cache="agent",result="miss"}' in text
    assert "syntera_redis_fallbacks" in text
    assert "syntera_slow_statements_total" in text


async def test_admin_db_is_for_the_service_key_only(
    client: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
) -> None:  # fmt: skip
    tenant = await make_tenant()
    assert (await client.get("/v1/admin/db", headers=auth(tenant.owner))).status_code == 403
    response = await client.get("/v1/admin/db", headers=auth(Principal.service()))
    assert response.status_code == 200
    body = response.json()
    assert {"in_use", "idle", "waiting", "max"} <= set(body["postgres"]["pool"])
    assert "collections" in body["mongodb"]


async def test_slow_statements_are_logged_as_json_without_values(
    api_pool: AsyncConnectionPool[TenantConnection], caplog: pytest.LogCaptureFixture
) -> None:
    previous = TimedCursor.threshold_ms
    TimedCursor.threshold_ms = 50
    try:
        with caplog.at_level(logging.WARNING, logger="syntera.slow_statements"):
            async with api_pool.connection() as conn:
                await conn.execute("SELECT pg_sleep(%(seconds)s), %(secret)s::text",
                                   {"seconds": 0.08, "secret": "do-not-log"})  # fmt: skip
    finally:
        TimedCursor.threshold_ms = previous
    [record] = [r for r in caplog.records if r.name == "syntera.slow_statements"]
    line = json.loads(record.getMessage())
    assert line["event"] == "slow_statement"
    assert line["duration_ms"] >= 80
    assert "%(secret)s" in line["statement"]
    assert "do-not-log" not in record.getMessage()


async def test_retention_deletes_only_what_is_older_than_the_cut_off(
    database: StackDatabase,
    stack: StackUrls,
    settings: Settings,
    owner_conn: psycopg.Connection,
    make_tenant: MakeTenant,
) -> None:
    tenant = await make_tenant()
    old, recent = datetime.now(UTC) - timedelta(days=400), datetime.now(UTC) - timedelta(days=5)
    for at in (old, old, recent):
        owner_conn.execute(
            "INSERT INTO analytics_events (company_id, event_type, created_at)"
            " VALUES (%s, 'retention.test', %s)", (tenant.company_id, at),
        )  # fmt: skip
    assert purge_events(database.owner_url, timedelta(days=365), batch=1) >= 2
    left = owner_conn.execute(
        "SELECT count(*) FROM analytics_events WHERE event_type = 'retention.test'"
        " AND company_id = %s", (tenant.company_id,),
    ).fetchone()  # fmt: skip
    assert left == (1,)

    mongo_settings = settings.model_copy(update={"mongodb_db": f"ret_{uuid.uuid4().hex[:8]}"})
    company = str(tenant.company_id)
    with pymongo.MongoClient(stack.mongodb_uri, tz_aware=True) as client:
        db = client[mongo_settings.mongodb_db]
        ids = db["conversations"].insert_many([
            {"company_id": company, "status": "archived", "updated_at": old},
            {"company_id": company, "status": "archived", "updated_at": recent},
            {"company_id": company, "status": "active", "updated_at": old},
        ]).inserted_ids  # fmt: skip
        db["messages"].insert_many(
            [{"company_id": company, "conversation_id": str(i), "n": n}
             for i in ids for n in range(3)]
        )  # fmt: skip
    reported: list[str] = []
    purged = await purge_archived_conversations(
        database.owner_url, mongo_settings, stack.mongodb_uri, timedelta(days=90),
        reported.append,
    )  # fmt: skip
    assert purged == {tenant.company_id: (1, 3)}
    assert str(tenant.company_id) in reported[0]
    with pymongo.MongoClient(stack.mongodb_uri, tz_aware=True) as client:
        db = client[mongo_settings.mongodb_db]
        remaining = {d["_id"] for d in db["conversations"].find({"company_id": company})}
        assert remaining == {ids[1], ids[2]}
        assert db["messages"].count_documents({"company_id": company}) == 6


async def test_retention_deletes_finished_replies_and_insight_jobs_but_this_months_tokens(
    database: StackDatabase, owner_conn: psycopg.Connection, make_tenant: MakeTenant
) -> None:
    tenant = await make_tenant()
    company = tenant.company_id
    month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    now = month + timedelta(days=20)  # a week's retention: the cut-off is the 13th
    replies = {
        # name: status, tokens used, finished (None: unfinished, created long ago)
        "free, old": ("done", 0, month + timedelta(days=1)),
        "failed, old": ("failed", 0, month + timedelta(days=2)),
        "free, recent": ("done", 0, now - timedelta(days=1)),
        "paid, this month": ("done", 50, month + timedelta(days=1)),
        "paid, last month": ("done", 50, month - timedelta(days=1)),
        "running": ("running", 0, None),
        "pending": ("pending", 0, None),
    }
    for name, (status, tokens, finished) in replies.items():
        owner_conn.execute(
            "INSERT INTO syntera.agent_replies (company_id, conversation_id, agent_id,"
            " last_message_id, status, tokens_used, finished_at, created_at)"
            " VALUES (%s, %s, gen_random_uuid(), 'm', %s, %s, %s, %s)",
            (company, name, status, tokens, finished, month - timedelta(days=60)),
        )  # fmt: skip
    jobs = {
        "done, old": ("done", month + timedelta(days=1)),
        "failed, old": ("failed", month + timedelta(days=1)),
        "done, recent": ("done", now - timedelta(days=1)),
        "pending": ("pending", None),
    }
    for name, (status, finished) in jobs.items():
        owner_conn.execute(
            "INSERT INTO syntera.insight_jobs (company_id, kind, conversation_id, status,"
            " finished_at, created_at) VALUES (%s, 'summarize', %s, %s, %s, %s)",
            (company, name, status, finished, month - timedelta(days=60)),
        )  # fmt: skip

    deleted = purge_finished_work(database.owner_url, timedelta(days=7), batch=1, now=now)

    assert deleted[0] >= 3
    assert deleted[1] >= 2
    left_replies = owner_conn.execute(
        "SELECT conversation_id FROM syntera.agent_replies WHERE company_id = %s", (company,)
    ).fetchall()
    assert {row[0] for row in left_replies} == {
        "free, recent", "paid, this month", "running", "pending"
    }  # fmt: skip
    left_jobs = owner_conn.execute(
        "SELECT conversation_id FROM syntera.insight_jobs WHERE company_id = %s", (company,)
    ).fetchall()
    assert {row[0] for row in left_jobs} == {"done, recent", "pending"}


def test_retention_deletes_finished_work_through_its_indexes(
    owner_conn: psycopg.Connection,
) -> None:
    owner_conn.execute("SET enable_seqscan = off")
    try:
        for statement, index in (
            (DELETE_FINISHED_FREE_REPLIES, "agent_replies_finished_free"),
            # Either index by finish time serves these two (026's, led by company_id,
            # or 034's); which one the planner takes depends on the tables' statistics.
            (DELETE_FINISHED_PAID_REPLIES, "agent_replies_finished"),
            (DELETE_FINISHED_INSIGHT_JOBS, "insight_jobs_finished"),
        ):
            plan = owner_conn.execute(
                f"EXPLAIN {statement}", {"cutoff": datetime.now(UTC), "batch": 10}
            ).fetchall()
            assert index in "\n".join(row[0] for row in plan), plan
    finally:
        owner_conn.execute("RESET enable_seqscan")
