"""Backup of both stores and restore into a second embedded stack."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymongo
import pytest
from psycopg.conninfo import make_conninfo

from syntera.embedded import MONGODB, POSTGRES, EmbeddedStack, StackUrls
from syntera.ops.backup import BackupError, Targets, backup, restore
from tests.api_fixtures import MakeTenant
from tests.conftest import StackDatabase

# A backup reads every company's documents: that is its job.
pytestmark = pytest.mark.unscoped_mongo("backups copy every company")


@pytest.fixture(scope="module")
def second_stack() -> Iterator[StackUrls]:
    """Another PostgreSQL and MongoDB-wire server, empty: the restore target."""
    path = Path(tempfile.mkdtemp(prefix="syntera-restore-", dir="/tmp"))
    stack = EmbeddedStack(path)
    yield stack.start((POSTGRES, MONGODB))
    stack.stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
async def test_backup_then_restore_gives_identical_counts_and_rows(
    stack: StackUrls,
    database: StackDatabase,
    owner_conn: psycopg.Connection,
    second_stack: StackUrls,
    tmp_path: Path,
    make_tenant: MakeTenant,
) -> None:
    tenant = await make_tenant()
    mongo_db = f"backup_{uuid.uuid4().hex[:8]}"
    with pymongo.MongoClient(stack.mongodb_uri, tz_aware=True) as client:
        client[mongo_db]["conversations"].insert_many(
            [{"company_id": str(tenant.company_id), "n": i, "tags": ["x"]} for i in range(2500)]
        )
        client[mongo_db]["conversations"].create_index([("company_id", 1), ("n", -1)], name="cn")
        original = client[mongo_db]["conversations"].find_one({"n": 1234})

    archive = tmp_path / "backup.tar.gz"
    steps: list[str] = []
    manifest = backup(
        Targets(database.owner_url, stack.mongodb_uri, mongo_db),
        archive,
        lambda step, done, total: steps.append(step),
    )
    assert manifest["mongodb"]["conversations"] == 2500
    assert manifest["postgres"]["rows"]["public.contacts"] >= 1
    assert {"dumping PostgreSQL", "exporting conversations"} <= set(steps)
    with tarfile.open(archive) as opened:
        names = set(opened.getnames())
    assert {"./manifest.json", "./postgres.dump", "./mongo/conversations.bson"} <= names

    target_db = f"restored_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(second_stack.database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{target_db}"')
    target_url = make_conninfo(second_stack.database_url, dbname=target_db)
    target = Targets(target_url, second_stack.mongodb_uri, mongo_db)
    found = restore(target, archive)
    assert found["postgres"] == manifest["postgres"]["rows"]
    assert found["mongodb"] == {"conversations": 2500}

    contact_id = tenant.rows["contacts"]
    with psycopg.connect(target_url) as restored:
        row = restored.execute(
            "SELECT company_id, email, tags FROM contacts WHERE id = %s", (contact_id,)
        ).fetchone()
        members = restored.execute(
            "SELECT count(*) FROM users WHERE company_id = %s", (tenant.company_id,)
        ).fetchone()
    expected = owner_conn.execute(
        "SELECT company_id, email, tags FROM contacts WHERE id = %s", (contact_id,)
    ).fetchone()
    assert row == expected
    assert members == (3,)  # not doubled by the membership triggers
    with pymongo.MongoClient(second_stack.mongodb_uri, tz_aware=True) as client:
        assert client[mongo_db]["conversations"].find_one({"n": 1234}) == original
        indexes = {i["name"] for i in client[mongo_db]["conversations"].list_indexes()}
        assert "cn" in indexes

    # The target holds data now: a second restore is refused, unless forced.
    with pytest.raises(BackupError, match="not empty"):
        restore(target, archive)
    assert restore(target, archive, force=True) == found


def test_a_damaged_archive_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "manifest.json").write_text(
        '{"format": 1, "files": {"postgres.dump": "0"}, "postgres": {}, "mongodb": {}}'
    )
    (work / "postgres.dump").write_bytes(b"not what was backed up")
    archive = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        out.add(work, arcname=".")
    with pytest.raises(BackupError, match="checksum"):
        restore(Targets("postgresql://unused", "mongodb://unused", "x"), archive)


@pytest.mark.slow
def test_syntera_backup_and_restore_commands(
    stack: StackUrls, database: StackDatabase, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(SYNTERA_DATABASE_URL=database.owner_url, SYNTERA_MONGODB_URI=stack.mongodb_uri,
               SYNTERA_MONGODB_DB=f"cli_{uuid.uuid4().hex[:8]}")  # fmt: skip
    archive = tmp_path / "cli.tar.gz"

    def syntera(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syntera", *args], env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    made = syntera("backup", "--output", str(archive))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "rows" in made.stdout
    assert archive.exists()
    refused = syntera("restore", "--input", str(archive))  # into the very stores it came from
    assert refused.returncode == 1
    assert "not empty" in refused.stderr
