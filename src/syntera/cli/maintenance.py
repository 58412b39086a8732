"""``syntera maintenance``: periodic clean-up."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from syntera.cli.common import (
    DataDirOption,
    console,
    errors,
    mongo_uri,
    owner_database_url,
    settings_for,
)
from syntera.ops.retention import purge_archived_conversations, purge_events

maintenance_app = typer.Typer(help="Periodic maintenance.", no_args_is_help=True)


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
    settings = settings_for(data_dir)
    url = owner_database_url(settings)
    events_days = events_days or settings.event_retention_days
    archived_days = archived_days or settings.archived_retention_days
    if events_days is None and archived_days is None:
        errors.print("nothing to do: no retention is configured or given")
        return
    if events_days is not None:
        deleted = purge_events(url, timedelta(days=events_days))
        console.print(f"analytics events older than {events_days} days: {deleted:,} deleted")
    if archived_days is not None:
        uri = mongo_uri(settings)
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
