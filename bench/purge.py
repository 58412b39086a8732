"""Purging a deleted company, and what durable MongoDB writes cost.

    python -m bench.purge [--messages 100000] [--chunks 1000] [--contacts 200000]
                          [--archive-messages 1000000]
                          [--writes 2000]

On an embedded stack of its own: two companies with the same data — ``--messages``
messages over 1,000 conversations in MongoDB, ``--chunks`` knowledge-base chunks in
PostgreSQL, a file and Redis keys. One is deleted through the API's path (the delete,
whose trigger records the purge, then the purge worker); the other is removed with raw
``delete_many`` calls, the anchor measured in the same run. The second company is then
given ``--archive-messages`` messages and moved with ``syntera tenant export`` and
``import`` (each its own process, whose peak memory is reported).

Then ``--writes`` single-message inserts with the default write concern (``w:
majority, j: true``) against ``w: 1, j: false``, alternated in batches so that drift
affects both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import psycopg
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pymongo import AsyncMongoClient, MongoClient

from bench.common import bench_database, machine, report
from bench.rls import generate
from syntera.config import Settings
from syntera.conversations.store import ConversationStore
from syntera.db.migrations import migrate
from syntera.db.mongo import create_mongo_client
from syntera.db.postgres import create_api_pool
from syntera.db.redis import create_redis, tenant_key
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.ops.tenant_archive import check_archive
from syntera.purges.registry import stored_elsewhere
from syntera.purges.worker import PurgeWorker

CONVERSATIONS = 1000

CHUNKS = """
WITH document AS (
  INSERT INTO public.knowledge_base_documents (company_id, name, file_path, status)
  VALUES (%(company)s, 'handbook', %(company)s || '/handbook.txt', 'completed')
  RETURNING id
)
INSERT INTO public.knowledge_base_chunks (company_id, document_id, chunk_index, content, embedding)
SELECT %(company)s, document.id, g, 'chunk ' || g,
       (SELECT array_agg(random())::vector(384) FROM generate_series(1, 384))
FROM document, generate_series(0, %(chunks)s - 1) g
"""


async def seed(database: Any, redis: Any, company: uuid.UUID, messages: int) -> None:
    conversations = [ObjectId() for _ in range(CONVERSATIONS)]
    await database["conversations"].insert_many(
        [{"company_id": str(company), "_id": oid, "status": "ended"} for oid in conversations]
    )
    batch = []
    for i in range(messages):
        conversation = str(conversations[i % CONVERSATIONS])
        batch.append({"company_id": str(company), "conversation_id": conversation,
                      "content": f"message {i}", "sender_type": "user"})  # fmt: skip
        if len(batch) == 5000:
            await database["messages"].insert_many(batch)
            batch = []
    if batch:
        await database["messages"].insert_many(batch)
    for i in range(200):
        await redis.set(tenant_key(company, "bench", str(i)), "x")


async def purge_and_anchor(args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]]]:
    with bench_database(services=("postgres", "mongodb", "redis")) as db:
        generate(db, contacts=args.contacts, companies=2)
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            leaving, anchor = (row[0] for row in conn.execute(
                "SELECT id FROM public.companies ORDER BY id"
            ))  # fmt: skip
            for company in (leaving, anchor):
                conn.execute(CHUNKS, {"company": company, "chunks": args.chunks})
        settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="syntera-bench-purge-")))
        urls = db.api_stack()
        mongo = create_mongo_client(settings, urls.mongodb_uri)
        redis = create_redis(settings.model_copy(update={"redis_timeout_s": 10.0}), urls.redis_url)
        database = mongo[settings.mongodb_db]
        for company in (leaving, anchor):
            await seed(database, redis, company, args.messages)

        started = time.perf_counter()
        with psycopg.connect(db.owner_url, autocommit=True) as conn:
            conn.execute("DELETE FROM public.companies WHERE id = %s", (leaving,))
        deleted_ms = (time.perf_counter() - started) * 1000
        async with create_api_pool(settings, urls.api_database_url) as pool:
            elsewhere = stored_elsewhere(
                ConversationStore(database), KnowledgeBase.from_settings(settings), redis
            )
            worker = PurgeWorker(pool, elsewhere)
            started = time.perf_counter()
            while await worker.run_once():
                pass
            purge_s = time.perf_counter() - started

        started = time.perf_counter()
        await database["messages"].delete_many({"company_id": str(anchor)})
        await database["conversations"].delete_many({"company_id": str(anchor)})
        keys = [key async for key in redis.scan_iter(match=tenant_key(anchor, "*"))]
        await redis.unlink(*keys)
        raw_s = time.perf_counter() - started

        # The company that moves: the anchor's rows, with --archive-messages messages.
        started = time.perf_counter()
        await seed(database, redis, anchor, args.archive_messages)
        print(f"seeded {args.archive_messages:,} messages in {time.perf_counter() - started:.0f}s")
        await redis.aclose()
        await mongo.close()
        archive_rows = move_company(db, settings, anchor)
    purge_rows = [
        ["PostgreSQL: DELETE the company (cascade, incl. "
         f"{args.chunks:,} chunks and {args.contacts // 2:,} contacts; records the purge)",
         f"{deleted_ms:.0f} ms", "-", "-"],
        [f"purge worker: {args.messages:,} messages, {CONVERSATIONS:,} conversations, "
         "200 Redis keys, files", f"{purge_s:.2f} s", f"{args.messages / purge_s:,.0f} msg/s",
         f"{purge_s / raw_s:.2f}x"],
        ["anchor: raw delete_many + SCAN/UNLINK of the same data", f"{raw_s:.2f} s",
         f"{args.messages / raw_s:,.0f} msg/s", "1.00x"],
    ]  # fmt: skip
    return purge_rows + archive_rows, await write_concern_rows(args)


@dataclass(frozen=True)
class Run:
    """One ``syntera tenant`` process: wall time, peak memory, the seconds its summary
    gives for the PostgreSQL rows and the MongoDB documents."""

    seconds: float
    peak_mb: float
    rows_s: float
    documents_s: float


def tenant_cli(env: dict[str, str], *args: str) -> Run:
    """Run ``syntera tenant ARGS`` as its own process."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        command = [sys.executable, "-m", "syntera", "tenant", *args]
        child = subprocess.Popen(
            command, env={**base, **env, "COLUMNS": "300"}, stdout=stdout, stderr=stderr
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            stderr.seek(0)
            raise SystemExit(f"syntera tenant {args[0]} failed: {stderr.read().decode()[-2000:]}")
        stdout.seek(0)
        summary = stdout.read().decode()
    took = dict(re.findall(r"(rows|documents) in ([\d.]+) s", summary))
    return Run(time.perf_counter() - started, usage.ru_maxrss / 1024,
               float(took.get("rows", "nan")), float(took.get("documents", "nan")))  # fmt: skip


def move_company(db: Any, settings: Settings, company: uuid.UUID) -> list[list[str]]:
    """``syntera tenant export`` of the company, then ``import`` into a second database
    and MongoDB database of the same stack, each as its own process; the anchors are a
    raw read of the same MongoDB documents and a raw copy of them (find + insert_many of
    the stored BSON), in this process."""
    folder = Path(tempfile.mkdtemp(prefix="syntera-bench-archive-"))
    archive = folder / "company.tar.gz"
    source = {"SYNTERA_DATABASE_URL": db.owner_url, "SYNTERA_MONGODB_URI": db.stack.mongodb_uri,
              "SYNTERA_MONGODB_DB": settings.mongodb_db,
              "SYNTERA_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    exported = tenant_cli(source, "export", "--company", str(company), "--output", str(archive))
    manifest = check_archive(archive)
    name = f"bench_import_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db.stack.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = make_conninfo(**{**conninfo_to_dict(db.stack.database_url), "dbname": name})
    migrate(target)
    there = {**source, "SYNTERA_DATABASE_URL": target, "SYNTERA_MONGODB_DB": "imported",
             "SYNTERA_DATA_DIR": str(folder / "target")}  # fmt: skip
    imported = tenant_cli(there, "import", "--input", str(archive))
    with psycopg.connect(db.stack.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    read_s, copy_s = raw_mongo_anchors(db.stack.mongodb_uri, settings.mongodb_db, company)
    rows, documents = manifest.total("postgres/"), manifest.total("mongodb/")
    size_mb = archive.stat().st_size / 1e6
    return [
        [f"tenant export: {rows:,} rows, {documents:,} documents ({size_mb:.0f} MB archive), "
         "whole process", f"{exported.seconds:.1f} s", "-", "-", f"{exported.peak_mb:.0f} MB"],
        ["  export: the PostgreSQL rows", f"{exported.rows_s:.1f} s",
         f"{rows / exported.rows_s:,.0f} rows/s", "-", "-"],
        ["  export: the MongoDB documents", f"{exported.documents_s:.1f} s",
         f"{documents / exported.documents_s:,.0f} docs/s",
         f"{exported.documents_s / read_s:.2f}x", "-"],
        ["  anchor: raw find() of the same documents", f"{read_s:.1f} s",
         f"{documents / read_s:,.0f} docs/s", "1.00x", "-"],
        ["tenant import into a fresh database (checked first, one transaction, counts "
         "verified), whole process", f"{imported.seconds:.1f} s", "-", "-",
         f"{imported.peak_mb:.0f} MB"],
        ["  import: the PostgreSQL rows", f"{imported.rows_s:.1f} s",
         f"{rows / imported.rows_s:,.0f} rows/s", "-", "-"],
        ["  import: the MongoDB documents", f"{imported.documents_s:.1f} s",
         f"{documents / imported.documents_s:,.0f} docs/s",
         f"{imported.documents_s / copy_s:.2f}x", "-"],
        ["  anchor: raw copy of the same documents (find + insert_many)", f"{copy_s:.1f} s",
         f"{documents / copy_s:,.0f} docs/s", "1.00x", "-"],
    ]  # fmt: skip


def raw_mongo_anchors(uri: str, db_name: str, company: uuid.UUID) -> tuple[float, float]:
    client: MongoClient[RawBSONDocument] = MongoClient(uri, document_class=RawBSONDocument)
    with client:
        source, copy = client[db_name], client["bench_raw_copy"]
        selector = {"company_id": str(company)}
        started = time.perf_counter()
        for name in ("conversations", "messages"):
            for _ in source[name].find(selector, batch_size=5000):
                pass
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        for name in ("conversations", "messages"):
            found = source[name].find(selector, batch_size=5000)
            while batch := list(islice(found, 5000)):
                copy[name].insert_many(batch)
        copy_s = time.perf_counter() - started
        client.drop_database("bench_raw_copy")
    return read_s, copy_s


async def write_concern_rows(args: argparse.Namespace) -> list[list[str]]:
    with bench_database(services=("postgres", "mongodb")) as db:
        uri = db.stack.mongodb_uri
        durable: AsyncMongoClient[Any] = AsyncMongoClient(uri, w="majority", journal=True)
        fast: AsyncMongoClient[Any] = AsyncMongoClient(uri, w=1, journal=False)
        spent = {"durable": 0.0, "fast": 0.0}
        batch = 100
        for round_ in range(args.writes // batch):
            for name, client in (("durable", durable), ("fast", fast))[:: 1 if round_ % 2 else -1]:
                collection = client["bench"][f"messages_{name}"]
                started = time.perf_counter()
                for i in range(batch):
                    await collection.insert_one({"company_id": "c", "n": i, "content": "hello"})
                spent[name] += time.perf_counter() - started
        await durable.close()
        await fast.close()
    rate = {name: args.writes / seconds for name, seconds in spent.items()}
    return [
        ["insert_one, w: majority, j: true (the default)", f"{rate['durable']:,.0f}/s",
         f"{rate['durable'] / rate['fast']:.2f}x"],
        ["anchor: insert_one, w: 1, j: false", f"{rate['fast']:,.0f}/s", "1.00x"],
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--contacts", type=int, default=200_000, help="over the two companies")
    parser.add_argument("--archive-messages", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=2000)
    args = parser.parse_args()
    purge_rows, concern_rows = asyncio.run(purge_and_anchor(args))
    stack = "embedded PostgreSQL, MongoDB-wire (SecantusDB), Valkey on the same cores"
    report("company_purge", f"{machine()}; {stack}",
           ["step", "time", "rate", "vs anchor", "peak memory"],
           [row + ["-"] * (5 - len(row)) for row in purge_rows])  # fmt: skip
    conditions = f"{args.writes:,} single inserts each, alternated in batches of 100"
    report("write_concern", f"{machine()}; {conditions}; SecantusDB",
           ["write concern", "rate", "vs w: 1"], concern_rows)  # fmt: skip


if __name__ == "__main__":
    main()
