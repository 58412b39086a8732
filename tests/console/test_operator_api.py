"""The operator's views (/v1/admin) and `syntera admin`: who may see them, what they
show, and that an operator sees figures, never a company's rows. Also the console's and
/docs' assets, served from the package."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import psycopg
import pytest

from syntera.config import Settings
from syntera.embedded import StackUrls
from syntera.ops.operator import EMBEDDED_FILES, record_sizes
from syntera.tenancy import Principal
from tests.api_fixtures import AuthHeaders
from tests.console.conftest import make_account
from tests.factories import SeededCompany

ADMIN_PATHS = ("/v1/admin/db", "/v1/admin/queues", "/v1/admin/purges", "/v1/admin/backups",
               "/v1/admin/sizes")  # fmt: skip


def syntera_admin(owner_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    env.update(SYNTERA_DATABASE_URL=owner_url, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "syntera", "admin", *args], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def operator_headers(owner_url: str, auth: AuthHeaders) -> dict[str, str]:
    account = make_account(owner_url)
    granted = syntera_admin(owner_url, "grant", account.email)
    assert granted.returncode == 0, granted.stderr
    return auth(Principal.user(account.user_id))


async def test_members_owners_and_plain_users_get_403_from_every_operator_view(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant_a: SeededCompany, owner_url: str
) -> None:
    nobody = make_account(owner_url)
    for headers in (auth(tenant_a.owner), auth(tenant_a.member),
                    auth(Principal.user(nobody.user_id)), {}):  # fmt: skip
        for path in ADMIN_PATHS:
            response = await client.get(path, headers=headers)
            assert response.status_code in (401, 403), (path, response.status_code)


async def test_operator_and_service_key_see_every_view(
    client: httpx.AsyncClient, auth: AuthHeaders, operator_headers: dict[str, str]
) -> None:
    for headers in (operator_headers, auth(Principal.service())):
        for path in ADMIN_PATHS:
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.text)


async def test_operator_reads_no_company_rows(
    client: httpx.AsyncClient, operator_headers: dict[str, str], tenant_a: SeededCompany
) -> None:
    for path in ("/v1/contacts", "/v1/conversations", "/v1/deals", "/v1/kb/documents",
                 f"/v1/contacts/{tenant_a.rows['contacts']}"):  # fmt: skip
        response = await client.get(path, headers=operator_headers)
        assert response.status_code == 403, (path, response.status_code)
        assert "company" in response.json()["detail"]


def test_grant_refuses_a_company_member_and_says_why(
    owner_url: str, tenant_a: SeededCompany
) -> None:
    with psycopg.connect(owner_url) as conn:
        row = conn.execute(
            "SELECT email FROM auth.users WHERE id = %s", (tenant_a.member.user_id,)
        ).fetchone()
    assert row is not None
    refused = syntera_admin(owner_url, "grant", row[0])
    assert refused.returncode == 1
    assert "belongs to no company" in refused.stderr + refused.stdout
    missing = syntera_admin(owner_url, "grant", "nobody-here@example.com")
    assert missing.returncode == 1
    assert "no user with email" in missing.stderr + missing.stdout


async def test_revoking_takes_the_views_away_from_a_token_at_once(
    client: httpx.AsyncClient, auth: AuthHeaders, owner_url: str
) -> None:
    account = make_account(owner_url)
    headers = auth(Principal.user(account.user_id))
    assert syntera_admin(owner_url, "grant", account.email).returncode == 0
    again = syntera_admin(owner_url, "grant", account.email)
    assert "unchanged" in again.stdout  # a rerun is safe
    assert (await client.get("/v1/admin/queues", headers=headers)).status_code == 200
    listed = syntera_admin(owner_url, "list")
    assert account.email in listed.stdout
    assert syntera_admin(owner_url, "revoke", account.email).returncode == 0
    assert (await client.get("/v1/admin/queues", headers=headers)).status_code == 403


async def test_an_operator_who_joins_a_company_is_a_member_only(
    client: httpx.AsyncClient, auth: AuthHeaders, owner_url: str, tenant_a: SeededCompany
) -> None:
    account = make_account(owner_url)
    assert syntera_admin(owner_url, "grant", account.email).returncode == 0
    with psycopg.connect(owner_url) as conn:
        conn.execute(
            "UPDATE public.users SET company_id = %s WHERE id = %s",
            (tenant_a.company_id, account.user_id),
        )
    headers = auth(Principal.user(account.user_id))
    assert (await client.get("/v1/admin/db", headers=headers)).status_code == 403


async def test_slow_statements_are_listed_with_their_plans(
    client: httpx.AsyncClient, operator_headers: dict[str, str], owner_url: str
) -> None:
    with psycopg.connect(owner_url) as conn:
        conn.execute("SELECT pg_sleep(0.15), count(*) FROM public.contacts")
    response = await client.get("/v1/admin/db", headers=operator_headers)
    postgres = response.json()["postgres"]
    assert postgres["slow_threshold_ms"] == 100
    slow = [
        s
        for s in postgres["slow_statements"]
        if "pg_sleep" in s["query"] and "contacts" in s["query"]
    ]
    assert slow, postgres["slow_statements"]
    assert slow[0]["max_ms"] >= 150
    assert "contacts" in slow[0]["plan"]  # the generic plan names the table it reads
    pool = postgres["pool"]
    assert pool["max"] >= pool["in_use"] >= 0
    assert {"timeouts", "connection_errors", "waiting"} <= pool.keys()
    assert {"open", "in_use", "max", "check_out_failures"} <= response.json()["mongodb"][
        "pool"
    ].keys()


async def test_queues_count_jobs_per_state(
    client: httpx.AsyncClient, operator_headers: dict[str, str], tenant_a: SeededCompany
) -> None:
    response = await client.get("/v1/admin/queues", headers=operator_headers)
    rows = response.json()["data"]
    documents = {row["state"]: row["jobs"] for row in rows if row["queue"] == "documents"}
    assert sum(documents.values()) >= 1  # the seeded FAQ
    assert all(set(row) == {"queue", "state", "jobs", "oldest_waiting"} for row in rows)


async def test_backups_on_disk_are_listed_newest_first(
    client: httpx.AsyncClient, operator_headers: dict[str, str], settings: Settings
) -> None:
    folder = settings.data_dir / "backups"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for name in ("syntera-20260101T000000Z.tar.gz", "syntera-20260102T000000Z.tar.gz"):
        path = folder / name
        with tarfile.open(path, "w:gz") as archive:
            archive.addfile(tarfile.TarInfo("manifest.json"))
        made.append(path)
    os.utime(made[0], (1_000_000, 1_000_000))
    response = await client.get("/v1/admin/backups", headers=operator_headers)
    listed = response.json()
    assert Path(listed["folder"]) == folder
    names = [backup["name"] for backup in listed["data"]]
    assert names.index(made[1].name) < names.index(made[0].name)


async def test_sizes_are_sampled_once_per_period_and_drawn(
    client: httpx.AsyncClient,
    operator_headers: dict[str, str],
    api_urls: StackUrls,
    settings: Settings,
) -> None:
    files = settings.data_dir / "mongodb"
    record_sizes(api_urls.database_url, api_urls.mongodb_uri, settings.mongodb_db, 0, files)
    # A second sampler within the period records nothing.
    assert not record_sizes(
        api_urls.database_url, api_urls.mongodb_uri, settings.mongodb_db, 3600, files
    )
    response = await client.get("/v1/admin/sizes", headers=operator_headers)
    sizes = response.json()
    assert {row["store"] for row in sizes["totals"]} == {"postgres", "mongodb"}
    # The embedded server is weighed on disk, never asked for collStats (which reads
    # every document under its lock there).
    assert [c["name"] for c in sizes["collections_then"]] == [EMBEDDED_FILES]
    assert sizes["collections_then"][0]["bytes_then"] > 0
    contacts = next(t for t in sizes["tables"] if t["name"] == "public.contacts")
    assert contacts["bytes_then"] is not None
    assert contacts["bytes"] > 0
    refused = await client.get("/v1/admin/sizes", headers=operator_headers, params={"days": 0})
    assert refused.status_code == 422


async def test_console_and_docs_assets_come_from_the_package(client: httpx.AsyncClient) -> None:
    page = await client.get("/console")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "http" not in policy
    for asset in ("app.js", "api.js", "style.css", "vendor/uplot/uPlot.iife.min.js",
                  "vendor/uplot/LICENSE"):  # fmt: skip
        assert (await client.get(f"/console/assets/{asset}")).status_code == 200, asset
    docs = await client.get("/docs")
    assert "cdn" not in docs.text.lower()
    assert "/docs/assets/swagger-ui-bundle.js" in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
        assert (await client.get(f"/docs/assets/{asset}")).status_code == 200
    redoc = await client.get("/redoc")
    assert "/docs/assets/redoc.standalone.js" in redoc.text
    assert "fonts.googleapis" not in redoc.text
    assert (await client.get("/console/assets/../../config.py")).status_code == 404
