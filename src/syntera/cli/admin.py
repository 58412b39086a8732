"""``syntera admin``: who operates the platform (sees /v1/admin and the console's
operator pages, never a company's data)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from syntera.cli.common import DataDirOption, console, errors, owner_database_url, settings_for
from syntera.ops import operator

admin_app = typer.Typer(help="Platform operators: grant, revoke, list.", no_args_is_help=True)

EmailArgument = Annotated[str, typer.Argument(help="The user's email address.")]


@admin_app.command("grant")
def grant(email: EmailArgument, data_dir: DataDirOption = None) -> None:
    """Make a user (of no company) a platform operator. Safe to rerun: an operator stays one."""
    _set(email, True, data_dir)


@admin_app.command("revoke")
def revoke(email: EmailArgument, data_dir: DataDirOption = None) -> None:
    """Make an operator a plain user again; their tokens lose the operator views at once.
    Safe to rerun."""
    _set(email, False, data_dir)


@admin_app.command("list")
def list_operators(data_dir: DataDirOption = None) -> None:
    """The platform's operators."""
    rows = operator.operators(owner_database_url(settings_for(data_dir)))
    table = Table("email", "since")
    for row in rows:
        table.add_row(row["email"], f"{row['granted_at']:%Y-%m-%d}")
    console.print(table if rows else "no operators: `syntera admin grant EMAIL` makes one")


def _set(email: str, value: bool, data_dir: DataDirOption) -> None:
    url = owner_database_url(settings_for(data_dir))
    try:
        changed = operator.set_operator(url, email, value)
    except operator.OperatorError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    state = "an operator" if value else "not an operator"
    console.print(f"{email} is {state}" + ("" if changed else " (unchanged)"))
