"""``syntera auth`` (the access-token signing keys) and ``syntera mail`` (the local
outbox of the embedded default)."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from syntera.auth import keys
from syntera.auth.mail import OUTBOX_FOLDER, LocalOutbox
from syntera.auth.tokens import api_key, load_keys
from syntera.cli.common import DataDirOption, console, errors, owner_database_url, settings_for

auth_app = typer.Typer(help="Access-token signing keys.", no_args_is_help=True)
mail_app = typer.Typer(
    help="The mail kept by the embedded default (no SYNTERA_SMTP_URL): list, show.",
    invoke_without_command=True,
)


@auth_app.command("keys")
def list_keys(data_dir: DataDirOption = None) -> None:
    """The signing keys (which signs, which only verify, which are retired), then the
    project's API keys as Supabase's clients take them: SUPABASE_ANON_KEY (the ``anon``
    role, for browsers) and SUPABASE_SERVICE_ROLE_KEY (``service_role``, which bypasses
    row-level security: keep it on servers). Both are JWTs of the HS256 secret, the same
    every time for the same secret."""
    settings = settings_for(data_dir)
    with psycopg.connect(owner_database_url(settings)) as conn:
        rows = keys.listing(conn)
    table = Table("kid", "algorithm", "created", "signs from", "retired")
    for kid, algorithm, created, signing_from, retired in rows:
        table.add_row(kid, algorithm, f"{created:%Y-%m-%d %H:%M:%S}",
                      f"{signing_from:%Y-%m-%d %H:%M:%S}",
                      f"{retired:%Y-%m-%d %H:%M:%S}" if retired else "-")  # fmt: skip
    console.print(table if rows else "no signing keys: tokens are signed with the HS256 secret")
    secrets = load_keys(settings)
    # Plain lines a shell can eval, never wrapped (a wrapped key would not paste).
    print(f"SUPABASE_ANON_KEY={api_key(secrets, 'anon')}")
    print(f"SUPABASE_SERVICE_ROLE_KEY={api_key(secrets, 'service_role')}")


@auth_app.command("rotate-key")
def rotate_key(
    now: Annotated[
        bool,
        typer.Option("--now", help="Sign with it at once (one API process, or tests)."),
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Add a new signing key. It signs once every API process has loaded it (two refresh
    periods, SYNTERA_AUTH_KEYS_REFRESH_S); tokens signed by the previous key stay valid
    until `syntera auth retire-key` retires it."""
    settings = settings_for(data_dir)
    delay = 0.0 if now else 2 * settings.auth_keys_refresh_s
    with psycopg.connect(owner_database_url(settings)) as conn:
        kid = keys.rotate(conn, delay)
    console.print(f"added key {kid}; it signs in {delay:.0f} s")


@auth_app.command("retire-key")
def retire_key(kid: str, data_dir: DataDirOption = None) -> None:
    """Retire a key: tokens it signed stop verifying (within a refresh period)."""
    settings = settings_for(data_dir)
    with psycopg.connect(owner_database_url(settings)) as conn:
        try:
            keys.retire(conn, kid)
        except keys.KeyOperationError as error:
            errors.print(f"[red]{error}[/red]")
            raise typer.Exit(1) from error
    console.print(f"retired key {kid}")


def _outbox(data_dir: DataDirOption) -> LocalOutbox:
    settings = settings_for(data_dir)
    if settings.smtp_url:
        errors.print("[yellow]SYNTERA_SMTP_URL is set: mail goes to SMTP, not here[/yellow]")
    return LocalOutbox(settings.data_dir / OUTBOX_FOLDER)


def _read(path: object) -> EmailMessage:
    with open(str(path), "rb") as file:
        parsed = email.message_from_binary_file(file, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    return body.get_content() if body is not None else ""


@mail_app.callback()
def mail(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest this many.")] = 20,
    data_dir: DataDirOption = None,
) -> None:
    """The newest mail first: when, to whom, what, and its link."""
    if ctx.invoked_subcommand is not None:
        return
    messages = _outbox(data_dir).messages()[-limit:][::-1]
    if not messages:
        console.print("no mail")
        return
    table = Table("id", "date", "to", "subject", "link")
    for path in messages:
        message = _read(path)
        text = _text(message)
        link = re.search(r"https?://\S+/auth/v1/verify\?\S+", text) or re.search(
            r"https?://\S+", text
        )
        table.add_row(path.stem.split("-")[0].lstrip("0") or "0", str(message["Date"]),
                      str(message["To"]), str(message["Subject"]),
                      link.group(0) if link else "")  # fmt: skip
    console.print(table)


@mail_app.command("show")
def show(mail_id: int, data_dir: DataDirOption = None) -> None:
    """One mail, whole."""
    found = [p for p in _outbox(data_dir).messages() if p.stem.startswith(f"{mail_id:08d}-")]
    if not found:
        errors.print(f"[red]no mail {mail_id}[/red]")
        raise typer.Exit(1)
    message = _read(found[0])
    for header in ("Date", "From", "To", "Subject"):
        console.print(f"{header}: {message[header]}", highlight=False)
    console.print()
    console.print(_text(message), highlight=False, soft_wrap=True)
