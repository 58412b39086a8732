"""`syntera tenant export` and `import`: a company moved to another deployment."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from syntera.app import create_app
from syntera.config import Settings
from syntera.db.migrations import migrate
from syntera.embedded import StackUrls
from tests.api_fixtures import AuthHeaders
from tests.conftest import StackDatabase, create_database
from tests.factories import SeededCompany
from tests.purges.test_contact_erasure import contact_with_history

pytestmark = pytest.mark.slow


def tenant_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SYNTERA_")}
    return subprocess.run(
        [sys.executable, "-m", "syntera", "tenant", *args], env={**base, **env, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Deployment:
    database: StackDatabase
    mongodb_db: str
    data_dir: Path

    def env(self, stack: StackUrls) -> dict[str, str]:
        return {"SYNTERA_DATABASE_URL": self.database.owner_url,
                "SYNTERA_MONGODB_URI": stack.mongodb_uri,
                "SYNTERA_MONGODB_DB": self.mongodb_db,
                "SYNTERA_DATA_DIR": str(self.data_dir)}  # fmt: skip


def fresh_deployment(stack: StackUrls, tmp_path: Path) -> Deployment:
    database = create_database(stack, "moved")
    migrate(database.owner_url)
    name = f"moved_{uuid.uuid4().hex[:8]}"
    return Deployment(database, name, tmp_path / name)


async def answers(app: Any, headers: dict[str, str], paths: list[str]) -> list[Any]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            return [(await http.get(path, headers=headers)).json() for path in paths]


async def test_a_company_exported_then_imported_elsewhere_answers_the_same(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    stack: StackUrls,
    database: StackDatabase,
    api_urls: StackUrls,
    settings: Settings,
    tmp_path: Path,
) -> None:
    admin = auth(tenant.admin)
    moved = await contact_with_history(client, admin, tenant, "mover@example.com")
    uploaded = await client.post(
        "/v1/kb/documents", headers=admin, files={"file": ("faq.txt", b"Shipping: 2 days.")}
    )
    assert uploaded.status_code == 202
    conversation = moved["conversation"]["id"]
    paths = ["/v1/companies/current", "/v1/contacts?limit=100", "/v1/deals?limit=100",
             "/v1/conversations?limit=100", f"/v1/conversations/{conversation}/messages",
             "/v1/kb/documents", "/v1/team", "/v1/agents"]  # fmt: skip
    source = Deployment(database, settings.mongodb_db, settings.data_dir)
    archive = tmp_path / "company.tar.gz"
    exported = tenant_cli(source.env(stack), "export", "--company", str(tenant.company_id),
                          "--output", str(archive))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "exported to" in exported.stdout

    target = fresh_deployment(stack, tmp_path)
    imported = tenant_cli(target.env(stack), "import", "--input", str(archive))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert f"imported company {tenant.company_id}" in imported.stdout
    again = tenant_cli(target.env(stack), "import", "--input", str(archive))
    assert again.returncode == 1
    assert "already exists" in again.stderr

    before = [(await client.get(path, headers=admin)).json() for path in paths]
    there = create_app(
        settings.model_copy(update={"mongodb_db": target.mongodb_db, "data_dir": target.data_dir}),
        dataclasses.replace(api_urls, database_url=target.database.owner_url,
                            api_database_url=target.database.api_url),
    )  # fmt: skip
    after = await answers(there, admin, paths)
    assert after == before
    files = list((target.data_dir / "kb-files" / str(tenant.company_id)).rglob("faq.txt"))
    assert len(files) == 1
    with psycopg.connect(target.database.owner_url) as conn:
        sessions = conn.execute("SELECT count(*) FROM syntera.auth_sessions").fetchone()
    assert sessions == (0,)  # sessions do not move


def tampered(archive: Path, output: Path, member: str, old: bytes, new: bytes) -> None:
    """A copy of ``archive`` with ``old`` replaced by ``new`` in ``member``."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(output, "w:gz") as copy:
        for info in source.getmembers():
            extracted = source.extractfile(info)
            assert extracted is not None
            data = extracted.read()
            if info.name == member:
                assert old in data
                data = data.replace(old, new)
                info.size = len(data)
            copy.addfile(info, io.BytesIO(data))


def smuggled(archive: Path, output: Path, member: str) -> None:
    """A copy of ``archive`` with one more file, its checksum in the manifest (an archive
    made to reach another company's storage, not a damaged one)."""
    data = b"planted"
    with tarfile.open(archive, "r:gz") as source, tarfile.open(output, "w:gz") as copy:
        for info in source.getmembers():
            extracted = source.extractfile(info)
            assert extracted is not None
            body = extracted.read()
            if info.name == "manifest.json":
                manifest = json.loads(body)
                manifest["counts"][member] = 1
                manifest["checksums"][member] = hashlib.sha256(data).hexdigest()
                body = json.dumps(manifest).encode()
                extra = tarfile.TarInfo(member)
                extra.size = len(data)
                copy.addfile(extra, io.BytesIO(data))
                info.size = len(body)
            copy.addfile(info, io.BytesIO(body))


async def test_a_tampered_archive_is_refused_naming_the_file_and_nothing_written(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
    stack: StackUrls,
    database: StackDatabase,
    settings: Settings,
    tmp_path: Path,
) -> None:
    await contact_with_history(client, auth(tenant.admin), tenant, "mover@example.com")
    source = Deployment(database, settings.mongodb_db, settings.data_dir)
    archive = tmp_path / "company.tar.gz"
    exported = tenant_cli(source.env(stack), "export", "--company", str(tenant.company_id),
                          "--output", str(archive))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    changed = tmp_path / "changed.tar.gz"
    tampered(archive, changed, "postgres/public.contacts.jsonl",
             b"mover@example.com", b"thief@example.com")  # fmt: skip
    newer = tmp_path / "newer.tar.gz"
    tampered(archive, newer, "manifest.json", b'"schema_version": ', b'"schema_version": 9')
    target = fresh_deployment(stack, tmp_path)
    refused = tenant_cli(target.env(stack), "import", "--input", str(changed))
    assert refused.returncode == 1
    assert "postgres/public.contacts.jsonl" in refused.stderr
    assert "checksum" in refused.stderr
    foreign = tmp_path / "foreign.tar.gz"
    smuggled(archive, foreign, f"files/{uuid.uuid4()}/planted.txt")
    planted = tenant_cli(target.env(stack), "import", "--input", str(foreign))
    assert planted.returncode == 1
    assert "planted.txt: holds data of another company" in planted.stderr
    too_new = tenant_cli(target.env(stack), "import", "--input", str(newer))
    assert too_new.returncode == 1
    assert "manifest.json" in too_new.stderr
    assert "newer than this deployment" in too_new.stderr
    with psycopg.connect(target.database.owner_url) as conn:
        assert conn.execute("SELECT count(*) FROM public.companies").fetchone() == (0,)
    missing = tenant_cli(source.env(stack), "export", "--company", str(uuid.uuid4()),
                         "--output", str(tmp_path / "none.tar.gz"))  # fmt: skip
    assert missing.returncode == 1
    assert "no company" in missing.stderr
