"""The document queue: claims, leases, progress, retries, failures, and a worker that is
killed in the middle of a document."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.embedded import StackUrls
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.processing import DocumentWorker
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.conftest import StackDatabase
from tests.factories import SeededCompany
from tests.kb import files
from tests.kb.conftest import Upload, documents
from tests.workers import kill_worker_once

LONG_TEXT = "\n\n".join(
    f"## Section {i}\n\n"
    + " ".join(f"Clause {i}.{j} covers case {j} of rule {i}." for j in range(40))
    for i in range(60)
).encode()


async def uploaded(
    upload: Upload, auth: AuthHeaders, tenant: SeededCompany, name: str, data: bytes
) -> UUID:
    response = await upload(auth(tenant.member), name, data)
    assert response.status_code == 202, response.text
    return UUID(response.json()["id"])


def only_due(owner_conn: psycopg.Connection, document_id: UUID) -> None:
    """Make ``document_id`` the only document a claim can take (the other tests' queued
    documents wait a day)."""
    owner_conn.execute(
        "UPDATE public.knowledge_base_documents SET run_after = now() + interval '1 day'"
        " WHERE status IN ('pending', 'processing') AND id <> %s",
        (document_id,),
    )


def expire_lease(
    owner_conn: psycopg.Connection, document_id: UUID, attempts: int | None = None
) -> None:
    """As if the worker holding ``document_id`` had died: processing, its lease run out
    (after ``attempts`` claims, if given)."""
    owner_conn.execute(
        "UPDATE public.knowledge_base_documents SET status = 'processing',"
        " attempts = coalesce(%s, attempts), lease_expires_at = now() - interval '1 s'"
        " WHERE id = %s",
        (attempts, document_id),
    )


UploadDue = Callable[[str, bytes], Awaitable[UUID]]


@pytest.fixture
def upload_due(
    upload: Upload, auth: AuthHeaders, tenant: SeededCompany, owner_conn: psycopg.Connection
) -> UploadDue:
    """Upload a document as a member and make it the only document a claim can take."""

    async def upload_due(name: str, data: bytes) -> UUID:
        document_id = await uploaded(upload, auth, tenant, name, data)
        only_due(owner_conn, document_id)
        return document_id

    return upload_due


@pytest.fixture
async def document_id(upload_due: UploadDue) -> UUID:
    """A Markdown FAQ uploaded by a member, and the only document a claim can take."""
    return await upload_due("faq.md", files.MARKDOWN)


def stored_file(settings: Settings, owner_conn: psycopg.Connection, document_id: UUID) -> Path:
    """Where the file storage keeps the upload of ``document_id``."""
    return settings.data_dir / "kb-files" / str(row(owner_conn, document_id)["file_path"])


async def process_next(worker: DocumentWorker) -> None:
    """Claim the next due document (there is one) and process it."""
    claim = await worker.claim()
    assert claim is not None
    await worker.process(claim)


def row(owner_conn: psycopg.Connection, document_id: UUID) -> dict[str, object]:
    [found] = documents(owner_conn, [document_id])
    return found


def chunk_count(owner_conn: psycopg.Connection, document_id: UUID) -> int:
    [(chunks, distinct)] = owner_conn.execute(
        "SELECT count(*), count(DISTINCT chunk_index) FROM public.knowledge_base_chunks"
        " WHERE document_id = %s",
        (document_id,),
    ).fetchall()
    assert chunks == distinct, "no chunk is stored twice"
    return int(chunks)


async def test_a_claim_leases_the_document_and_completion_releases_it(
    document_id: UUID,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
) -> None:
    claim = await worker.claim()
    assert claim is not None
    assert claim.id == document_id
    held = row(owner_conn, document_id)
    assert held["status"] == "processing"
    assert held["attempts"] == 1
    assert held["lease_token"] == claim.lease_token
    assert held["lease_expires_at"] is not None
    assert await worker.claim() is None, "a leased document is not claimed twice"

    await worker.process(claim)
    done = row(owner_conn, document_id)
    assert done["status"] == "completed"
    assert done["lease_token"] is None
    assert done["lease_expires_at"] is None
    assert done["chunk_count"] == chunk_count(owner_conn, document_id) == 2


async def test_concurrent_claims_take_different_documents(
    upload: Upload,
    auth: AuthHeaders,
    tenant: SeededCompany,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
) -> None:
    first = await uploaded(upload, auth, tenant, "a.md", files.MARKDOWN)
    second = await uploaded(upload, auth, tenant, "b.md", files.MARKDOWN)
    only_due(owner_conn, first)
    owner_conn.execute(
        "UPDATE public.knowledge_base_documents SET run_after = now() WHERE id = %s", (second,)
    )
    claims = await asyncio.gather(worker.claim(), worker.claim(), worker.claim())
    taken = [claim.id for claim in claims if claim is not None]
    assert sorted(taken) == sorted([first, second])
    for claim in claims:
        if claim is not None:
            await worker.process(claim)


async def test_an_expired_lease_is_taken_over_and_the_late_worker_writes_nothing(
    document_id: UUID,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
) -> None:
    stalled = await worker.claim()
    assert stalled is not None
    expire_lease(owner_conn, document_id)
    successor = await worker.claim()
    assert successor is not None
    assert successor.id == document_id
    assert successor.attempts == 2
    assert successor.lease_token != stalled.lease_token

    await worker.process(stalled)  # the stalled worker wakes up: its lease is gone
    assert row(owner_conn, document_id)["status"] == "processing"
    assert chunk_count(owner_conn, document_id) == 0
    await worker.process(successor)
    assert row(owner_conn, document_id)["status"] == "completed"
    assert chunk_count(owner_conn, document_id) == 2


async def test_failures_are_retried_then_the_document_fails_with_the_reason(
    upload_due: UploadDue,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
    settings: Settings,
) -> None:
    document_id = await upload_due("gone.md", files.MARKDOWN)
    stored_file(settings, owner_conn, document_id).unlink()  # storage lost the file

    attempts = []
    while (claim := await worker.claim()) is not None:
        await worker.process(claim)
        attempts.append(row(owner_conn, document_id)["status"])
    assert attempts == ["pending", "pending", "failed"]  # kb_max_attempts = 3, no backoff
    failed = row(owner_conn, document_id)
    assert failed["attempts"] == 3
    assert "FileNotFoundError" in failed["metadata"]["error"]["message"]
    assert failed["metadata"]["error"]["attempt"] == 3


async def test_retries_back_off(
    upload_due: UploadDue,
    api_pool: AsyncConnectionPool[TenantConnection],
    kb: KnowledgeBase,
    owner_conn: psycopg.Connection,
    settings: Settings,
) -> None:
    patient = DocumentWorker(
        api_pool,
        dataclasses.replace(kb, settings=kb.settings.model_copy(update={"kb_retry_base_s": 60})),
    )
    document_id = await upload_due("gone.md", files.MARKDOWN)
    stored_file(settings, owner_conn, document_id).unlink()
    await process_next(patient)
    [(wait,)] = owner_conn.execute(
        "SELECT extract(epoch FROM run_after - now()) FROM public.knowledge_base_documents"
        " WHERE id = %s",
        (document_id,),
    ).fetchall()
    assert 50 < wait <= 60
    assert await patient.claim() is None, "not due before its backoff"


async def test_a_file_that_cannot_be_read_fails_at_once(
    upload_due: UploadDue,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
    settings: Settings,
) -> None:
    document_id = await upload_due("terms.pdf", files.pdf_bytes("Fine."))
    stored_file(settings, owner_conn, document_id).write_bytes(b"%PDF-1.4 now corrupted")
    await process_next(worker)
    failed = row(owner_conn, document_id)
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert "cannot be read" in failed["metadata"]["error"]["message"]


async def test_a_document_whose_workers_keep_dying_fails_after_the_last_attempt(
    document_id: UUID,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
) -> None:
    expire_lease(owner_conn, document_id, attempts=3)
    await process_next(worker)
    failed = row(owner_conn, document_id)
    assert failed["status"] == "failed"
    assert "gave up after 3 attempts" in failed["metadata"]["error"]["message"]


@pytest.mark.slow
async def test_a_worker_killed_mid_document_is_replaced_without_duplicates(
    upload_due: UploadDue,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
    settings: Settings,
    database: StackDatabase,
    api_urls: StackUrls,
) -> None:
    document_id = await upload_due("handbook.md", LONG_TEXT)
    env = {
        **os.environ,
        **api_urls.as_env(),
        "SYNTERA_DATABASE_URL": database.owner_url,
        "SYNTERA_DATA_DIR": str(settings.data_dir),
        "SYNTERA_KB_LEASE_S": "2",
        "SYNTERA_KB_EMBEDDING_BATCH": "8",
    }

    def reported_progress() -> bool:
        progress = row(owner_conn, document_id)["metadata"].get("progress") or {}
        return (progress.get("chunks_done") or 0) > 0

    await kill_worker_once(
        env, reported_progress, "the worker never reported progress", timeout_s=120, poll_s=0.1
    )
    orphan = row(owner_conn, document_id)
    assert orphan["status"] == "processing", "killed mid-document, not finished"
    assert (
        0
        < orphan["metadata"]["progress"]["chunks_done"]
        < orphan["metadata"]["progress"]["chunks_total"]
    )
    assert chunk_count(owner_conn, document_id) == 0

    assert await worker.claim() is None, "not taken while the dead worker's lease runs"
    await asyncio.sleep(2.1)
    claim = await worker.claim()
    assert claim is not None
    assert claim.id == document_id
    assert claim.attempts == 2
    await worker.process(claim)
    done = row(owner_conn, document_id)
    assert done["status"] == "completed"
    assert done["chunk_count"] == done["vector_count"] == chunk_count(owner_conn, document_id)
    assert done["chunk_count"] == orphan["metadata"]["progress"]["chunks_total"]


async def test_the_worker_refuses_a_file_outside_the_documents_company(
    upload: Upload,
    auth: AuthHeaders,
    tenant: SeededCompany,
    make_tenant: MakeTenant,
    worker: DocumentWorker,
    owner_conn: psycopg.Connection,
) -> None:
    """Should a document's path still name another company's file (written before paths
    became the system's, issue 35), the worker fails it without reading the file."""
    victim = await make_tenant()
    theirs = await uploaded(upload, auth, victim, "secret.md", files.MARKDOWN)
    ours = await uploaded(upload, auth, tenant, "faq.md", files.MARKDOWN)
    owner_conn.execute(
        "UPDATE public.knowledge_base_documents SET file_path = %s WHERE id = %s",
        (row(owner_conn, theirs)["file_path"], ours),
    )
    only_due(owner_conn, ours)
    claim = await worker.claim()
    assert claim is not None
    await worker.process(claim)
    failed = row(owner_conn, ours)
    assert failed["status"] == "failed"
    assert "not under its company's folder" in failed["metadata"]["error"]["message"]
    assert chunk_count(owner_conn, ours) == 0
