"""Moving one company between deployments: an archive of everything it owns.

An archive is a gzipped tar of JSON-lines files — one per PostgreSQL table (the company's
rows; its members' ``auth.users`` rows with their password hashes, not their sessions),
one per MongoDB collection (canonical extended JSON, so ids and dates come back as they
were) — the company's knowledge-base files, and ``manifest.json`` with the schema
version, the count and the SHA-256 of every member. Import checks the whole archive
before writing anything, refuses a company that exists or an archive of a newer schema,
loads PostgreSQL in one transaction (same ids, triggers off: the archive is already
consistent), then MongoDB and the files, and verifies the counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from bson import json_util
from bson.json_util import JSONMode, JSONOptions
from psycopg import sql
from pymongo import MongoClient

from syntera.db.migrations import load_migrations
from syntera.ops.distribution import DISTRIBUTED_TABLES

FORMAT = 1
_BSON = JSONOptions(json_mode=JSONMode.CANONICAL, tz_aware=True)
# The company's own tables, in foreign-key order (users after companies, then the data).
TABLES = ("auth.users", "public.companies", "public.users", *DISTRIBUTED_TABLES)
COLLECTIONS = ("conversations", "messages")

Progress = Callable[[str, int], None]  # (what, how many more)


class ArchiveError(ValueError):
    """The archive cannot be imported; the message says why (and names the file)."""


@dataclass(frozen=True)
class Manifest:
    company_id: UUID
    schema_version: int
    counts: dict[str, int]
    checksums: dict[str, str]


def _where(table: str) -> sql.Composable:
    if table == "auth.users":
        return sql.SQL("id IN (SELECT id FROM public.users WHERE company_id = %(company)s)")
    if table == "public.companies":
        return sql.SQL("id = %(company)s")
    return sql.SQL("company_id = %(company)s")


def _identifier(table: str) -> sql.Identifier:
    schema, name = table.split(".")
    return sql.Identifier(schema, name)


def export_tenant(
    owner_url: str,
    mongodb_uri: str,
    mongodb_db: str,
    files_root: Path,
    company_id: UUID,
    output: Path,
    progress: Progress = lambda what, n: None,
) -> Manifest:
    """Write the company's archive to ``output``; its manifest."""
    counts: dict[str, int] = {}
    checksums: dict[str, str] = {}
    with tarfile.open(output, "w:gz") as archive:

        def add(name: str, lines: Iterator[bytes]) -> None:
            body = io.BytesIO()
            count = 0
            for line in lines:
                body.write(line + b"\n")
                count += 1
            data = body.getvalue()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
            counts[name] = count
            checksums[name] = hashlib.sha256(data).hexdigest()
            progress(name, count)

        with psycopg.connect(owner_url) as conn:
            found = conn.execute(
                "SELECT 1 FROM public.companies WHERE id = %s", (company_id,)
            ).fetchone()
            if found is None:
                raise ArchiveError(f"no company {company_id}")
            for table in TABLES:
                query = sql.SQL("SELECT to_jsonb(t)::text FROM {} t WHERE {}").format(
                    _identifier(table), _where(table)
                )
                rows = conn.execute(query, {"company": company_id})
                add(f"postgres/{table}.jsonl", (row[0].encode() for row in rows))
        mongo: MongoClient[Any] = MongoClient(mongodb_uri, tz_aware=True)
        try:
            database = mongo[mongodb_db]
            for name in COLLECTIONS:
                documents = database[name].find({"company_id": str(company_id)})
                add(
                    f"mongodb/{name}.jsonl",
                    (json_util.dumps(doc, json_options=_BSON).encode() for doc in documents),
                )
        finally:
            mongo.close()
        folder = files_root / str(company_id)
        for path in sorted(folder.rglob("*")) if folder.exists() else []:
            if path.is_file():
                name = f"files/{path.relative_to(files_root).as_posix()}"
                data = path.read_bytes()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                counts[name] = 1
                checksums[name] = hashlib.sha256(data).hexdigest()
                progress("files", 1)
        manifest = Manifest(company_id, load_migrations()[-1].version, counts, checksums)
        body = json.dumps({
            "format": FORMAT, "company_id": str(company_id),
            "schema_version": manifest.schema_version,
            "exported_at": datetime.now(UTC).isoformat(),
            "counts": counts, "checksums": checksums,
        }, indent=2).encode()  # fmt: skip
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))
    return manifest


def read_archive(path: Path) -> tuple[Manifest, dict[str, bytes]]:
    """The archive's manifest and members, every checksum verified (ArchiveError names
    the first member that does not match)."""
    try:
        with tarfile.open(path, "r:gz") as archive:
            members = {
                member.name: extracted.read()
                for member in archive.getmembers()
                if member.isfile() and (extracted := archive.extractfile(member)) is not None
            }
    except (OSError, tarfile.TarError) as error:
        raise ArchiveError(f"{path} is not a tenant archive: {error}") from error
    if "manifest.json" not in members:
        raise ArchiveError(f"{path} has no manifest.json")
    raw = json.loads(members.pop("manifest.json"))
    if raw.get("format") != FORMAT:
        raise ArchiveError(f"manifest.json: format {raw.get('format')!r} is not {FORMAT}")
    manifest = Manifest(
        UUID(raw["company_id"]), int(raw["schema_version"]), raw["counts"], raw["checksums"]
    )
    newest = load_migrations()[-1].version
    if manifest.schema_version > newest:
        raise ArchiveError(
            f"manifest.json: the archive is of schema {manifest.schema_version}, newer than "
            f"this deployment's {newest}; upgrade Syntera first"
        )
    for name in sorted(set(members) | set(manifest.checksums)):
        expected = manifest.checksums.get(name)
        data = members.get(name)
        if expected is None or data is None or hashlib.sha256(data).hexdigest() != expected:
            raise ArchiveError(f"{name}: missing, unexpected or changed (checksum mismatch)")
    return manifest, members


def import_tenant(
    path: Path,
    owner_url: str,
    mongodb_uri: str,
    mongodb_db: str,
    files_root: Path,
    progress: Progress = lambda what, n: None,
) -> Manifest:
    """Load an archive into this deployment (see the module's text); its manifest."""
    manifest, members = read_archive(path)
    company = manifest.company_id
    with psycopg.connect(owner_url) as conn:
        if conn.execute("SELECT 1 FROM public.companies WHERE id = %s", (company,)).fetchone():
            raise ArchiveError(f"company {company} already exists here; nothing was written")
        with conn.transaction():
            # The archive is a consistent snapshot: no trigger may add rows of its own
            # (a new company's owner, workflow events); foreign keys hold by construction.
            conn.execute("SET LOCAL session_replication_role = replica")
            for table in TABLES:
                rows = _lines(members[f"postgres/{table}.jsonl"])
                if not rows:
                    continue
                _insert(conn, table, rows)
                progress(f"postgres/{table}", len(rows))
            for table in TABLES:
                query = sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(
                    _identifier(table), _where(table)
                )
                row = conn.execute(query, {"company": company}).fetchone()
                expected = manifest.counts[f"postgres/{table}.jsonl"]
                if row is None or row[0] != expected:
                    raise ArchiveError(
                        f"postgres/{table}.jsonl: {row and row[0]} rows loaded, {expected} expected"
                    )
    mongo: MongoClient[Any] = MongoClient(mongodb_uri, tz_aware=True)
    try:
        database = mongo[mongodb_db]
        for name in COLLECTIONS:
            documents = [
                json_util.loads(line, json_options=_BSON)
                for line in members[f"mongodb/{name}.jsonl"].splitlines()
                if line
            ]
            for start in range(0, len(documents), 5000):
                database[name].insert_many(documents[start : start + 5000])
            progress(f"mongodb/{name}", len(documents))
            held = database[name].count_documents({"company_id": str(company)})
            if held != manifest.counts[f"mongodb/{name}.jsonl"]:
                raise ArchiveError(f"mongodb/{name}.jsonl: {held} documents after the import")
    finally:
        mongo.close()
    for name, data in members.items():
        if name.startswith("files/"):
            target = files_root / name.removeprefix("files/")
            if not target.resolve().is_relative_to(files_root.resolve()):
                raise ArchiveError(f"{name}: leaves the file storage")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            progress("files", 1)
    return manifest


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line]


def _insert(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    schema, name = table.split(".")
    columns = [
        row[0]
        for row in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s AND is_generated = 'NEVER'"
            " ORDER BY ordinal_position",
            (schema, name),
        )
    ]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    statement = sql.SQL(
        "INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE"
        " SELECT {names} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"
    ).format(table=_identifier(table), names=names)
    for start in range(0, len(rows), 1000):
        conn.execute(statement, (json.dumps(rows[start : start + 1000]),))
