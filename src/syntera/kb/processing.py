"""Durable processing of uploaded documents: the queue is the documents table.

The loop that drives a worker is ``syntera.workers``; a worker runs as service_role (it
serves every company) and, per document:

1. claims the oldest due document (``FOR UPDATE SKIP LOCKED``: workers never wait for
   each other) and marks it ``processing`` with a fresh lease token and a lease;
2. reads, extracts and chunks the file, then embeds the chunks in batches, writing the
   progress (``metadata.progress``) and renewing the lease after each batch;
3. stores chunks and vectors and marks the document ``completed`` in one transaction that
   first re-reads the row under its lease token: if the document was deleted, sent back
   to processing, or taken over after the lease ran out, nothing is written.

A worker that dies leaves the document ``processing`` under an expired lease; the next
claim takes it (and counts the attempt). Failures are retried with exponential backoff
until ``kb_max_attempts``, then the document is ``failed`` with the reason in
``metadata.error``. A file that cannot be read fails at once: retrying will not help.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from syntera.db.leases import LeaseLost, lock_leased
from syntera.db.postgres import TenantConnection
from syntera.kb.embeddings import Vectors
from syntera.kb.extract import ExtractionError, extract
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.storage import belongs_to
from syntera.metrics import KB_CHUNKS, KB_DOCUMENTS
from syntera.unit_of_work import system_transaction

log = logging.getLogger(__name__)

CLAIM = """
UPDATE public.knowledge_base_documents d
SET status = 'processing',
    attempts = d.attempts + 1,
    lease_token = gen_random_uuid(),
    lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    metadata = d.metadata || '{"progress": {"chunks_done": 0, "chunks_total": null}}'
WHERE (d.company_id, d.id) = (
  SELECT company_id, id FROM public.knowledge_base_documents
  WHERE status IN ('pending', 'processing')
    AND run_after <= now()
    AND (status = 'pending' OR lease_expires_at < now())
  ORDER BY run_after
  LIMIT 1
  FOR UPDATE SKIP LOCKED
)
RETURNING d.id, d.company_id, d.agent_id, d.name, d.file_path, d.content_type, d.attempts,
          d.lease_token
"""

PROGRESS = """
UPDATE public.knowledge_base_documents
SET lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    metadata = metadata || jsonb_build_object(
      'progress', jsonb_build_object('chunks_done', %(done)s::int, 'chunks_total', %(total)s::int))
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""

LOCK_LEASED_DOCUMENT = """
SELECT id FROM public.knowledge_base_documents
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s FOR UPDATE
"""

COMPLETE = """
UPDATE public.knowledge_base_documents
SET status = 'completed', chunk_count = %(chunks)s, vector_count = %(vectors)s,
    processed_at = now(), lease_token = NULL, lease_expires_at = NULL,
    metadata = (metadata - 'error') || jsonb_build_object(
      'progress', jsonb_build_object('chunks_done', %(chunks)s::int,
                                     'chunks_total', %(chunks)s::int),
      'embedding_model', %(model)s::text,
      'processing_ms', %(elapsed_ms)s::int)
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""

# Back to the queue after a delay, or failed for good.
RETRY = """
UPDATE public.knowledge_base_documents
SET status = 'pending', run_after = now() + make_interval(secs => %(delay_s)s),
    lease_token = NULL, lease_expires_at = NULL,
    metadata = metadata || jsonb_build_object('error', %(error)s::jsonb)
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""

FAIL = """
UPDATE public.knowledge_base_documents
SET status = 'failed', lease_token = NULL, lease_expires_at = NULL, processed_at = now(),
    metadata = metadata || jsonb_build_object('error', %(error)s::jsonb)
WHERE company_id = %(company_id)s AND id = %(id)s AND lease_token = %(token)s
"""


@dataclass(frozen=True)
class Claim:
    """A document a worker holds under a lease."""

    id: UUID
    company_id: UUID
    agent_id: UUID | None
    name: str
    file_path: str
    content_type: str
    attempts: int
    lease_token: UUID


class PermanentFailure(Exception):
    """Retrying cannot help (the file cannot be read, it has no text)."""


class DocumentWorker:
    """Claims and processes documents until told to stop."""

    def __init__(self, pool: AsyncConnectionPool[TenantConnection], kb: KnowledgeBase) -> None:
        self.pool = pool
        self.kb = kb
        self.settings = kb.settings

    async def run_once(self) -> bool:
        """Claim and process one document; False when none was due."""
        claim = await self.claim()
        if claim is None:
            return False
        await self.process(claim)
        return True

    async def claim(self) -> Claim | None:
        async with system_transaction(self.pool) as conn:
            cursor = await conn.execute(CLAIM, {"lease_s": self.settings.kb_lease_s})
            row = await cursor.fetchone()
        return Claim(**row) if row else None

    async def process(self, claim: Claim) -> None:
        started = time.perf_counter()
        try:
            if claim.attempts > self.settings.kb_max_attempts:
                raise PermanentFailure(
                    f"gave up after {claim.attempts - 1} attempts (the worker stopped each time)"
                )
            chunks = await self._chunks(claim)
            vectors = await self._embed(claim, chunks)
            await self._store(claim, chunks, vectors, started)
        except LeaseLost:
            log.info("document %s is no longer this worker's; left alone", claim.id)
            KB_DOCUMENTS.labels("lease_lost").inc()
        except PermanentFailure as error:
            await self._fail(claim, str(error))
        except Exception as error:
            log.warning("document %s failed (attempt %d): %s", claim.id, claim.attempts, error)
            if claim.attempts >= self.settings.kb_max_attempts:
                await self._fail(claim, f"{type(error).__name__}: {error}")
            else:
                await self._retry(claim, f"{type(error).__name__}: {error}")

    async def _chunks(self, claim: Claim) -> list[str]:
        if not belongs_to(claim.file_path, claim.company_id):
            # Paths are the database's (migration 018); one written otherwise is refused.
            raise PermanentFailure("the document's file is not under its company's folder")
        data = await self.kb.storage.get(claim.file_path)
        try:
            extracted = await asyncio.to_thread(extract, data, claim.content_type)
        except ExtractionError as error:
            raise PermanentFailure(str(error)) from error
        chunks = await asyncio.to_thread(self.kb.chunker.chunks, extracted.text)
        if not chunks:
            raise PermanentFailure("the file has no text")
        await self._progress(claim, 0, len(chunks))
        return chunks

    async def _embed(self, claim: Claim, chunks: list[str]) -> Vectors:
        """Embed in batches, reporting progress and renewing the lease after each."""
        batch = max(self.settings.kb_embedding_batch, 1) * 2
        parts: list[Vectors] = []
        for start in range(0, len(chunks), batch):
            parts.append(await self.kb.embedder.embed(chunks[start : start + batch]))
            await self._progress(claim, min(start + batch, len(chunks)), len(chunks))
        return np.concatenate(parts)

    async def _progress(self, claim: Claim, done: int, total: int) -> None:
        async with system_transaction(self.pool) as conn:
            cursor = await conn.execute(
                PROGRESS,
                {
                    "lease_s": self.settings.kb_lease_s,
                    "done": done,
                    "total": total,
                    "company_id": claim.company_id,
                    "id": claim.id,
                    "token": claim.lease_token,
                },
            )
            if cursor.rowcount != 1:
                raise LeaseLost

    async def _store(
        self, claim: Claim, chunks: list[str], vectors: Vectors, started: float
    ) -> None:
        async with system_transaction(self.pool) as conn:
            await lock_leased(
                conn,
                LOCK_LEASED_DOCUMENT,
                {"company_id": claim.company_id, "id": claim.id, "token": claim.lease_token},
            )
            confirmed = await self.kb.vectors.replace_document(
                conn, claim.company_id, claim.id, claim.agent_id, claim.name, chunks, vectors
            )
            await conn.execute(
                COMPLETE,
                {
                    "chunks": len(chunks),
                    "vectors": confirmed,
                    "model": self.kb.embedder.name,
                    "elapsed_ms": int((time.perf_counter() - started) * 1000),
                    "company_id": claim.company_id,
                    "id": claim.id,
                    "token": claim.lease_token,
                },
            )
        KB_DOCUMENTS.labels("completed").inc()
        KB_CHUNKS.inc(len(chunks))

    async def _retry(self, claim: Claim, reason: str) -> None:
        delay = self.settings.kb_retry_base_s * 4 ** (claim.attempts - 1)
        await self._finish(RETRY, claim, reason, delay_s=delay)
        KB_DOCUMENTS.labels("retried").inc()

    async def _fail(self, claim: Claim, reason: str) -> None:
        await self._finish(FAIL, claim, reason)
        KB_DOCUMENTS.labels("failed").inc()

    async def _finish(self, statement: str, claim: Claim, reason: str, **extra: Any) -> None:
        error = {"message": reason[:2000], "attempt": claim.attempts}
        async with system_transaction(self.pool) as conn:
            await conn.execute(
                statement,
                {
                    "error": Jsonb(error),
                    "company_id": claim.company_id,
                    "id": claim.id,
                    "token": claim.lease_token,
                    **extra,
                },
            )
