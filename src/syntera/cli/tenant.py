"""``syntera tenant``: move one company between deployments (export, import)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from uuid import UUID

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from syntera.cli.common import (
    DataDirOption,
    console,
    errors,
    mongo_uri,
    owner_database_url,
    settings_for,
)
from syntera.config import Settings
from syntera.ops.tenant_archive import ArchiveError, Manifest, export_tenant, import_tenant

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
def _progress(first: str, verb: str) -> Iterator[Callable[[str, int], None]]:
    """A spinner saying what is being done; an ArchiveError becomes its message and
    exit code 1."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console) as bar:
        task = bar.add_task(first, total=None)

        def step(what: str, count: int) -> None:
            bar.update(task, description=f"{verb} {what} ({count:,})")

        try:
            yield step
        except ArchiveError as error:
            errors.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from error


def _summary(verb: str, manifest: Manifest) -> None:
    rows = sum(n for name, n in manifest.counts.items() if name.startswith("postgres/"))
    documents = sum(n for name, n in manifest.counts.items() if name.startswith("mongodb/"))
    files = sum(n for name, n in manifest.counts.items() if name.startswith("files/"))
    console.print(
        f"{verb} company {manifest.company_id}: {rows:,} rows, {documents:,} documents, "
        f"{files:,} files (schema {manifest.schema_version})"
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
    with _progress("exporting", "exported") as step:
        manifest = export_tenant(url, uri, settings.mongodb_db, files, company_id, output, step)
    _summary(f"exported to {output}:", manifest)


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
    with _progress("checking the archive", "imported") as step:
        manifest = import_tenant(input_, url, uri, settings.mongodb_db, files, step)
    _summary("imported", manifest)
