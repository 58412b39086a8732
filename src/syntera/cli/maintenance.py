"""``syntera maintenance``: periodic clean-up."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated
from uuid import UUID

import psycopg
import typer
from psycopg.rows import dict_row
from rich.table import Table

from syntera.cli.common import (
    DataDirOption,
    console,
    errors,
    mongo_uri,
    owner_database_url,
    progress_bars,
    resolve_urls,
    settings_for,
)
from syntera.conversations.reindex import reindex
from syntera.ops.retention import (
    purge_archived_conversations,
    purge_events,
    purge_finished_work,
    unindex_expired_messages,
)
from syntera.purges.registry import COMPANY_STEPS
from syntera.purges.worker import LIST, SEND_BACK

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
    """Delete what is past its retention (defaults: SYNTERA_EVENT_RETENTION_DAYS,
    SYNTERA_ARCHIVED_RETENTION_DAYS, and SYNTERA_WORK_RETENTION_DAYS for the workers'
    finished agent replies and insight jobs, 7 days unless set). Safe to rerun: it deletes
    in batches and a rerun continues where an interrupted one stopped. Messages can also
    expire by themselves (SYNTERA_MESSAGE_RETENTION_DAYS, a TTL index); their rows in the
    search index are deleted here."""
    settings = settings_for(data_dir)
    url = owner_database_url(settings)
    events_days = events_days or settings.event_retention_days
    archived_days = archived_days or settings.archived_retention_days
    message_days = settings.message_retention_days
    work_days = settings.work_retention_days
    replies, jobs = purge_finished_work(url, timedelta(days=work_days))
    console.print(f"agent replies and insight jobs finished over {work_days} days ago: "
                  f"{replies:,} and {jobs:,} deleted")  # fmt: skip
    if message_days is not None:
        gone = unindex_expired_messages(url, timedelta(days=message_days))
        console.print(f"search index rows of messages older than {message_days} days: "
                      f"{gone:,} deleted")  # fmt: skip
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


@maintenance_app.command("reindex-messages")
def reindex_messages(
    company: Annotated[
        str | None, typer.Option("--company", help="Only this company (its id).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every company.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Rebuild the message search index from MongoDB, for one company (--company ID) or
    every company (--all), with a progress bar. Safe to rerun and to run while the API
    serves: each message is upserted, new messages are indexed by their own posts
    meanwhile, and rows whose message is gone are deleted at the end of a company."""
    if (company is None) == (not all_):
        errors.print("[red]name a company (--company ID) or --all[/red]")
        raise typer.Exit(2)
    try:
        company_id = UUID(company) if company is not None else None
    except ValueError:
        errors.print(f"[red]--company: {company!r} is not a company id (a UUID)[/red]")
        raise typer.Exit(2) from None
    settings = settings_for(data_dir)
    urls = resolve_urls(settings, None)
    try:
        with progress_bars() as progress:
            done = asyncio.run(reindex(settings, urls, company_id, progress))
    except ValueError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    console.print(f"{sum(done.values()):,} messages indexed in {len(done)} companies")


PURGE_STATUSES = ("pending", "running", "failed")


@maintenance_app.command("purges")
def purges(
    retry: Annotated[
        str | None, typer.Option("--retry", help="Send a failed purge (its id) back.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Completed purges too.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """The purges of deleted companies: pending, running and failed (with --all,
    completed too), each with the stores it has finished and what it removed there."""
    settings = settings_for(data_dir)
    url = owner_database_url(settings)
    if retry is not None:
        try:
            purge_id = UUID(retry)
        except ValueError:
            errors.print(f"[red]--retry: {retry!r} is not a purge id (a UUID)[/red]")
            raise typer.Exit(2) from None
        with psycopg.connect(url) as conn:
            sent = conn.execute(SEND_BACK, {"id": purge_id}).fetchone() is not None
        if not sent:
            errors.print(f"[red]no failed purge {purge_id}[/red]")
            raise typer.Exit(1)
        console.print(f"purge {purge_id} is pending again; a worker takes it next")
        return
    statuses = (*PURGE_STATUSES, "completed") if all_ else PURGE_STATUSES
    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute(LIST, {"statuses": list(statuses), "limit": 1000}).fetchall()
    if not rows:
        console.print("no purges" + ("" if all_ else " pending, running or failed"))
        return
    table = Table("purge", "company", "status", "attempts", "done", "created", "error")
    for row in rows:
        done = ", ".join(
            f"{step} ({', '.join(f'{k} {v:,}' for k, v in counts.items())})"
            for step, counts in row["steps"].items()
        )
        total = f"{len(row['steps'])}/{len(COMPANY_STEPS)}: {done}" if done else "0/4"
        table.add_row(
            str(row["id"]), str(row["company_id"]), row["status"], str(row["attempts"]), total,
            f"{row['created_at']:%Y-%m-%d %H:%M:%S}", (row["last_error"] or "")[:80],
        )  # fmt: skip
    console.print(table)
