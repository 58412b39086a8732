"""An API server for the auth flows, with its own local mail outbox to read links from."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient

from syntera.app import create_app
from syntera.auth.mail import OUTBOX_FOLDER, LocalOutbox
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import serving
from tests.conftest import TEST_SERVICE_KEY

PASSWORD = "correct horse battery"
SITE = "http://localhost:3000"
ALLOWED = "https://app.example.com/**"


def new_email() -> str:
    return f"flow-{uuid.uuid4().hex[:12]}@example.com"


@dataclasses.dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str

    @property
    def link(self) -> str:
        found = re.search(r"https?://\S+/auth/v1/verify\?\S+", self.text)
        assert found is not None, self.text
        return found.group(0)

    @property
    def code(self) -> str:
        found = re.search(r"code: (\d{6})", self.text)
        assert found is not None, self.text
        return found.group(1)


@dataclasses.dataclass(frozen=True)
class Outbox:
    """The local outbox of one test server."""

    folder: Path

    def all_to(self, recipient: str) -> list[Mail]:
        mails = []
        for path in LocalOutbox(self.folder).messages():
            with path.open("rb") as file:
                message = email.message_from_binary_file(file, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if str(message["To"]) == recipient:
                body = message.get_body(("plain",))
                text = body.get_content() if body is not None else ""
                mails.append(Mail(recipient, str(message["Subject"]), text))
        return mails

    def wait_for(self, recipient: str, count: int = 1, timeout_s: float = 15) -> Mail:
        """The ``count``-th mail to ``recipient``, once the mail worker delivered it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            mails = self.all_to(recipient)
            if len(mails) >= count:
                return mails[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"no mail #{count} to {recipient} within {timeout_s} s")


@dataclasses.dataclass(frozen=True)
class AuthServer:
    url: str
    outbox: Outbox
    settings: Settings

    def client(self) -> SyncGoTrueClient:
        return SyncGoTrueClient(url=f"{self.url}/auth/v1", auto_refresh_token=False)

    def admin(self) -> SyncGoTrueAdminAPI:
        headers = {"Authorization": f"Bearer {TEST_SERVICE_KEY}", "apikey": TEST_SERVICE_KEY}
        return SyncGoTrueAdminAPI(url=f"{self.url}/auth/v1", headers=headers)


def _serve(
    settings: Settings, api_urls: StackUrls, folder: Path, **changes: object
) -> Iterator[AuthServer]:
    flow_settings = settings.model_copy(update={
        "data_dir": folder, "rate_limits_enabled": False, "mail_worker_enabled": True,
        "rate_limit_mail_per_email_s": 1, "rate_limit_mail_per_ip_per_hour": 100_000,
        "auth_keys_refresh_s": 0.3, "auth_site_url": SITE, "auth_redirect_urls": ALLOWED,
        "kb_poll_s": 0.2, **changes,
    })  # fmt: skip
    with serving(create_app(flow_settings, api_urls)) as url:
        yield AuthServer(url, Outbox(folder / OUTBOX_FOLDER), flow_settings)


@pytest.fixture(scope="session")
def auth_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of the auth servers, and so their one outbox: each server's
    mail worker may deliver the other's mail (they share the queue), and every test
    reads the mail of its own addresses."""
    return tmp_path_factory.mktemp("auth-servers")


@pytest.fixture(scope="session")
def auth_server(
    settings: Settings, api_urls: StackUrls, auth_data_dir: Path
) -> Iterator[AuthServer]:
    """The API with mail delivered to a local outbox (one mail per address a second,
    signing keys reloaded every 0.3 s)."""
    yield from _serve(settings, api_urls, auth_data_dir)


@pytest.fixture(scope="session")
def confirming_server(
    settings: Settings, api_urls: StackUrls, auth_data_dir: Path
) -> Iterator[AuthServer]:
    """The same, with SYNTERA_AUTH_CONFIRM_EMAIL on."""
    yield from _serve(settings, api_urls, auth_data_dir, auth_confirm_email=True)
