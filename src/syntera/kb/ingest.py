"""Bulk ingest from the command line: every supported file under a directory becomes a
document of one company, each in its own transaction (a bad file is reported and
skipped; the others go on)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import TenantConnection, create_api_pool
from syntera.errors import SynteraError
from syntera.kb.extract import BY_SUFFIX
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.service import store_document
from syntera.unit_of_work import system_transaction

Progress = Callable[[str, int, int], None]


@dataclass
class IngestReport:
    queued: list[UUID] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    chunks: int = 0

    def summary(self) -> str:
        text = f"{len(self.queued)} documents queued, {len(self.rejected)} skipped"
        if self.completed or self.failed:
            text += f"; {self.completed} processed ({self.chunks} chunks), {self.failed} failed"
        return text


def _uuid(text: str, what: str) -> UUID:
    try:
        return UUID(text)
    except ValueError as error:
        raise ValueError(f"{what} {text!r} is not a UUID") from error


def _files_under(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*") if path.is_file())


async def ingest_directory(
    settings: Settings,
    api_database_url: str,
    directory: Path,
    company: str,
    agent: str | None,
    wait: bool,
    progress: Progress,
    system_database_url: str | None = None,
) -> IngestReport:
    company_id = _uuid(company, "--company")
    agent_id = _uuid(agent, "--agent") if agent else None
    files = await asyncio.to_thread(_files_under, directory)
    kb = KnowledgeBase.from_settings(settings)
    report = IngestReport()
    async with create_api_pool(
        settings, api_database_url, system_conninfo=system_database_url
    ) as pool:
        async with system_transaction(pool) as conn:
            found = await conn.execute(
                "SELECT 1 FROM public.companies WHERE id = %s", (company_id,)
            )
            if await found.fetchone() is None:
                raise ValueError(f"there is no company {company_id}")
        for done, path in enumerate(files, 1):
            if path.suffix.lower() not in BY_SUFFIX:
                report.rejected.append((path, "not a supported type"))
            else:
                try:
                    async with system_transaction(pool) as conn:
                        row = await store_document(
                            kb, conn, company_id, filename=path.name, declared_type=None,
                            data=await asyncio.to_thread(path.read_bytes), name=None,
                            agent_id=agent_id,
                        )  # fmt: skip
                    report.queued.append(row["id"])
                except SynteraError as problem:
                    report.rejected.append((path, problem.detail))
            progress("queued", done, len(files))
        if wait and report.queued:
            await _wait_for(pool, report, progress, settings.kb_poll_s)
    return report


async def _wait_for(
    pool: AsyncConnectionPool[TenantConnection],
    report: IngestReport,
    progress: Progress,
    poll_s: float,
) -> None:
    """Until every queued document is completed or failed."""
    while True:
        async with system_transaction(pool) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'completed') AS completed,"
                " count(*) FILTER (WHERE status = 'failed') AS failed,"
                " coalesce(sum(chunk_count), 0) AS chunks"
                " FROM public.knowledge_base_documents WHERE id = ANY(%s)",
                (report.queued,),
            )
            row = await cursor.fetchone()
        assert row is not None
        report.completed, report.failed, report.chunks = (
            int(row["completed"]), int(row["failed"]), int(row["chunks"]),
        )  # fmt: skip
        progress("processed", report.completed + report.failed, len(report.queued))
        if report.completed + report.failed >= len(report.queued):
            return
        await asyncio.sleep(poll_s)
