"""Does hybrid search (full text + vector, reciprocal rank fusion) beat vector-only?

    python -m bench.kb_eval

The evaluation set is tests/kb/corpus.py: 22 documents of a fictional company and 22
customer questions, each with the document that answers it (paraphrases, and questions
naming exact codes such as E42 or HX-200). Documents are chunked, embedded with
all-MiniLM-L6-v2 and stored in pgvector; each question is searched as a member under RLS
in both modes. Reported: hit@1, hit@3 and MRR@5 of the answering document.
"""

from __future__ import annotations

import asyncio
import time

import psycopg
from tests.kb.corpus import DOCUMENTS, QUESTIONS

from bench.common import BenchDatabase, bench_database, machine, report
from bench.kb import company_with_owner
from syntera.config import Settings
from syntera.db.postgres import create_api_pool, transaction_as
from syntera.kb.chunking import Chunker
from syntera.kb.embeddings import LocalMiniLM
from syntera.kb.vectors import PgVectorStore, SearchMode
from syntera.tenancy import Principal
from syntera.unit_of_work import system_transaction


async def evaluate(db: BenchDatabase) -> None:
    settings = Settings(kb_worker_enabled=False)
    chunker = Chunker(settings.kb_chunk_tokens, settings.kb_chunk_overlap_tokens)
    model = LocalMiniLM()
    store = PgVectorStore(settings.kb_search_ef)
    with psycopg.connect(db.owner_url, autocommit=True) as conn:
        company_id, user_id = company_with_owner(conn, "eval")
        names = {}
        for name in DOCUMENTS:
            [(document_id,)] = conn.execute(
                "INSERT INTO public.knowledge_base_documents (company_id, name, file_path)"
                " VALUES (%s, %s, 'none') RETURNING id",
                (company_id, name),
            ).fetchall()
            names[name] = document_id
    rows = []
    async with create_api_pool(settings, db.api_url) as pool:
        for name, text in DOCUMENTS.items():
            chunks = chunker.chunks(text)
            async with system_transaction(pool) as conn:
                await store.replace_document(
                    conn, company_id, names[name], None, name, chunks, model.encode(chunks)
                )
        modes: tuple[SearchMode, ...] = ("vector", "hybrid")
        for mode in modes:
            ranks = []
            started = time.perf_counter()
            for question, expected in QUESTIONS:
                vector = [float(x) for x in model.encode([question])[0]]
                async with transaction_as(pool, Principal.user(user_id)) as conn:
                    hits = await store.search(conn, company_id, question, vector, 5, None, mode)
                ranked = [hit.document_name for hit in hits]
                ranks.append(ranked.index(expected) + 1 if expected in ranked else None)
            elapsed = (time.perf_counter() - started) / len(QUESTIONS) * 1000
            count = len(ranks)
            rows.append([
                mode,
                f"{sum(r == 1 for r in ranks) / count:.3f}",
                f"{sum(r is not None and r <= 3 for r in ranks) / count:.3f}",
                f"{sum(1 / r for r in ranks if r) / count:.3f}",
                f"{elapsed:.1f}",
            ])  # fmt: skip
    report(
        "kb_retrieval_quality",
        f"{machine()}; {len(DOCUMENTS)} documents, {len(QUESTIONS)} questions with known "
        "answers (tests/kb/corpus.py); all-MiniLM-L6-v2, pgvector; top 5",
        ["mode", "hit@1", "hit@3", "MRR@5", "ms per question (embedding included)"],
        rows,
    )


def main() -> None:
    with bench_database() as db:
        asyncio.run(evaluate(db))


if __name__ == "__main__":
    main()
