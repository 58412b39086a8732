"""Fixtures of the knowledge-base tests: the app's knowledge base with a test worker's
settings (short leases, no backoff), and a helper that runs the worker until the named
documents are finished."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import TenantConnection
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.processing import DocumentWorker

Process = Callable[..., Awaitable[list[dict[str, Any]]]]
Upload = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture(scope="session")
def kb(app: FastAPI, settings: Settings) -> KnowledgeBase:
    """The app's knowledge base (its storage, model and vector store), run with settings
    that make a test's retries immediate."""
    test_settings = settings.model_copy(
        update={"kb_retry_base_s": 0, "kb_max_attempts": 3, "kb_lease_s": 30}
    )
    return dataclasses.replace(app.state.kb, settings=test_settings)


@pytest.fixture(scope="session")
def worker(api_pool: AsyncConnectionPool[TenantConnection], kb: KnowledgeBase) -> DocumentWorker:
    return DocumentWorker(api_pool, kb)


def documents(owner_conn: psycopg.Connection, ids: list[UUID]) -> list[dict[str, Any]]:
    with owner_conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        rows = cursor.execute(
            "SELECT * FROM public.knowledge_base_documents WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    by_id = {row["id"]: row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


@pytest.fixture(scope="session")
def process(worker: DocumentWorker, owner_conn: psycopg.Connection) -> Process:
    """Run the worker until every named document is completed or failed (documents of
    other tests that are due get processed along the way, as in production)."""

    async def run(*ids: UUID, timeout_s: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = documents(owner_conn, list(ids))
            if all(row["status"] in ("completed", "failed") for row in rows):
                return rows
            if not await worker.run_once():
                await asyncio.sleep(0.05)
        raise AssertionError(f"documents not finished within {timeout_s} s")

    return run


@pytest.fixture(scope="session")
def upload(client: httpx.AsyncClient) -> Upload:
    async def send(
        headers: dict[str, str],
        filename: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        **form: str,
    ) -> httpx.Response:
        return await client.post(
            "/v1/kb/documents",
            headers=headers,
            files={"file": (filename, data, content_type)},
            data=form,
        )

    return send
