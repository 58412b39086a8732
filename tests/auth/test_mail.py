"""Mail of the auth flows: delivered by the mail worker over SMTP with STARTTLS and a
login (to a real SMTP server, aiosmtpd), retried with backoff when SMTP is down, kept in
the local outbox otherwise and listed by ``syntera mail``. On a database of its own, so
no other test's mail worker takes these mails."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg_pool import AsyncConnectionPool

from syntera.auth import mail, service
from syntera.config import Settings
from syntera.db.migrations import migrate
from syntera.db.postgres import TenantConnection, create_api_pool
from syntera.embedded import StackUrls
from syntera.unit_of_work import system_transaction
from tests.conftest import StackDatabase, create_database


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (the certificate is its own CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_path, key_path


class Inbox:
    """What the SMTP server received, and whether each came over TLS, logged in."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, bool, Any]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.received.append((bytes(envelope.content or b""), session.ssl is not None,
                              session.authenticated))  # fmt: skip
        return "250 OK"


def authenticate(server: Any, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:  # fmt: skip
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"mailer",
        b"s3cret",
    )
    return AuthResult(success=ok)


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticate,
                            auth_required=True)  # fmt: skip
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


@pytest.fixture
async def mail_pool(
    stack: StackUrls, settings: Settings
) -> AsyncIterator[tuple[AsyncConnectionPool[TenantConnection], StackDatabase]]:
    database = create_database(stack, "mail")
    migrate(database.owner_url)
    async with create_api_pool(settings, database.api_url) as pool:
        yield pool, database


async def ask_recovery(pool: AsyncConnectionPool[TenantConnection], to: str) -> None:
    """An account for ``to`` (made once) and an ask for its recovery mail."""
    async with system_transaction(pool) as conn:
        if await service.find_any_user_by_email(conn, to) is None:
            await service.create_user(conn, to, None, {})
        await mail.ask(conn, "recovery", to, "http://app.test/reset", "http://api.test")


def worker(pool: AsyncConnectionPool[TenantConnection], mailer: mail.Mailer,
           settings: Settings) -> mail.MailWorker:  # fmt: skip
    return mail.MailWorker(pool, mailer, settings, "a secret for the codes")


async def test_mail_goes_out_over_starttls_with_a_login_and_asks_without_account_are_dropped(
    smtp_server: tuple[Inbox, int, Path],
    mail_pool: tuple[AsyncConnectionPool[TenantConnection], StackDatabase],
    settings: Settings,
) -> None:
    inbox, port, cert = smtp_server
    pool, database = mail_pool
    mailer = mail.SmtpMailer.from_url(
        f"smtp://mailer:s3cret@127.0.0.1:{port}?tls=required&ca_file={cert}"
    )
    sender = worker(pool, mailer, settings)
    await ask_recovery(pool, "ada@example.com")
    async with system_transaction(pool) as conn:  # no account: the ask is dropped
        await mail.ask(conn, "recovery", "nobody@example.com", "http://app.test", "http://api.test")
    assert await sender.run_once()
    assert await sender.run_once()
    assert not await sender.run_once()  # nothing more is due
    [(content, over_tls, login)] = inbox.received
    assert over_tls
    assert login is True
    assert b"Subject: Reset your password" in content
    assert b"To: ada@example.com" in content
    assert b"http://api.test/auth/v1/verify?token=" in content
    with psycopg.connect(database.owner_url) as conn:
        rows = conn.execute("SELECT email, outcome, attempts FROM syntera.mail_outbox ORDER BY id")
        assert rows.fetchall() == [("ada@example.com", "sent", 1),
                                   ("nobody@example.com", "no_account", 1)]  # fmt: skip


async def test_mail_that_cannot_be_sent_waits_and_is_retried(
    smtp_server: tuple[Inbox, int, Path],
    mail_pool: tuple[AsyncConnectionPool[TenantConnection], StackDatabase],
    settings: Settings,
) -> None:
    inbox, port, cert = smtp_server
    pool, database = mail_pool
    wrong = mail.SmtpMailer.from_url(f"smtp://mailer:wrong@127.0.0.1:{port}?ca_file={cert}")
    await ask_recovery(pool, "bob@example.com")
    assert await worker(pool, wrong, settings).run_once()
    with psycopg.connect(database.owner_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT done_at, attempts, last_error IS NOT NULL, next_attempt_at > now()"
            " FROM syntera.mail_outbox"
        ).fetchone()
        assert row == (None, 1, True, True)
        right = mail.SmtpMailer.from_url(f"smtp://mailer:s3cret@127.0.0.1:{port}?ca_file={cert}")
        retrying = worker(pool, right, settings)
        assert not await retrying.run_once()  # not due yet: backoff
        conn.execute("UPDATE syntera.mail_outbox SET next_attempt_at = now()")
        assert await retrying.run_once()
    assert len(inbox.received) == 1


async def test_the_local_outbox_is_listed_by_syntera_mail(
    mail_pool: tuple[AsyncConnectionPool[TenantConnection], StackDatabase],
    settings: Settings,
    tmp_path: Path,
) -> None:
    pool, _ = mail_pool
    outbox = mail.LocalOutbox(tmp_path / mail.OUTBOX_FOLDER)
    await ask_recovery(pool, "cleo@example.com")
    assert await worker(pool, outbox, settings).run_once()
    [path] = outbox.messages()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env["COLUMNS"] = "250"
    command = [sys.executable, "-m", "syntera", "mail", "--data-dir", str(tmp_path)]
    listed = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, check=True
    )
    assert "cleo@example.com" in listed.stdout
    assert "Reset your password" in listed.stdout
    assert "http://api.test/auth/v1/verify" in listed.stdout  # the link, not the site's URL
    mail_id = path.stem.split("-")[0].lstrip("0")
    show = [*command[:4], "show", mail_id, "--data-dir", str(tmp_path)]
    shown = await asyncio.to_thread(
        subprocess.run, show, env=env, capture_output=True, text=True, check=True
    )
    assert "http://api.test/auth/v1/verify?token=" in shown.stdout
    assert re.search(r"code: \d{6}", shown.stdout)
