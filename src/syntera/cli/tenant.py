"""``syntera tenant``: move one company between deployments (export, import)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer

from syntera.cli.common import (
    DataDirOption,
    console,
    errors,
    mongo_uri,
    owner_database_url,
    progress_bars,
    settings_for,
)
from syntera.config import Settings
from syntera.ops.tenant_archive import (
    DOCUMENTS,
    ROWS,
    ArchiveError,
    Manifest,
    Progress,
    export_tenant,
    import_tenant,
)

tenant_app = typer.Typer(help="Move one company between deployments.", no_args_is_help=True)


def _stores(settings: Settings) -> tuple[str, str, Path]:
    if settings.kb_storage != "local":
        errors.print("[red]tenant archives carry files of the local storage only[/red]")
        raise typer.Exit(2)
    uri = mongo_uri(settings)
    if uri is None:
        errors.print("[red]MongoDB is not configured or running[/red]")
        raise typer.Exit(2)
    return owner_database_url(settings), uri, settings.data_dir / "kb-files"


@contextmanager
def _archive_errors() -> Iterator[None]:
    """An ArchiveError becomes its message and exit code 1."""
    try:
        yield
    except ArchiveError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error


@contextmanager
def _timed_progress() -> Iterator[tuple[Progress, dict[str, float]]]:
    """The progress bars, and the seconds each step took (from its first report to its
    last), filled in as they go."""
    first: dict[str, float] = {}
    seconds: dict[str, float] = {}
    with progress_bars() as bars:

        def progress(step: str, done: int, total: int | None) -> None:
            now = time.perf_counter()
            seconds[step] = now - first.setdefault(step, now)
            bars(step, done, total)

        yield progress, seconds


def _summary(verb: str, manifest: Manifest, seconds: dict[str, float]) -> None:
    def took(step: str) -> str:
        return f" in {seconds[step]:.1f} s" if step in seconds else ""

    console.print(
        f"{verb} company {manifest.company_id}: {manifest.total('postgres/'):,} rows"
        f"{took(ROWS)}, {manifest.total('mongodb/'):,} documents{took(DOCUMENTS)}, "
        f"{manifest.total('files/'):,} files (schema {manifest.schema_version})"
    )


@tenant_app.command("export")
def export(
    company: Annotated[str, typer.Option("--company", help="The company's id.")],
    output: Annotated[Path, typer.Option("--output", help="The archive to write (.tar.gz).")],
    data_dir: DataDirOption = None,
) -> None:
    """Write one archive of the company: its rows in every table (members with their
    password hashes, not their sessions), its MongoDB documents and its files, with
    counts and checksums in a manifest."""
    settings = settings_for(data_dir)
    try:
        company_id = UUID(company)
    except ValueError:
        errors.print(f"[red]--company: {company!r} is not a company id (a UUID)[/red]")
        raise typer.Exit(2) from None
    url, uri, files = _stores(settings)
    with _archive_errors(), _timed_progress() as (progress, seconds):
        manifest = export_tenant(url, uri, settings.mongodb_db, files, company_id, output, progress)
    _summary(f"exported to {output}:", manifest, seconds)


@tenant_app.command("import")
def import_(
    input_: Annotated[
        Path,
        typer.Option(
            "--input", exists=True, dir_okay=False, help="An archive from `syntera tenant export`."
        ),
    ],
    data_dir: DataDirOption = None,
) -> None:
    """Load an archive into this deployment (same ids). Refuses a company that exists
    here, a changed archive or one of a newer schema, before writing anything."""
    settings = settings_for(data_dir)
    url, uri, files = _stores(settings)
    with _archive_errors(), _timed_progress() as (progress, seconds):
        manifest = import_tenant(input_, url, uri, settings.mongodb_db, files, progress)
    _summary("imported", manifest, seconds)
