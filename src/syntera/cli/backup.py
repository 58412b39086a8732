"""``syntera backup`` and ``syntera restore``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

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
from syntera.ops.backup import BackupError, Targets
from syntera.ops.backup import backup as run_backup
from syntera.ops.backup import restore as run_restore


def stores_to_back_up(settings: Settings) -> Targets:
    uri = mongo_uri(settings)
    if uri is None:
        errors.print("[red]No SYNTERA_MONGODB_URI and the embedded MongoDB is not running.[/red]")
        raise typer.Exit(2)
    return Targets(owner_database_url(settings), uri, settings.mongodb_db)


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
    settings = settings_for(data_dir)
    targets = stores_to_back_up(settings)
    if schedule not in (None, "daily"):
        raise typer.BadParameter("--schedule takes `daily`")
    while True:
        path = output
        if schedule:
            output.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            path = output / f"syntera-{stamp}.tar.gz"
        try:
            with progress_bars() as progress:
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


def restore(
    input_path: Annotated[Path, typer.Option("--input", help="An archive from `syntera backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the data of non-empty stores.")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Restore an archive into the configured stores and check the counts against its
    manifest. Refuses stores that hold data unless --force; a rerun with --force is safe."""
    settings = settings_for(data_dir)
    targets = stores_to_back_up(settings)
    try:
        with progress_bars() as progress:
            found = run_restore(targets, input_path, force=force, progress=progress)
    except BackupError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(
        f"restored {sum(found['postgres'].values()):,} rows and "
        f"{sum(found['mongodb'].values()):,} documents; counts match the manifest"
    )
