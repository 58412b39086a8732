"""Backup and restore at scale.

    python -m bench.backup [--contacts 1000000] [--messages 1000000]

Generates contacts into PostgreSQL and messages into MongoDB on a throw-away embedded
stack, backs both up with ``syntera.ops.backup.backup``, restores the archive into a
second throw-away stack, and reports the time of each and the archive's size.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from bson import ObjectId
from psycopg.conninfo import make_conninfo
from pymongo import MongoClient

from bench.common import bench_database, machine, report
from bench.rls import generate
from syntera.conversations.store import now
from syntera.embedded import MONGODB, POSTGRES, EmbeddedStack
from syntera.ops.backup import Targets, backup, restore

BATCH = 10_000


def fill_messages(uri: str, database: str, count: int) -> None:
    with MongoClient[dict[str, object]](uri) as client:
        messages = client[database]["messages"]
        company = str(uuid.uuid4())
        conversations = [str(ObjectId()) for _ in range(10_000)]
        for start in range(0, count, BATCH):
            messages.insert_many(
                [
                    {"company_id": company, "conversation_id": conversations[i % 10_000],
                     "sender_type": "user", "role": "user", "content": f"message {i} " * 4,
                     "metadata": {"reactions": []}, "created_at": now()}
                    for i in range(start, min(start + BATCH, count))
                ],
                ordered=False,
            )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()
    mongo_db = "bench_backup"
    with bench_database(services=("mongodb",)) as db, tempfile.TemporaryDirectory() as tmp:
        generate(db, args.contacts, 1000)
        started = time.perf_counter()
        fill_messages(db.stack.mongodb_uri, mongo_db, args.messages)
        print(f"generated {args.messages:,} messages in {time.perf_counter() - started:.0f}s")
        archive = Path(tmp) / "backup.tar.gz"
        started = time.perf_counter()
        manifest = backup(Targets(db.owner_url, db.stack.mongodb_uri, mongo_db), archive)
        backup_s = time.perf_counter() - started

        target_dir = Path(tempfile.mkdtemp(prefix="syntera-bench-restore-", dir="/tmp"))
        target_stack = EmbeddedStack(target_dir)
        try:
            urls = target_stack.start((POSTGRES, MONGODB))
            with psycopg.connect(urls.database_url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE restored")
            target = Targets(
                make_conninfo(urls.database_url, dbname="restored"), urls.mongodb_uri, mongo_db
            )
            started = time.perf_counter()
            restore(target, archive)
            restore_s = time.perf_counter() - started
        finally:
            target_stack.stop()
            shutil.rmtree(target_dir, ignore_errors=True)

    rows = sum(manifest["postgres"]["rows"].values())
    documents = sum(manifest["mongodb"].values())
    report(
        "backup_restore",
        f"{machine()}; {args.contacts:,} contacts in 1,000 companies ({rows:,} rows in all) "
        f"and {documents:,} messages; embedded PostgreSQL 18 and SecantusDB; the restore "
        f"goes to a second embedded stack on the same machine and checks every count",
        ["step", "seconds", "archive bytes"],
        [
            ["backup (pg_dump custom + BSON export + manifest, tar.gz)", f"{backup_s:.1f}",
             f"{manifest['bytes']:,}"],
            ["restore (migrate, pg_restore --data-only, BSON import + indexes, verify)",
             f"{restore_s:.1f}", ""],
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
