"""Versioned SQL migrations: ``NNN_name.sql`` files beside this module, applied in order.

Each file runs in its own transaction and is recorded, with the SHA-256 of its text, in
``syntera.schema_migrations``. A session-level advisory lock serialises concurrent runs:
the second waits, then finds nothing left to do. A file that was applied and has changed
since is refused by name, since the database no longer matches what the file says.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psycopg

# Any fixed 64-bit number; it only has to differ from other advisory locks of the database.
MIGRATION_LOCK_KEY = 0x5359_4E54_4552_4100

FILE_NAME = re.compile(r"^(?P<version>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")

CREATE_LEDGER = """
CREATE SCHEMA IF NOT EXISTS syntera;
CREATE TABLE IF NOT EXISTS syntera.schema_migrations (
  version integer PRIMARY KEY,
  name text NOT NULL,
  checksum text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON SCHEMA syntera FROM PUBLIC;
"""

SELECT_APPLIED = "SELECT version, name, checksum, applied_at FROM syntera.schema_migrations"

RECORD_APPLIED = """
INSERT INTO syntera.schema_migrations (version, name, checksum)
VALUES (%(version)s, %(name)s, %(checksum)s)
"""


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are; the message names the file."""


@dataclass(frozen=True)
class Migration:
    """One migration file shipped in the package."""

    version: int
    name: str
    sql: str

    @property
    def filename(self) -> str:
        """The file's name, e.g. ``001_supabase_auth.sql``."""
        return f"{self.version:03d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    """A migration file and what the database knows of it."""

    migration: Migration
    state: str  # "applied", "pending" or "changed"
    applied_at: datetime | None


def load_migrations() -> list[Migration]:
    """Every migration file of the package, in version order."""
    migrations = []
    for entry in resources.files(__package__).iterdir():
        match = FILE_NAME.match(entry.name)
        if match is None:
            continue
        migrations.append(
            Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
        )
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"two migration files share a version number: {versions}")
    return migrations


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, datetime]]:
    rows = conn.execute(SELECT_APPLIED).fetchall()
    return {version: (checksum, applied_at) for version, _name, checksum, applied_at in rows}


def migration_status(
    conn: psycopg.Connection, migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """Each migration file with its state in the database behind ``conn``."""
    migrations = load_migrations() if migrations is None else migrations
    exists = conn.execute("SELECT to_regclass('syntera.schema_migrations')").fetchone()
    applied = _applied(conn) if exists and exists[0] else {}
    statuses = []
    for migration in migrations:
        if migration.version not in applied:
            statuses.append(MigrationStatus(migration, "pending", None))
            continue
        checksum, applied_at = applied[migration.version]
        state = "applied" if checksum == migration.checksum else "changed"
        statuses.append(MigrationStatus(migration, state, applied_at))
    return statuses


def _refuse_changed(statuses: list[MigrationStatus]) -> None:
    changed = [status.migration.filename for status in statuses if status.state == "changed"]
    if changed:
        raise MigrationError(
            f"migration {', '.join(changed)} was applied and has changed since; "
            "restore its original text and put the change in a new migration"
        )


def migrate(
    database_url: str, *, dry_run: bool = False, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return what was (or,
    with ``dry_run``, would be) applied. Running it again when nothing is pending does
    nothing, and two concurrent runs apply each file once."""
    migrations = load_migrations() if migrations is None else migrations
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            if dry_run:
                statuses = migration_status(conn, migrations)
                _refuse_changed(statuses)
                return [status.migration for status in statuses if status.state == "pending"]
            conn.execute(CREATE_LEDGER)
            statuses = migration_status(conn, migrations)
            _refuse_changed(statuses)
            pending = [status.migration for status in statuses if status.state == "pending"]
            for migration in pending:
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            RECORD_APPLIED,
                            {
                                "version": migration.version,
                                "name": migration.name,
                                "checksum": migration.checksum,
                            },
                        )
                except psycopg.Error as error:
                    raise MigrationError(f"{migration.filename} failed: {error}") from error
            if pending:
                # The data API's schema caches read the new schema (PostgREST's channel).
                conn.execute("NOTIFY pgrst, 'reload schema'")
            return pending
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
