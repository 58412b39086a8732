"""The console's server (the knowledge-base worker on, so uploads complete) and the
accounts that sign in to it with a password, as people do."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from argon2 import PasswordHasher
from psycopg.types.json import Jsonb

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from syntera.ops.demo import seed_demo
from tests.api_fixtures import serving

PASSWORD = "console-password-1"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "console"


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    user_id: uuid.UUID
    company_id: uuid.UUID | None


@pytest.fixture(scope="module")
def console_url(settings: Settings, api_urls: StackUrls) -> Iterator[str]:
    """The API with its document and workflow workers, served by uvicorn in a thread. For
    one module only: its workers process every company's documents and workflows, which
    other tests expect to find waiting."""
    served = settings.model_copy(update={
        "kb_worker_enabled": True, "kb_poll_s": 0.2, "rate_limits_enabled": False,
        "workflow_worker_enabled": True, "workflow_poll_s": 0.2,
        "events_heartbeat_s": 1.0,
    })  # fmt: skip
    with serving(create_app(served, api_urls)) as url:
        yield url


@pytest.fixture
async def http(console_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_url, timeout=15) as client:
        yield client


@pytest.fixture(scope="session")
def owner_url(api_urls: StackUrls) -> str:
    return api_urls.database_url


@pytest.fixture(scope="session")
def demo(owner_url: str) -> Account:
    """The demo company's owner (`syntera up --demo`), made once."""
    seed_demo(owner_url)
    with psycopg.connect(owner_url) as conn:
        row = conn.execute(
            "SELECT u.id, p.company_id FROM auth.users u JOIN public.users p ON p.id = u.id"
            " WHERE u.email = 'demo@syntera.local'"
        ).fetchone()
    assert row is not None
    return Account("demo@syntera.local", "demo-password", row[0], row[1])


def make_account(
    owner_url: str, *, company: str | None = None, join: uuid.UUID | None = None
) -> Account:
    """A confirmed user with a password: owner of a new company named ``company``, a
    plain user of the company ``join``, or of no company."""
    email = f"console-{uuid.uuid4().hex[:10]}@example.com"
    with psycopg.connect(owner_url) as conn:
        row = conn.execute(
            "INSERT INTO auth.users (aud, role, email, encrypted_password, email_confirmed_at,"
            " raw_app_meta_data) VALUES ('authenticated', 'authenticated', %s, %s, now(), %s)"
            " RETURNING id",
            (email, PasswordHasher().hash(PASSWORD), Jsonb({"provider": "email"})),
        ).fetchone()
        assert row is not None
        user_id, company_id = row[0], join
        if company is not None:
            made = conn.execute(
                "INSERT INTO public.companies (name, owner_id) VALUES (%s, %s) RETURNING id",
                (company, user_id),
            ).fetchone()
            assert made is not None
            company_id = made[0]
        elif join is not None:
            conn.execute(
                "UPDATE public.users SET company_id = %s, role = 'user' WHERE id = %s",
                (join, user_id),
            )
    return Account(email, PASSWORD, user_id, company_id)


async def sign_in(http: httpx.AsyncClient, account: Account) -> dict[str, str]:
    """The Authorization header of ``account``, signed in with its password."""
    response = await http.post(
        "/auth/v1/token",
        params={"grant_type": "password"},
        json={"email": account.email, "password": account.password},
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
