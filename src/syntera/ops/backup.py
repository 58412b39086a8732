"""One archive holding PostgreSQL and MongoDB, and its restore with verification.

Archive (``.tar.gz``):

    manifest.json                 versions, row and document counts, SHA-256 of each file
    postgres.dump                 pg_dump, custom format, data of every schema we own
    mongo/<collection>.bson       every document, BSON, one after the other
    mongo/<collection>.indexes.json

Consistency: PostgreSQL is dumped from one exported snapshot (``pg_export_snapshot`` in a
REPEATABLE READ transaction; pg_dump ``--snapshot``), and the manifest's row counts are
taken in that same snapshot. MongoDB has no cross-collection snapshot without a replica
set; its export starts after the PostgreSQL snapshot, so every document is at least as new
as the rows it refers to (a conversation may name an agent created after the snapshot:
after a restore that reference dangles, as after any point-in-time restore of two stores).

Restore: the target is migrated to the backup's schema version (the versions must match),
must be empty unless ``force`` (then its data is truncated and its collections dropped),
receives the data (``pg_restore --data-only`` with triggers disabled, so the membership
triggers do not fire twice), and is then counted against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bson
import psycopg
from psycopg import sql
from pymongo import MongoClient

from syntera import __version__
from syntera.db.migrations import load_migrations, migrate
from syntera.embedded import postgres_bin_dir

FORMAT = 1
# Schemas whose data is ours; `auth` only where our migration created it (plain PostgreSQL).
DATA_SCHEMAS = ("public", "auth", "syntera")
# Tables the migrations themselves fill (the ledger, the map of who writes which column):
# the target's own migrations write them, so they are neither backed up nor restored.
LEDGER = "syntera.schema_migrations"
MIGRATION_TABLES = (LEDGER, "syntera.column_access")
BATCH = 1000

Progress = Callable[[str, int, int], None]  # (step, done, total)


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why."""


@dataclass(frozen=True)
class Targets:
    """Where the data is: the owner connection of PostgreSQL, and MongoDB."""

    database_url: str
    mongodb_uri: str
    mongodb_db: str


def _tool(name: str) -> str:
    bundled = postgres_bin_dir() / name
    if bundled.exists():
        return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found")
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Our tables, schema-qualified, except those the migrations fill."""
    rows = conn.execute(
        "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY(%s) ORDER BY 1",
        (list(DATA_SCHEMAS),),
    ).fetchall()
    return [row[0] for row in rows if row[0] not in MIGRATION_TABLES]


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    schema, name = table.split(".")
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _applied_versions(conn: psycopg.Connection[Any]) -> list[int]:
    query = sql.SQL("SELECT version FROM {} ORDER BY version").format(
        sql.Identifier(*LEDGER.split("."))
    )
    rows = conn.execute(query).fetchall()
    return [int(row[0]) for row in rows]


def backup(targets: Targets, output: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Write one archive of both stores to ``output``; its manifest."""
    report = progress or (lambda step, done, total: None)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="syntera-backup-") as tmp:
        work = Path(tmp)
        (work / "mongo").mkdir()
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "syntera": __version__,
            "created_at": datetime.now(UTC).isoformat(),
            "postgres": {},
            "mongodb": {},
            "files": {},
        }
        # 1. PostgreSQL, from one snapshot that the row counts share.
        with psycopg.connect(targets.database_url) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert snapshot_row is not None
            tables = _tables(conn)
            counts = {}
            for index, table in enumerate(tables):
                counts[table] = _count(conn, table)
                report("counting PostgreSQL rows", index + 1, len(tables))
            manifest["postgres"] = {
                "migrations": _applied_versions(conn),
                "server_version": conn.info.server_version,
                "rows": counts,
            }
            report("dumping PostgreSQL", 0, 1)
            dumped = subprocess.run(
                [_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                 f"--snapshot={snapshot_row[0]}", "--file", str(work / "postgres.dump"),
                 *(f"--exclude-table-data={table}" for table in MIGRATION_TABLES),
                 *(f"--schema={schema}" for schema in DATA_SCHEMAS),
                 "--dbname", targets.database_url],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if dumped.returncode != 0:
                raise BackupError(f"pg_dump failed: {dumped.stderr.strip()}")
            report("dumping PostgreSQL", 1, 1)
            conn.rollback()
        # 2. MongoDB, after the snapshot.
        with MongoClient[dict[str, Any]](targets.mongodb_uri, tz_aware=True) as client:
            database = client[targets.mongodb_db]
            names = sorted(database.list_collection_names())
            for name in names:
                collection = database[name]
                total = collection.estimated_document_count()
                written = 0
                with (work / "mongo" / f"{name}.bson").open("wb") as out:
                    for document in collection.find({}, sort=[("_id", 1)], batch_size=BATCH):
                        out.write(bson.encode(document))
                        written += 1
                        if written % BATCH == 0:
                            report(f"exporting {name}", written, max(total, written))
                report(f"exporting {name}", written, max(total, written))
                indexes = [
                    {k: v for k, v in index.items() if k not in ("v", "ns")}
                    for index in collection.list_indexes()
                    if index["name"] != "_id_"
                ]
                (work / "mongo" / f"{name}.indexes.json").write_text(
                    json.dumps(indexes, default=str)
                )
                manifest["mongodb"][name] = written
        for path in sorted(p for p in work.rglob("*") if p.is_file()):
            manifest["files"][str(path.relative_to(work))] = _sha256(path)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
            archive.add(work, arcname=".")
        os.replace(partial, output)  # a crash never leaves a half archive under the name
    manifest["seconds"] = round(time.monotonic() - started, 1)
    manifest["bytes"] = output.stat().st_size
    return manifest


def _is_empty(conn: psycopg.Connection[Any], mongo_db: Any) -> list[str]:
    """What in the target holds data already."""
    holding = [table for table in _tables(conn) if _count(conn, table)]
    holding += [
        f"mongodb.{name}"
        for name in mongo_db.list_collection_names()
        if mongo_db[name].estimated_document_count()
    ]
    return holding


def restore(
    targets: Targets, archive_path: Path, *, force: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Restore an archive into the target stores; the counts found afterwards."""
    report = progress or (lambda step, done, total: None)
    with tempfile.TemporaryDirectory(prefix="syntera-restore-") as tmp:
        work = Path(tmp)
        with tarfile.open(archive_path, "r:gz") as archive:
            archive.extractall(work, filter="data")
        manifest = json.loads((work / "manifest.json").read_text())
        if manifest.get("format") != FORMAT:
            raise BackupError(f"archive format {manifest.get('format')} is not {FORMAT}")
        for name, expected in manifest["files"].items():
            if _sha256(work / name) != expected:
                raise BackupError(f"{name} does not match its checksum: the archive is damaged")
        wanted = manifest["postgres"]["migrations"]
        known = [m.version for m in load_migrations()]
        if wanted != known[: len(wanted)] or len(wanted) != len(known):
            raise BackupError(
                f"the backup has migrations {wanted}, this version of syntera {known}; "
                "restore with the version that made it"
            )
        migrate(targets.database_url)
        with (
            psycopg.connect(targets.database_url, autocommit=True) as conn,
            MongoClient[dict[str, Any]](targets.mongodb_uri, tz_aware=True) as client,
        ):
            database = client[targets.mongodb_db]
            holding = _is_empty(conn, database)
            if holding and not force:
                raise BackupError(
                    "the target is not empty (" + ", ".join(holding[:5]) + "); "
                    "restore into empty stores, or pass --force to replace their data"
                )
            if holding:
                tables = sql.SQL(", ").join(
                    sql.Identifier(*table.split(".")) for table in _tables(conn)
                )
                conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(tables))
                for name in database.list_collection_names():
                    database.drop_collection(name)
            report("restoring PostgreSQL", 0, 1)
            restored = subprocess.run(
                [_tool("pg_restore"), "--data-only", "--disable-triggers", "--single-transaction",
                 "--no-owner", "--no-privileges", "--exit-on-error",
                 "--dbname", targets.database_url, str(work / "postgres.dump")],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if restored.returncode != 0:
                raise BackupError(f"pg_restore failed: {restored.stderr.strip()}")
            report("restoring PostgreSQL", 1, 1)
            for name, expected in manifest["mongodb"].items():
                _restore_collection(work / "mongo", database, name, expected, report)
            found = {
                "postgres": {t: _count(conn, t) for t in manifest["postgres"]["rows"]},
                "mongodb": {n: database[n].count_documents({}) for n in manifest["mongodb"]},
            }
    expected_counts = {"postgres": manifest["postgres"]["rows"], "mongodb": manifest["mongodb"]}
    if found != expected_counts:
        raise BackupError(f"counts differ after restore: {found} != {expected_counts}")
    return found


def _restore_collection(
    folder: Path, database: Any, name: str, expected: int, report: Progress
) -> None:
    collection = database[name]
    batch: list[dict[str, Any]] = []
    done = 0
    with (folder / f"{name}.bson").open("rb") as file:
        for document in bson.decode_file_iter(file):
            batch.append(document)
            if len(batch) == BATCH:
                collection.insert_many(batch, ordered=True)
                done += len(batch)
                batch = []
                report(f"restoring {name}", done, expected)
    if batch:
        collection.insert_many(batch, ordered=True)
        done += len(batch)
    report(f"restoring {name}", done, expected)
    for index in json.loads((folder / f"{name}.indexes.json").read_text()):
        keys = list(index.pop("key").items())
        collection.create_index(keys, **index)
