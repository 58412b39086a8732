"""Moving one company between deployments: an archive of everything it owns.

An archive is a gzipped tar of one JSON-lines file per PostgreSQL table (the company's
rows; its members' ``auth.users`` rows with their password hashes, not their sessions),
one BSON file per MongoDB collection (the documents as stored, one after another, as
``mongodump`` writes them, so ids and dates come back as they were), the company's
knowledge-base files, and ``manifest.json`` with the schema version, the count and the
SHA-256 of every member.

Both directions stream: a member is spooled to a temporary file while it is hashed, and
an import reads the archive once to check every checksum, then once per store to load
it, in batches, so a company of millions of messages needs no more memory than a batch.
Import refuses a company that exists or an archive of a newer schema before writing
anything, loads PostgreSQL in one transaction (same ids, triggers off: the archive is
already consistent), then MongoDB and the files, and verifies the counts.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any, cast
from uuid import UUID

import bson
import bson.errors
import psycopg
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from psycopg import sql
from pymongo import MongoClient

from syntera.db.migrations import load_migrations
from syntera.ops.distribution import DISTRIBUTED_TABLES

FORMAT = 2
# The company's own tables, in foreign-key order (users after companies, then the data).
TABLES = ("auth.users", "public.companies", "public.users", *DISTRIBUTED_TABLES)
COLLECTIONS = ("conversations", "messages", "conversation_notes")
ROWS, DOCUMENTS, FILES = "PostgreSQL rows", "MongoDB documents", "files"
CHECKED = "archive members checked"
_RAW = CodecOptions(document_class=RawBSONDocument)
_BATCH = 5000
_CHUNK = 1 << 20

Progress = Callable[[str, int, int | None], None]  # (step, done, total), as cli.common's bars


class ArchiveError(ValueError):
    """The archive cannot be imported; the message says why (and names the file)."""


@dataclass(frozen=True)
class Manifest:
    company_id: UUID
    schema_version: int
    counts: dict[str, int]
    checksums: dict[str, str]

    def total(self, prefix: str) -> int:
        return sum(n for name, n in self.counts.items() if name.startswith(prefix))


def _where(table: str) -> sql.Composable:
    if table == "auth.users":
        return sql.SQL("id IN (SELECT id FROM public.users WHERE company_id = %(company)s)")
    if table == "public.companies":
        return sql.SQL("id = %(company)s")
    return sql.SQL("company_id = %(company)s")


def _identifier(table: str) -> sql.Identifier:
    schema, name = table.split(".")
    return sql.Identifier(schema, name)


def _table_member(table: str) -> str:
    return f"postgres/{table}.jsonl"


def _collection_member(name: str) -> str:
    return f"mongodb/{name}.bson"


class _Writer:
    """The archive being written: each member spooled to a temporary file beside the
    output while it is counted and hashed, then added to the tar."""

    def __init__(self, archive: tarfile.TarFile, spool: Path) -> None:
        self.archive = archive
        self.spool = spool
        self.counts: dict[str, int] = {}
        self.checksums: dict[str, str] = {}

    def add(
        self, name: str, records: Iterable[bytes | memoryview], tick: Callable[[int], None]
    ) -> None:
        digest = hashlib.sha256()
        count = 0
        with tempfile.TemporaryFile(dir=self.spool) as body:
            iterator = iter(records)
            while batch := list(islice(iterator, _BATCH)):
                data = b"".join(batch)
                body.write(data)
                digest.update(data)
                count += len(batch)
                tick(len(batch))
            self._add_file(name, body, body.tell())
        self.counts[name] = count
        self.checksums[name] = digest.hexdigest()

    def add_path(self, name: str, path: Path) -> None:
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
            self._add_file(name, source, source.tell())
        self.counts[name] = 1
        self.checksums[name] = digest.hexdigest()

    def add_bytes(self, name: str, data: bytes) -> None:
        """A small member (the manifest), not counted in the manifest."""
        self._add_file(name, io.BytesIO(data), len(data))

    def _add_file(self, name: str, body: IO[bytes], size: int) -> None:
        body.seek(0)
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(datetime.now(UTC).timestamp())
        self.archive.addfile(info, body)


class _Counter:
    """Progress of one step (rows, documents, files) against its total."""

    def __init__(self, progress: Progress, step: str, total: int | None) -> None:
        self.progress, self.step, self.total, self.done = progress, step, total, 0
        progress(step, 0, total)

    def __call__(self, more: int) -> None:
        self.done += more
        self.progress(self.step, self.done, self.total)


def export_tenant(
    owner_url: str,
    mongodb_uri: str,
    mongodb_db: str,
    files_root: Path,
    company_id: UUID,
    output: Path,
    progress: Progress = lambda step, done, total: None,
) -> Manifest:
    """Write the company's archive to ``output``; its manifest. PostgreSQL is read in
    one repeatable-read transaction, so its tables are one consistent snapshot."""
    folder = files_root / str(company_id)
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    mongo: MongoClient[RawBSONDocument] = MongoClient(mongodb_uri, document_class=RawBSONDocument)
    with (
        psycopg.connect(owner_url) as conn,
        mongo,
        tarfile.open(output, "w:gz", compresslevel=6) as archive,
    ):
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        found = conn.execute("SELECT 1 FROM public.companies WHERE id = %s", (company_id,))
        if found.fetchone() is None:
            raise ArchiveError(f"no company {company_id}")
        writer = _Writer(archive, output.parent)
        params = {"company": company_id}
        total = 0
        for table in TABLES:
            query = sql.SQL("SELECT count(*) FROM {} t WHERE {}")
            row = conn.execute(query.format(_identifier(table), _where(table)), params).fetchone()
            total += row[0] if row else 0
        rows = _Counter(progress, ROWS, total)
        for table in TABLES:
            query = sql.SQL("SELECT to_jsonb(t)::text FROM {} t WHERE {}")
            with conn.cursor(name=f"export_{table.replace('.', '_')}") as cursor:
                cursor.itersize = _BATCH
                cursor.execute(query.format(_identifier(table), _where(table)), params)
                lines = (row[0].encode() + b"\n" for row in cursor)
                writer.add(_table_member(table), lines, rows)
        database = mongo[mongodb_db]
        selector = {"company_id": str(company_id)}
        # No total: counting first would cost almost another read of every document.
        documents = _Counter(progress, DOCUMENTS, None)
        for name in COLLECTIONS:
            found_documents = database[name].find(selector, batch_size=_BATCH)
            raw = (document.raw for document in found_documents)
            writer.add(_collection_member(name), raw, documents)
        copied = _Counter(progress, FILES, len(files))
        for path in files:
            writer.add_path(f"files/{path.relative_to(files_root).as_posix()}", path)
            copied(1)
        manifest = Manifest(
            company_id, load_migrations()[-1].version, writer.counts, writer.checksums
        )
        body = json.dumps({
            "format": FORMAT, "company_id": str(company_id),
            "schema_version": manifest.schema_version,
            "exported_at": datetime.now(UTC).isoformat(),
            "counts": manifest.counts, "checksums": manifest.checksums,
        }, indent=2).encode()  # fmt: skip
        writer.add_bytes("manifest.json", body)
    return manifest


def _members(path: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """Each file in the archive, in order, as a stream read from the archive itself."""
    try:
        with tarfile.open(path, "r|gz") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    yield member.name, extracted
    except (OSError, EOFError, tarfile.TarError, zlib.error) as error:
        raise ArchiveError(f"{path} is not a tenant archive: {error}") from error


def check_archive(path: Path, progress: Progress = lambda step, done, total: None) -> Manifest:
    """The archive's manifest, once every member's checksum is verified (ArchiveError
    names the first member that does not match) — a whole read, before any write."""
    found: dict[str, str] = {}
    owners: dict[str, set[str]] = {}  # member -> the companies its documents or file name
    checked = _Counter(progress, CHECKED, None)
    raw: dict[str, Any] | None = None
    for name, stream in _members(path):
        if name == "manifest.json":
            try:
                raw = json.loads(stream.read())
            except ValueError as error:
                raise ArchiveError(f"manifest.json: not JSON ({error})") from error
            continue
        reader = _HashingReader(stream)
        if name.startswith("mongodb/"):
            try:
                stored = bson.decode_file_iter(cast(IO[bytes], reader), codec_options=_RAW)
                owners[name] = {str(document.get("company_id")) for document in stored}
            except bson.errors.BSONError as error:
                raise ArchiveError(f"{name}: not BSON documents ({error})") from error
        elif name.startswith("files/"):
            owners[name] = {name.split("/")[1]}
        while reader.read(_CHUNK):
            pass
        found[name] = reader.digest.hexdigest()
        checked(1)
    if not isinstance(raw, dict):
        raise ArchiveError(f"{path} has no manifest.json")
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
    for name in sorted(set(found) | set(manifest.checksums)):
        if found.get(name) is None or found.get(name) != manifest.checksums.get(name):
            raise ArchiveError(f"{name}: missing, unexpected or changed (checksum mismatch)")
    # An archive moves one company: nothing in it may land in another's documents or
    # files (its PostgreSQL rows are held to the same in the import's transaction).
    for name, companies in sorted(owners.items()):
        if companies - {str(manifest.company_id)}:
            raise ArchiveError(f"{name}: holds data of another company")
    return manifest


class _HashingReader:
    """A member's stream, hashed as it is read."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.digest = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        return data


def import_tenant(
    path: Path,
    owner_url: str,
    mongodb_uri: str,
    mongodb_db: str,
    files_root: Path,
    progress: Progress = lambda step, done, total: None,
) -> Manifest:
    """Load an archive into this deployment (see the module's text); its manifest."""
    manifest = check_archive(path, progress)
    company = manifest.company_id
    with psycopg.connect(owner_url) as conn:
        if conn.execute("SELECT 1 FROM public.companies WHERE id = %s", (company,)).fetchone():
            raise ArchiveError(f"company {company} already exists here; nothing was written")
        _load_postgres(conn, path, manifest, _Counter(progress, ROWS, manifest.total("postgres/")))
    mongo: MongoClient[RawBSONDocument] = MongoClient(mongodb_uri, document_class=RawBSONDocument)
    with mongo:
        database = mongo[mongodb_db]
        documents = _Counter(progress, DOCUMENTS, manifest.total("mongodb/"))
        copied = _Counter(progress, FILES, manifest.total("files/"))
        for name, stream in _members(path):
            if name.startswith("mongodb/"):
                collection = database[_known(name, "mongodb/", ".bson", COLLECTIONS)]
                stored = bson.decode_file_iter(stream, codec_options=_RAW)
                while batch := list(islice(stored, _BATCH)):
                    collection.insert_many(batch)  # of the company only (check_archive)
                    documents(len(batch))
            elif name.startswith("files/"):
                target = files_root / name.removeprefix("files/")
                if not target.resolve().is_relative_to((files_root / str(company)).resolve()):
                    raise ArchiveError(f"{name}: not in the company's file storage")
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as copy:
                    shutil.copyfileobj(stream, copy, _CHUNK)
                copied(1)
        for name in COLLECTIONS:
            held = database[name].count_documents({"company_id": str(company)})
            member = _collection_member(name)
            if held != manifest.counts.get(member, 0):
                raise ArchiveError(f"{member}: {held} documents after the import")
    return manifest


def _load_postgres(
    conn: psycopg.Connection, path: Path, manifest: Manifest, rows: _Counter
) -> None:
    """Every table of the archive in one transaction, then its counts verified."""
    with conn.transaction():
        # The archive is a consistent snapshot: no trigger may add rows of its own
        # (a new company's owner, workflow events); foreign keys hold by construction.
        conn.execute("SET LOCAL session_replication_role = replica")
        inserted: dict[str, int] = {}
        for name, stream in _members(path):
            if name.startswith("postgres/"):
                table = _known(name, "postgres/", ".jsonl", TABLES)
                statement = _insert_statement(conn, table)
                lines = (line for line in stream if line.strip())
                while batch := list(islice(lines, 1000)):
                    cursor = conn.execute(statement, ((b"[" + b",".join(batch) + b"]").decode(),))
                    inserted[table] = inserted.get(table, 0) + cursor.rowcount
                    rows(len(batch))
        for table in TABLES:
            query = sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(
                _identifier(table), _where(table)
            )
            row = conn.execute(query, {"company": manifest.company_id}).fetchone()
            expected = manifest.counts.get(_table_member(table), 0)
            if row is not None and inserted.get(table, 0) != row[0]:  # rolled back
                raise ArchiveError(f"{_table_member(table)}: holds rows of another company")
            if row is None or row[0] != expected:
                raise ArchiveError(
                    f"{_table_member(table)}: {row and row[0]} rows loaded, {expected} expected"
                )


def _known(member: str, prefix: str, suffix: str, names: tuple[str, ...]) -> str:
    name = member.removeprefix(prefix).removesuffix(suffix)
    if name not in names or not member.endswith(suffix):
        raise ArchiveError(f"{member}: not a table or collection this version knows")
    return name


def _insert_statement(conn: psycopg.Connection, table: str) -> sql.Composed:
    """INSERT of a JSON array of rows (as ``to_jsonb`` wrote them) into ``table``."""
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
    return sql.SQL(
        "INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE"
        " SELECT {names} FROM jsonb_populate_recordset(NULL::{table}, %s::jsonb)"
    ).format(table=_identifier(table), names=names)
