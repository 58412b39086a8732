"""What every sub-command shares: the consoles, the data-directory option, settings,
where the stores are, and a progress display."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from syntera.config import Settings, get_settings
from syntera.embedded import MONGODB, POSTGRES, REDIS, EmbeddedStack, StackUrls, configured_urls

console = Console()
errors = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where the embedded servers keep their data [./.syntera]."),
]


def settings_for(data_dir: Path | None) -> Settings:
    """The settings, with ``--data-dir`` if given."""
    settings = get_settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    return settings


def embedded_services(settings: Settings) -> tuple[str, ...]:
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


def owner_database_url(settings: Settings) -> str:
    """The owner connection: configured, or the running embedded PostgreSQL (exit 2 with
    what to do when neither)."""
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


def mongo_uri(settings: Settings) -> str | None:
    """The MongoDB URI: configured, or the running embedded server's; None if neither."""
    if settings.mongodb_uri is not None:
        return settings.mongodb_uri
    stack = EmbeddedStack(settings.data_dir)
    return stack.urls().mongodb_uri if stack.pid_of(MONGODB) is not None else None


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress display, one bar per step, fed by (step, done, total); a total of
    None shows a bar that only counts."""
    bars: dict[str, Any] = {}
    with Progress(
        "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=errors,
    ) as progress:  # fmt: skip

        def update(step: str, done: int, total: int | None) -> None:
            if step not in bars:
                bars[step] = progress.add_task(step, total=total)
            progress.update(bars[step], completed=done, total=total)

        yield update
