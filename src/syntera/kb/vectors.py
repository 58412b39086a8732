"""Vector stores of knowledge-base chunks: pgvector (default) and Pinecone.

pgvector keeps chunks in ``public.knowledge_base_chunks`` under row-level security, so a
search runs as the caller and can only see its company's chunks; the explicit
``company_id`` filter is there for service_role and for the planner. ``hnsw.iterative_scan``
(pgvector 0.8) lets the HNSW scan go on past ``ef_search`` until ``top_k`` rows of that
company are found, so a small company beside a large one still gets ``top_k`` results.

Pinecone keeps one namespace per company (``kb-<company>``), vector ids
``<document>#<chunk index>`` (so a document's vectors are listed by prefix and deleted by
id, which serverless indexes support), and the chunk's text in the metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from syntera.config import Settings
from syntera.db.postgres import TenantConnection, run_as
from syntera.kb.embeddings import Vectors
from syntera.tenancy import Principal

SearchMode = Literal["vector", "hybrid"]

# Reciprocal rank fusion's constant (Cormack et al.): ranks beyond ~60 barely count.
RRF_K = 60


@dataclass(frozen=True)
class Hit:
    """A chunk found: ``score`` ranks it in its search (cosine similarity, or the fused
    rank of a hybrid search); ``similarity`` is its cosine similarity to the query in
    either mode (what an agent's threshold compares); ``chunk_id`` names it in its store;
    ``agent_id`` is its document's agent (None: shared by every agent)."""

    document_id: UUID
    chunk_index: int
    content: str
    score: float
    document_name: str
    chunk_id: str = ""
    agent_id: UUID | None = None
    similarity: float | None = None


class HybridUnsupported(ValueError):
    """The store cannot rank by text."""


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, '[x,y,…]' (9 significant digits keep float32 exact)."""
    return "[" + ",".join(f"{x:.9g}" for x in vector) + "]"


class VectorStore(Protocol):
    async def replace_document(
        self,
        conn: TenantConnection,
        company_id: UUID,
        document_id: UUID,
        agent_id: UUID | None,
        document_name: str,
        chunks: list[str],
        vectors: Vectors,
    ) -> int:
        """Store the document's chunks in place of any it had; the number of vectors the
        store confirms it holds for the document."""
        ...

    async def delete_document(
        self, conn: TenantConnection, company_id: UUID, document_id: UUID
    ) -> None: ...

    async def delete_company(self, company_id: UUID) -> int:
        """Remove every vector of a deleted company (outside its PostgreSQL rows); how
        many went, when the store says (else 0)."""
        ...

    async def companies(self) -> dict[UUID, int]:
        """The companies holding vectors outside PostgreSQL, with how many."""
        ...

    async def search(
        self,
        conn: TenantConnection,
        company_id: UUID,
        query: str,
        vector: Sequence[float],
        top_k: int,
        agent_id: UUID | None,
        mode: SearchMode,
    ) -> list[Hit]: ...

    async def search_alone(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        principal: Principal,
        company_id: UUID,
        query: str,
        vector: Sequence[float],
        top_k: int,
        agent_id: UUID | None,
        mode: SearchMode,
    ) -> list[Hit]:
        """``search`` for a caller with no transaction open: in a read-only one of its
        own as ``principal`` (its row-level security applies), in one round trip."""
        ...


SET_SEARCH = """
SELECT set_config('hnsw.ef_search', %(ef)s, true),
       set_config('hnsw.iterative_scan', 'relaxed_order', true)
"""

# Candidates of each ranking that hybrid search fuses.
HYBRID_POOL = 50

# Nearest chunks of the company (and of the agent, with the company's shared documents).
# relaxed_order may return rows slightly out of order: the outer query sorts them again.
NEAREST = """
WITH nearest AS MATERIALIZED (
  SELECT c.id, c.document_id, c.chunk_index, c.content, c.agent_id,
         c.embedding <=> %(vector)s::vector AS distance
  FROM public.knowledge_base_chunks c
  WHERE c.company_id = %(company_id)s
    AND (%(agent_id)s::uuid IS NULL OR c.agent_id = %(agent_id)s OR c.agent_id IS NULL)
  ORDER BY distance
  LIMIT %(limit)s
)
SELECT n.document_id, n.chunk_index, n.content, 1 - n.distance AS score,
       d.name AS document_name, n.id::text AS chunk_id, n.agent_id,
       1 - n.distance AS similarity
FROM nearest n JOIN public.knowledge_base_documents d ON d.id = n.document_id
ORDER BY n.distance
LIMIT %(top_k)s
"""

# Reciprocal rank fusion of the vector ranking and PostgreSQL's full-text ranking. The
# text query ORs the question's lexemes (plainto_tsquery ANDs them, which a question
# phrased in other words rarely satisfies), built from to_tsvector's lexemes so that no
# input can make a malformed tsquery; ts_rank_cd orders the matches. A question without
# lexemes (stop words, symbols) ranks by vector alone.
HYBRID = """
WITH by_vector AS MATERIALIZED (
  SELECT c.id, c.embedding <=> %(vector)s::vector AS distance
  FROM public.knowledge_base_chunks c
  WHERE c.company_id = %(company_id)s
    AND (%(agent_id)s::uuid IS NULL OR c.agent_id = %(agent_id)s OR c.agent_id IS NULL)
  ORDER BY distance
  LIMIT %(pool)s
),
vector_ranks AS (
  SELECT id, row_number() OVER (ORDER BY distance) AS rank FROM by_vector
),
question AS (
  SELECT (SELECT string_agg(quote_literal(lexeme), ' | ')
          FROM unnest(tsvector_to_array(to_tsvector('english', %(query)s))) lexeme
         )::tsquery AS q
),
text_ranks AS (
  SELECT c.id, row_number() OVER (ORDER BY ts_rank_cd(c.content_search, question.q) DESC, c.id)
           AS rank
  FROM public.knowledge_base_chunks c, question
  WHERE c.company_id = %(company_id)s
    AND (%(agent_id)s::uuid IS NULL OR c.agent_id = %(agent_id)s OR c.agent_id IS NULL)
    AND c.content_search @@ question.q
  ORDER BY ts_rank_cd(c.content_search, question.q) DESC, c.id
  LIMIT %(pool)s
),
fused AS (
  SELECT id, sum(1.0 / (%(rrf_k)s + rank)) AS score
  FROM (SELECT * FROM vector_ranks UNION ALL SELECT * FROM text_ranks) ranks
  GROUP BY id
)
SELECT c.document_id, c.chunk_index, c.content, f.score::float8 AS score,
       d.name AS document_name, c.id::text AS chunk_id, c.agent_id,
       1 - (c.embedding <=> %(vector)s::vector) AS similarity
FROM fused f
JOIN public.knowledge_base_chunks c ON c.id = f.id
JOIN public.knowledge_base_documents d ON d.id = c.document_id
ORDER BY f.score DESC, c.id
LIMIT %(top_k)s
"""

COPY_CHUNKS = """
COPY public.knowledge_base_chunks
  (company_id, document_id, agent_id, chunk_index, content, embedding) FROM STDIN
"""


class PgVectorStore:
    """Chunks and embeddings in PostgreSQL, written in the caller's transaction."""

    def __init__(self, ef_search: int = 100) -> None:
        self.ef_search = ef_search

    async def replace_document(
        self,
        conn: TenantConnection,
        company_id: UUID,
        document_id: UUID,
        agent_id: UUID | None,
        document_name: str,
        chunks: list[str],
        vectors: Vectors,
    ) -> int:
        await self.delete_document(conn, company_id, document_id)
        async with conn.cursor().copy(COPY_CHUNKS) as copy:
            for index, (content, vector) in enumerate(zip(chunks, vectors, strict=True)):
                row = (company_id, document_id, agent_id, index, content, vector_literal(vector))
                await copy.write_row(row)
        cursor = await conn.execute(
            "SELECT count(*) AS n FROM public.knowledge_base_chunks"
            " WHERE company_id = %s AND document_id = %s",
            (company_id, document_id),
        )
        counted = await cursor.fetchone()
        return int(counted["n"]) if counted else 0

    async def delete_document(
        self, conn: TenantConnection, company_id: UUID, document_id: UUID
    ) -> None:
        await conn.execute(
            "DELETE FROM public.knowledge_base_chunks WHERE company_id = %s AND document_id = %s",
            (company_id, document_id),
        )

    async def delete_company(self, company_id: UUID) -> int:
        return 0  # the chunks are PostgreSQL rows: the company's delete cascaded to them

    async def companies(self) -> dict[UUID, int]:
        return {}  # nothing outside PostgreSQL

    async def search(
        self,
        conn: TenantConnection,
        company_id: UUID,
        query: str,
        vector: Sequence[float],
        top_k: int,
        agent_id: UUID | None,
        mode: SearchMode,
    ) -> list[Hit]:
        # The settings and the search in one round trip (an agent's answer waits for it).
        statements = self._statements(company_id, query, vector, top_k, agent_id, mode)
        async with conn.pipeline():
            cursors = [await conn.execute(text, params) for text, params in statements]
        return [Hit(**row) for row in await cursors[-1].fetchall()]

    async def search_alone(
        self,
        pool: AsyncConnectionPool[TenantConnection],
        principal: Principal,
        company_id: UUID,
        query: str,
        vector: Sequence[float],
        top_k: int,
        agent_id: UUID | None,
        mode: SearchMode,
    ) -> list[Hit]:
        statements = self._statements(company_id, query, vector, top_k, agent_id, mode)
        _, results = await run_as(pool, principal, statements, read_only=True, membership=False)
        return [Hit(**row) for row in results[-1]]

    def _statements(
        self,
        company_id: UUID,
        query: str,
        vector: Sequence[float],
        top_k: int,
        agent_id: UUID | None,
        mode: SearchMode,
    ) -> list[tuple[str, dict[str, Any]]]:
        """The search's settings, then the search."""
        params: dict[str, Any] = {
            "company_id": company_id,
            "agent_id": agent_id,
            "vector": vector_literal(vector),
            "top_k": top_k,
        }
        settings = (SET_SEARCH, {"ef": str(max(self.ef_search, top_k))})
        if mode == "hybrid":
            pool = max(HYBRID_POOL, top_k)
            return [settings, (HYBRID, {**params, "query": query, "pool": pool, "rrf_k": RRF_K})]
        return [settings, (NEAREST, {**params, "limit": top_k})]


class PineconeStore:
    """One namespace per company in a Pinecone index (the SDK's calls run in a thread)."""

    UPSERT_BATCH = 100

    def __init__(self, api_key: str, index_host: str) -> None:
        from pinecone import Pinecone

        self.index: Any = Pinecone(api_key=api_key).Index(host=index_host)

    @staticmethod
    def namespace(company_id: UUID) -> str:
        return f"kb-{company_id}"

    async def replace_document(
        self,
        conn: TenantConnection,
        company_id: UUID,
        document_id: UUID,
        agent_id: UUID | None,
        document_name: str,
        chunks: list[str],
        vectors: Vectors,
    ) -> int:
        await self.delete_document(conn, company_id, document_id)
        records = [
            {
                "id": f"{document_id}#{index}",
                "values": [float(x) for x in vector],
                "metadata": {
                    "document_id": str(document_id),
                    "agent_id": str(agent_id) if agent_id else "",
                    "chunk_index": index,
                    "content": content,
                    "document_name": document_name,
                },
            }
            for index, (content, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]
        confirmed = 0
        for start in range(0, len(records), self.UPSERT_BATCH):
            answer = await asyncio.to_thread(
                self.index.upsert,
                vectors=records[start : start + self.UPSERT_BATCH],
                namespace=self.namespace(company_id),
            )
            confirmed += int(answer.upserted_count)
        return confirmed

    async def companies(self) -> dict[UUID, int]:
        def count() -> dict[UUID, int]:
            held: dict[UUID, int] = {}
            for name, info in self.index.describe_index_stats().get("namespaces", {}).items():
                if name.startswith("kb-"):
                    try:
                        held[UUID(name.removeprefix("kb-"))] = int(info.get("vector_count", 0))
                    except ValueError:
                        continue
            return held

        return await asyncio.to_thread(count)

    async def delete_company(self, company_id: UUID) -> int:
        namespace = self.namespace(company_id)

        def delete() -> int:
            stats = self.index.describe_index_stats()
            held = stats.get("namespaces", {}).get(namespace, {}).get("vector_count", 0)
            if held:
                self.index.delete(delete_all=True, namespace=namespace)
            return int(held)

        return await asyncio.to_thread(delete)

    async def delete_document(
        self, conn: TenantConnection, company_id: UUID, document_id: UUID
    ) -> None:
        namespace = self.namespace(company_id)

        def delete() -> None:
            for page in self.index.list(prefix=f"{document_id}#", namespace=namespace):
                ids = [item.id for item in page]
                if ids:
                    self.index.delete(ids=ids, namespace=namespace)

        await asyncio.to_thread(delete)

    async def search(
        self,
        conn: TenantConnection,
        company_id: UUID,
        query: str,
        vector: Sequence[float],
        top_k: int,
        agent_id: UUID | None,
        mode: SearchMode,
    ) -> list[Hit]:
        return await self.search_alone(None, None, company_id, query, vector, top_k, agent_id, mode)

    async def search_alone(
        self,
        pool: AsyncConnectionPool[TenantConnection] | None,
        principal: Principal | None,
        company_id: UUID,
        query: str,
        vector: Sequence[float],
        top_k: int,
        agent_id: UUID | None,
        mode: SearchMode,
    ) -> list[Hit]:
        # The index is the company's namespace: no transaction is involved.
        if mode == "hybrid":
            raise HybridUnsupported("hybrid search needs the pgvector store; use mode=vector")
        where = {"agent_id": {"$in": [str(agent_id), ""]}} if agent_id else None
        answer = await asyncio.to_thread(
            self.index.query,
            vector=[float(x) for x in vector],
            top_k=top_k,
            namespace=self.namespace(company_id),
            filter=where,
            include_metadata=True,
        )
        return [
            Hit(
                UUID(match.metadata["document_id"]),
                int(match.metadata["chunk_index"]),
                match.metadata["content"],
                float(match.score),
                match.metadata["document_name"],
                chunk_id=str(match.id),
                agent_id=UUID(match.metadata["agent_id"])
                if match.metadata.get("agent_id")
                else None,
                similarity=float(match.score),  # the index's metric is cosine
            )
            for match in answer.matches
        ]


def vector_store_from(settings: Settings) -> VectorStore:
    if settings.kb_vector_store == "pinecone":
        if not settings.pinecone_api_key or not settings.pinecone_index_host:
            raise ValueError(
                "SYNTERA_PINECONE_API_KEY and SYNTERA_PINECONE_INDEX_HOST are required"
            )
        return PineconeStore(settings.pinecone_api_key, settings.pinecone_index_host)
    return PgVectorStore(settings.kb_search_ef)
