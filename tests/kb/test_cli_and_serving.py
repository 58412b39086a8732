"""`syntera kb ingest`, and the worker that `syntera serve` runs inside the API process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.api_fixtures import AuthHeaders
from tests.conftest import StackDatabase
from tests.factories import SeededCompany
from tests.kb import files
from tests.kb.test_processing import only_due, row


def syntera(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("syntera")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def cli_env(settings: Settings, database: StackDatabase, api_urls: StackUrls) -> dict[str, str]:
    return {
        **os.environ,
        **api_urls.as_env(),
        "SYNTERA_DATABASE_URL": database.owner_url,
        "SYNTERA_DATA_DIR": str(settings.data_dir),
    }


@pytest.mark.slow
def test_kb_ingest_queues_every_supported_file_and_reports_the_rest(
    tmp_path: Path,
    tenant: SeededCompany,
    settings: Settings,
    database: StackDatabase,
    api_urls: StackUrls,
    owner_conn: psycopg.Connection,
) -> None:
    (tmp_path / "guides").mkdir()
    (tmp_path / "faq.md").write_bytes(files.MARKDOWN)
    (tmp_path / "guides" / "terms.pdf").write_bytes(files.pdf_bytes("Terms apply."))
    (tmp_path / "guides" / "page.html").write_bytes(files.HTML)
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    (tmp_path / "empty.txt").write_bytes(b"")
    env = cli_env(settings, database, api_urls)
    agent = str(tenant.rows["agent_configs"])
    done = syntera(
        ["kb", "ingest", str(tmp_path), "--company", str(tenant.company_id), "--agent", agent], env
    )
    assert done.returncode == 1, done.stderr  # some files were skipped
    assert "3 documents queued, 2 skipped" in done.stdout
    assert "logo.png: not a supported type" in done.stderr
    assert "empty.txt: file: the file is empty" in done.stderr
    names = owner_conn.execute(
        "SELECT name, status, agent_id::text FROM public.knowledge_base_documents"
        " WHERE company_id = %s AND name <> 'FAQ' ORDER BY name",
        (tenant.company_id,),
    ).fetchall()
    assert names == [
        ("faq.md", "pending", agent),
        ("page.html", "pending", agent),
        ("terms.pdf", "pending", agent),
    ]

    unknown = syntera(["kb", "ingest", str(tmp_path), "--company", str(uuid4())], env)
    assert unknown.returncode == 2
    assert "there is no company" in unknown.stderr
    malformed = syntera(["kb", "ingest", str(tmp_path), "--company", "acme"], env)
    assert malformed.returncode == 2
    assert "not a UUID" in malformed.stderr


async def test_the_api_process_runs_a_worker_unless_told_not_to(
    settings: Settings,
    api_urls: StackUrls,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
) -> None:
    serving = settings.model_copy(update={"kb_worker_enabled": True, "kb_poll_s": 0.1})
    app = create_app(serving, api_urls)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            response = await client.post(
                "/v1/kb/documents",
                headers=auth(tenant.member),
                files={"file": ("faq.md", files.MARKDOWN)},
            )
            document_id = UUID(response.json()["id"])
            # Off the event loop: the app's worker runs on this loop and may hold the row
            # this UPDATE waits for until the loop lets it commit.
            await asyncio.to_thread(only_due, owner_conn, document_id)
            for _ in range(300):
                if row(owner_conn, document_id)["status"] == "completed":
                    break
                await asyncio.sleep(0.1)
    assert row(owner_conn, document_id)["status"] == "completed"
