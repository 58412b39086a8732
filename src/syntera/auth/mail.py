"""The mail of the auth flows: what it says, the queue it waits in, and the way out.

A request that asks for mail (recovery, magic link, confirmation, email change) records
the ask in ``syntera.mail_outbox`` in its own transaction — only the kind and the
address, whether or not the address has an account, so neither the answer nor its
timing can tell (a refused change asks nothing; a committed ask is not lost when SMTP is
down). The mail worker (in each API process and in ``syntera worker``) takes each ask
under a lease, finds the account, issues the token (``syntera.auth.onetime``) and sends
the mail, or drops the ask when there is no such account; a failed delivery is retried
with backoff, with a new token. No link is ever stored. Delivery goes to SMTP when
``SYNTERA_SMTP_URL`` is set, otherwise to the local outbox, a folder of ``.eml`` files
under the data directory that ``syntera mail`` lists — as Supabase's local stack catches
its mail — so a developer can open the link.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from string import Template
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from uuid import UUID

import aiosmtplib
from psycopg_pool import AsyncConnectionPool

from syntera.auth import onetime, service
from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.unit_of_work import system_transaction

log = logging.getLogger(__name__)

CHANNEL = "syntera_mail"
LEASE_S = 60
MAX_ATTEMPTS = 10
OUTBOX_FOLDER = "mail"

# Each kind of mail: its subject and text. $link is the verification link, $code the
# six-digit code for the same token, $site_url the application's address.
TEMPLATES: dict[str, tuple[str, str]] = {
    "recovery": (
        "Reset your password",
        "Someone asked to reset the password of $email at $site_url.\n\n"
        "Follow this link to choose a new one:\n$link\n\n"
        "Or enter this code: $code\n\n"
        "The link works once, for $minutes minutes. If you did not ask, ignore this mail.\n",
    ),
    "magiclink": (
        "Your sign-in link",
        "Follow this link to sign in to $site_url as $email:\n$link\n\n"
        "Or enter this code: $code\n\n"
        "The link works once, for $minutes minutes.\n",
    ),
    "signup": (
        "Confirm your email",
        "Welcome to $site_url. Confirm that $email is yours:\n$link\n\n"
        "Or enter this code: $code\n\nThe link works once, for $minutes minutes.\n",
    ),
    "email_change": (
        "Confirm your new email",
        "Confirm that $email should become the address of your account at $site_url:\n"
        "$link\n\nOr enter this code: $code\n\n"
        "The link works once, for $minutes minutes. If you did not ask, ignore this mail.\n",
    ),
    "invite": (
        "You have been invited",
        "You have been invited to $site_url. Follow this link to accept:\n$link\n\n"
        "Or enter this code: $code\n\nThe link works once, for $minutes minutes.\n",
    ),
}

ASK = """
INSERT INTO syntera.mail_outbox (kind, email, user_id, redirect_to, base_url)
VALUES (%(kind)s, lower(%(email)s), %(user_id)s, %(redirect_to)s, %(base_url)s)
"""

CLAIM = """
UPDATE syntera.mail_outbox
   SET leased_until = now() + make_interval(secs => %(lease_s)s), attempts = attempts + 1
 WHERE id = (
   SELECT id FROM syntera.mail_outbox
    WHERE done_at IS NULL AND next_attempt_at <= now() AND attempts < %(max_attempts)s
      AND (leased_until IS NULL OR leased_until < now())
    ORDER BY id
    FOR UPDATE SKIP LOCKED
    LIMIT 1)
RETURNING id, kind, email, user_id, redirect_to, base_url, attempts
"""

DONE = """
UPDATE syntera.mail_outbox
   SET done_at = now(), outcome = %(outcome)s, leased_until = NULL, last_error = NULL
 WHERE id = %(id)s
"""

FAILED = """
UPDATE syntera.mail_outbox
   SET leased_until = NULL, last_error = %(error)s,
       next_attempt_at = now() + make_interval(secs => least(power(2, attempts), 3600))
 WHERE id = %(id)s
"""


def render(
    kind: str, *, email: str, link: str, code: str, site_url: str, minutes: int
) -> tuple[str, str]:
    """The subject and text of a mail of ``kind``."""
    subject, body = TEMPLATES[kind]
    values = {"email": email, "link": link, "code": code, "site_url": site_url,
              "minutes": str(minutes)}  # fmt: skip
    return subject, Template(body).substitute(values)


async def ask(
    conn: TenantConnection,
    kind: str,
    email: str,
    redirect_to: str,
    base_url: str,
    user_id: UUID | None = None,
) -> None:
    """Ask for a mail of ``kind`` about ``email``, in the caller's transaction (the worker
    takes it once that commits). ``user_id`` is set for an email change, ``email`` being
    the new address; without it, a mail of the account that ``email`` names."""
    await conn.execute(ASK, {"kind": kind, "email": email, "user_id": user_id,
                             "redirect_to": redirect_to, "base_url": base_url})  # fmt: skip


def verify_link(base_url: str, kind: str, token: str, redirect_to: str) -> str:
    query = urlencode({"token": token, "type": kind, "redirect_to": redirect_to})
    return f"{base_url.rstrip('/')}/auth/v1/verify?{query}"


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class LocalOutbox:
    """Mail kept as ``.eml`` files in a folder (the embedded default)."""

    folder: Path

    async def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{os.urandom(4).hex()}.eml"
        stamp = message["X-Syntera-Mail-Id"] or "0"
        target = self.folder / f"{int(stamp):08d}-{name}"
        partial = target.with_suffix(".part")
        partial.write_bytes(message.as_bytes())
        partial.chmod(0o600)
        partial.rename(target)  # whole files only: a reader never sees half a mail

    def messages(self) -> list[Path]:
        """The kept mail, oldest first."""
        return sorted(self.folder.glob("*.eml")) if self.folder.exists() else []


@dataclass(frozen=True)
class SmtpMailer:
    """Mail over SMTP: ``smtp://`` with STARTTLS when the server offers it (required with
    ``?tls=required``), ``smtps://`` with TLS from the first byte."""

    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    require_tls: bool
    tls_context: ssl.SSLContext

    @classmethod
    def from_url(cls, url: str) -> SmtpMailer:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                f"SYNTERA_SMTP_URL: {parts.scheme}:// is not smtp:// or smtps://host[:port]"
            )
        query = parse_qs(parts.query)
        ca_file = query.get("ca_file")
        context = ssl.create_default_context(cafile=ca_file[0] if ca_file else None)
        implicit = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
            require_tls=(query.get("tls") or [""])[0] == "required",
            tls_context=context,
        )

    async def send(self, message: EmailMessage) -> None:
        await aiosmtplib.send(
            message,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.implicit_tls,
            # None: STARTTLS if the server offers it; True: fail if it does not.
            start_tls=False if self.implicit_tls else (True if self.require_tls else None),
            tls_context=self.tls_context,
            timeout=30,
        )


def mailer_for(settings: Settings) -> Mailer:
    if settings.smtp_url:
        return SmtpMailer.from_url(settings.smtp_url)
    return LocalOutbox(settings.data_dir / OUTBOX_FOLDER)


def message(sender: str, recipient: str, subject: str, body: str, mail_id: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = subject
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip("> "))
    mail["X-Syntera-Mail-Id"] = str(mail_id)
    mail.set_content(body)
    return mail


@dataclass(frozen=True)
class Recipient:
    user_id: UUID
    email: str


async def recipient(conn: TenantConnection, ask: dict[str, Any]) -> Recipient | None:
    """Who an ask is for, or None when it has no account to go to: recovery and magic
    links go to an account that may sign in, a confirmation to an unconfirmed one, an
    email change to its new address (while no other account took it)."""
    if ask["kind"] == "email_change":
        if ask["user_id"] is not None:  # asked by the signed-in user: email is the new one
            user, new_email = await service.find_user(conn, ask["user_id"]), ask["email"]
        else:  # a resend, naming the current address
            user = await service.find_user_by_email(conn, ask["email"])
            new_email = await onetime.pending_email_change(conn, user["id"]) if user else None
        if user is None or new_email is None:
            return None
        if await service.find_any_user_by_email(conn, new_email) is not None:
            return None
        return Recipient(user["id"], new_email)
    user = await service.find_user_by_email(conn, ask["email"])  # not banned, not deleted
    if user is None or (ask["kind"] == "signup" and user["email_confirmed_at"] is not None):
        return None
    return Recipient(user["id"], user["email"])


class MailWorker:
    """Turns asks into mail, one at a time, under a lease (a worker that dies leaves its
    ask to be taken over when the lease ends)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        mailer: Mailer,
        settings: Settings,
        secret: str,
    ) -> None:
        self.pool, self.mailer, self.settings, self.secret = pool, mailer, settings, secret

    async def run_once(self) -> bool:
        """Handle one due ask; whether there was one."""
        async with system_transaction(self.pool) as conn:
            params = {"lease_s": LEASE_S, "max_attempts": MAX_ATTEMPTS}
            ask = await (await conn.execute(CLAIM, params)).fetchone()
        if ask is None:
            return False
        settings = self.settings
        async with system_transaction(self.pool) as conn:
            to = await recipient(conn, ask)
            if to is None:
                await conn.execute(DONE, {"id": ask["id"], "outcome": "no_account"})
                return True
            issued = await onetime.issue(
                conn, self.secret, ask["kind"], to.user_id, to.email, ask["redirect_to"],
                settings.auth_token_lifetime_s,
            )  # fmt: skip
        link = verify_link(ask["base_url"], ask["kind"], issued.link_token, ask["redirect_to"])
        subject, body = render(
            ask["kind"], email=to.email, link=link, code=issued.code,
            site_url=settings.auth_site_url, minutes=settings.auth_token_lifetime_s // 60,
        )  # fmt: skip
        try:
            await self.mailer.send(message(settings.mail_from, to.email, subject, body, ask["id"]))
        except (OSError, aiosmtplib.SMTPException) as error:
            log.warning("mail %s to %s: attempt %s failed: %s", ask["id"], to.email,
                        ask["attempts"], error)  # fmt: skip
            async with system_transaction(self.pool) as conn:
                await conn.execute(FAILED, {"id": ask["id"], "error": str(error)[:500]})
            return True
        async with system_transaction(self.pool) as conn:
            await conn.execute(DONE, {"id": ask["id"], "outcome": "sent"})
        return True
