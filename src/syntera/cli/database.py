"""``syntera migrate`` and ``syntera db``: the schema, and looking inside the databases."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
import psycopg
import typer
from pymongo.errors import PyMongoError
from rich.table import Table

from syntera.cli.common import (
    DataDirOption,
    console,
    errors,
    mongo_uri,
    owner_database_url,
    resolve_urls,
    settings_for,
)
from syntera.config import Settings
from syntera.db.migrations import MigrationError, migration_status
from syntera.db.migrations import migrate as run_migrations
from syntera.db.mongo import create_mongo_client
from syntera.db.redis import create_redis
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.ops.distribution import citus_plan, mongo_shard_plan
from syntera.ops.orphans import Orphans, delete_orphans, find_orphans
from syntera.ops.setup import mongo_index_states, prepare_mongo
from syntera.ops.stats import explain_as_user, mongo_stats, postgres_stats
from syntera.ops.stats_view import print_stats

db_app = typer.Typer(
    help="Look inside the databases (read-only, but for `orphans --delete`).",
    no_args_is_help=True,
)


def migrate(
    status: Annotated[bool, typer.Option("--status", help="Show what is applied.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be applied; change nothing.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Apply the PostgreSQL migrations.

    Safe to rerun: applied files are skipped, and a PostgreSQL advisory lock makes a
    concurrent run wait and then find nothing to do.
    """
    settings = settings_for(data_dir)
    url = owner_database_url(settings)
    try:
        if status:
            table = Table("version", "file", "state", "applied at")
            with psycopg.connect(url) as conn:
                for entry in migration_status(conn):
                    colour = {"applied": "green", "pending": "yellow"}.get(entry.state, "red")
                    applied = entry.applied_at.isoformat(" ", "seconds") if entry.applied_at else ""
                    table.add_row(
                        f"{entry.migration.version:03d}",
                        entry.migration.filename,
                        f"[{colour}]{entry.state}[/{colour}]",
                        applied,
                    )
            console.print(table)
            mongo_indexes(settings, status_only=True)
            return
        applied_now = run_migrations(url, dry_run=dry_run)
    except MigrationError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    verb = "would apply" if dry_run else "applied"
    if not applied_now:
        console.print("PostgreSQL schema is up to date")
    for migration in applied_now:
        console.print(f"{verb} {migration.filename}")
    mongo_indexes(settings, status_only=dry_run)


def mongo_indexes(settings: Settings, *, status_only: bool) -> None:
    """Create (or, with ``status_only``, show) the MongoDB indexes. Safe to rerun."""
    uri = mongo_uri(settings)
    if uri is None:
        errors.print("MongoDB: no SYNTERA_MONGODB_URI and the embedded server is not running")
        return
    try:
        if status_only:
            table = Table("collection", "index", "keys", "state")
            for state in asyncio.run(mongo_index_states(settings, uri)):
                keys = ", ".join(f"{k} {d}" for k, d in state.spec.keys)
                colour = "green" if state.state == "present" else "yellow"
                table.add_row(
                    state.spec.collection, state.spec.name, keys,
                    f"[{colour}]{state.state}[/{colour}]",
                )  # fmt: skip
            console.print(table)
        else:
            created = asyncio.run(prepare_mongo(settings, uri))
            console.print(
                f"MongoDB indexes: created {', '.join(created)}" if created
                else "MongoDB indexes are up to date"
            )  # fmt: skip
    except PyMongoError as error:
        errors.print(f"[red]MongoDB indexes: {error}[/red]")
        raise typer.Exit(1) from error


@db_app.command("stats")
def db_stats(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Index use (never-used ones flagged), table and index sizes, the slowest statements,
    connections, and MongoDB's collections, connections and slow operations."""
    settings = settings_for(data_dir)
    stats: dict[str, Any] = {"postgres": postgres_stats(owner_database_url(settings))}
    uri = mongo_uri(settings)
    stats["mongodb"] = mongo_stats(uri, settings.mongodb_db) if uri else None
    if as_json:
        print(orjson.dumps(stats, default=str, option=orjson.OPT_INDENT_2).decode())
        return
    print_stats(console, stats)


@db_app.command("explain")
def db_explain(
    statement: Annotated[
        str, typer.Argument(help="The SQL to explain (it runs, then rolls back).")
    ],
    as_user: Annotated[
        str | None, typer.Option("--as-user", help="Email of the user to run it as, under RLS.")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) as a user, under row-level security, in a transaction that
    is rolled back: the plan the application really gets, and nothing changed."""
    settings = settings_for(data_dir)
    try:
        plan = explain_as_user(owner_database_url(settings), statement, as_user)
    except LookupError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    print(plan)


@db_app.command("distribution-plan")
def distribution_plan() -> None:
    """Print the Citus statements that distribute the schema by company_id (reference
    tables first, then the company's tables co-located, in foreign-key order). Prints
    only; run them on a Citus coordinator after `syntera migrate`."""
    for line in citus_plan():
        print(line)


@db_app.command("shard-plan")
def shard_plan(data_dir: DataDirOption = None) -> None:
    """Print the mongosh commands that shard the conversations and messages by tenant
    (and an example zone for a large tenant). Prints only."""
    for line in mongo_shard_plan(settings_for(data_dir).mongodb_db):
        print(line)


@db_app.command("orphans")
def orphans(
    delete: Annotated[
        bool, typer.Option("--delete", help="Remove them (what a purge would have).")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """MongoDB documents, files, vectors and Redis keys whose company no longer exists
    (left by deletions before purges existed, or by a purge that failed for good)."""
    settings = settings_for(data_dir)
    url = owner_database_url(settings)
    urls = resolve_urls(settings, None)
    with psycopg.connect(url) as conn:
        existing = {row[0] for row in conn.execute("SELECT id FROM public.companies")}

    async def run() -> Orphans:
        mongo = create_mongo_client(settings, urls.mongodb_uri)
        redis = create_redis(settings.model_copy(update={"redis_timeout_s": 10.0}), urls.redis_url)
        kb = KnowledgeBase.from_settings(settings)
        try:
            database = mongo[settings.mongodb_db]
            found = await find_orphans(existing, database, kb, redis)
            if delete and found.companies:
                await delete_orphans(found, database, kb, redis)
            return found
        finally:
            await redis.aclose()
            await mongo.close()

    found = asyncio.run(run())
    if not found.companies:
        console.print("no orphans: every store holds only existing companies' data")
        return
    table = Table("store", "company (deleted)", "left")
    for store, held in found.stores().items():
        unit = {"mongodb": "documents", "files": "files", "vectors": "vectors", "redis": "keys"}
        for company, count in sorted(held.items(), key=lambda item: str(item[0])):
            table.add_row(store, str(company), f"{count:,} {unit[store]}")
    console.print(table)
    verb = "removed" if delete else "found (--delete removes them)"
    console.print(f"{len(found.companies)} deleted companies' data {verb}")
