"""``syntera kb``: the knowledge base from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from syntera.cli.common import (
    DataDirOption,
    console,
    errors,
    owner_database_url,
    progress_bars,
    resolve_urls,
    settings_for,
)
from syntera.kb.ingest import ingest_directory

kb_app = typer.Typer(help="The knowledge base.", no_args_is_help=True)


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
    settings = settings_for(data_dir)
    if settings.database_url is None:
        owner_database_url(settings)
    urls = resolve_urls(settings, None)
    try:
        with progress_bars() as progress:
            report = asyncio.run(
                ingest_directory(
                    settings,
                    urls.api_database_url,
                    directory,
                    company,
                    agent,
                    wait,
                    progress,
                    system_database_url=urls.system_url(),
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
