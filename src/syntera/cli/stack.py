"""Running Syntera: the embedded servers (``syntera services``), ``syntera up``,
``syntera serve`` and ``syntera worker``."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Annotated, Any

import typer
import uvicorn
from rich.table import Table

from syntera.auth.tokens import load_keys
from syntera.cli.common import (
    DataDirOption,
    console,
    embedded_services,
    errors,
    owner_database_url,
    resolve_urls,
    settings_for,
)
from syntera.cli.database import mongo_indexes
from syntera.config import Settings, get_settings
from syntera.conversations.store import ConversationStore
from syntera.db.migrations import MigrationError
from syntera.db.migrations import migrate as run_migrations
from syntera.db.mongo import create_mongo_client
from syntera.db.postgres import create_api_pool
from syntera.db.redis import connect_redis, create_redis
from syntera.embedded import EmbeddedError, EmbeddedStack, StackUrls
from syntera.events.streams import publisher_for
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.model_process import shared_model
from syntera.llm.choice import ChatModels
from syntera.ops.demo import DEMO_EMAIL, DEMO_PASSWORD, seed_demo
from syntera.purges.registry import stored_elsewhere
from syntera.workers import listen_url, run_workers

services_app = typer.Typer(
    help="The embedded servers, run in the background.", no_args_is_help=True
)


def start_embedded(settings: Settings) -> StackUrls:
    try:
        return EmbeddedStack(settings.data_dir).start(embedded_services(settings))
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
    settings = settings_for(data_dir)
    urls = resolve_urls(settings, start_embedded(settings))
    for key, value in urls.as_env().items():
        print(f"{key}={value}")


@services_app.command("stop")
def services_stop(data_dir: DataDirOption = None) -> None:
    """Stop the embedded servers (safe to rerun: a stopped stack stays stopped)."""
    settings = settings_for(data_dir)
    stopped = EmbeddedStack(settings.data_dir).stop()
    errors.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@services_app.command("status")
def services_status(data_dir: DataDirOption = None) -> None:
    """Show each embedded server: running or not, pid, address. Exits 1 if any is down."""
    settings = settings_for(data_dir)
    table = Table("service", "state", "pid", "address")
    statuses = EmbeddedStack(settings.data_dir).status()
    for status in statuses:
        state = "[green]running[/green]" if status.running else f"[red]{status.detail}[/red]"
        table.add_row(status.name, state, str(status.pid or "-"), status.address or "-")
    console.print(table)
    if not all(status.running for status in statuses):
        raise typer.Exit(1)


HostOption = Annotated[str | None, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[
    int | None, typer.Option("--port", min=0, max=65535, help="Port (0: any free port).")
]
APP_FACTORY = "syntera.app:app_from_environment"


def uvicorn_options(
    settings: Settings, host: str | None, port: int | None, workers: int
) -> dict[str, Any]:
    """How uvicorn serves the API: the one place both `serve` and `up` take it from."""
    return {
        "factory": True,
        "host": host or settings.host,
        "port": settings.port if port is None else port,
        "workers": workers,
        "log_level": "info",
        "access_log": False,
        **proxy_options(settings),
    }


def proxy_options(settings: Settings) -> dict[str, Any]:
    """Forwarded headers are believed only from SYNTERA_TRUSTED_PROXIES (uvicorn would
    otherwise believe any process on 127.0.0.1)."""
    trusted = settings.trusted_proxy_list
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": ",".join(trusted) or None}


def _export(settings: Settings, urls: StackUrls) -> None:
    """Hand the URLs and data directory to the API's worker processes."""
    os.environ.update(urls.as_env())
    os.environ["SYNTERA_DATA_DIR"] = str(settings.data_dir)
    get_settings.cache_clear()


def serve(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="API processes (uvicorn workers).")
    ] = 1,
    data_dir: DataDirOption = None,
    no_worker: Annotated[
        bool,
        typer.Option(
            "--no-worker",
            help="No document, workflow, agent-reply or insights worker in the API processes.",
        ),
    ] = False,
) -> None:
    """Serve the HTTP API, with a document and a workflow worker in each process (the
    stores must be running: configured URLs, or the embedded servers from `syntera
    services start`)."""
    settings = settings_for(data_dir)
    if settings.database_url is None:
        owner_database_url(settings)  # explains how to start the embedded servers
    _export(settings, resolve_urls(settings, None))
    if no_worker:
        os.environ["SYNTERA_KB_WORKER_ENABLED"] = "false"
        os.environ["SYNTERA_WORKFLOW_WORKER_ENABLED"] = "false"
        os.environ["SYNTERA_REPLY_WORKER_ENABLED"] = "false"
        os.environ["SYNTERA_INSIGHTS_WORKER_ENABLED"] = "false"
    with shared_model(settings):
        uvicorn.run(APP_FACTORY, **uvicorn_options(settings, host, port, workers))


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
    settings = settings_for(data_dir)
    embedded = embedded_services(settings)
    stack = EmbeddedStack(settings.data_dir)
    stop = _stop_requested()
    urls = resolve_urls(settings, start_embedded(settings))
    try:
        for migration in run_migrations(urls.database_url):
            console.print(f"applied {migration.filename}")
        mongo_indexes(
            settings.model_copy(update={"mongodb_uri": urls.mongodb_uri}), status_only=False
        )
        if demo:
            made = seed_demo(urls.database_url)
            console.print(
                f"demo: sign in as {DEMO_EMAIL} / {DEMO_PASSWORD}"
                + ("" if made else " (it existed already)")
            )
        for key, value in urls.as_env().items():
            console.print(f"{key}={value}", highlight=False)
        _export(settings, urls)
        server = uvicorn.Server(
            uvicorn.Config(APP_FACTORY, **uvicorn_options(settings, host, port, workers=1))
        )
        # A Ctrl-C before uvicorn has installed its own handlers still stops it.
        threading.Thread(target=_exit_when, args=(stop, server), daemon=True).start()
        console.print(
            f"syntera is up ({', '.join(embedded) or 'no'} embedded), serving the API on "
            f"http://{server.config.host}:{server.config.port}; Ctrl-C stops it",
            highlight=False,
        )
        if not stop.is_set():
            with shared_model(settings):
                server.run()
    except MigrationError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    finally:
        if embedded:
            stack.stop()
            errors.print("embedded servers stopped")


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, max=64, help="Documents processed at once."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Process uploaded documents and run workflows until SIGINT or SIGTERM (work in
    flight is left under its lease and taken over by the next worker)."""
    settings = settings_for(data_dir)
    if settings.database_url is None:
        owner_database_url(settings)
    urls = resolve_urls(settings, None)
    count = concurrency or settings.kb_worker_concurrency

    from syntera.app import build_workers, cache_for  # FastAPI and every route: only here

    async def work() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        kb = KnowledgeBase.from_settings(settings)
        mongo = create_mongo_client(settings, urls.mongodb_uri)
        redis = create_redis(settings, urls.redis_url)
        await connect_redis(redis)
        conversations = ConversationStore(mongo[settings.mongodb_db])
        try:
            async with create_api_pool(
                settings, urls.api_database_url, system_conninfo=urls.system_url()
            ) as pool:
                workers = build_workers(
                    settings, urls, pool, kb,
                    stored_elsewhere(conversations, kb, redis),
                    jwt_secret=load_keys(settings).jwt_secret, documents=count,
                    cache=cache_for(settings, redis), events=publisher_for(settings, redis),
                    conversations=conversations, models=ChatModels.from_settings(settings),
                )  # fmt: skip
                names = ", ".join(f"{w.name} x{w.copies}" for w in workers)
                console.print(f"worker: {names}; Ctrl-C stops it")
                await run_workers(workers, listen_url(settings, urls), stop)
        finally:
            await redis.aclose()
            await mongo.close()

    asyncio.run(work())


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
