"""Knowledge-base documents and search as the API reads and writes them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, StringConstraints

from syntera.kb.vectors import SearchMode
from syntera.kit.schemas import Input, Output

DocumentStatus = Literal["pending", "processing", "completed", "failed"]

# On the evaluation set (tests/kb/corpus.py; `python -m bench.kb_eval`) vector-only ranked
# every answer first (MRR 1.000) and hybrid did worse (0.924): the full-text side ranks
# chunks by the question's common words and fusion lets them in. Vector is the default.
DEFAULT_MODE: SearchMode = "vector"


class KnowledgeDocument(Output):
    id: UUID
    company_id: UUID
    agent_id: UUID | None
    name: str
    content_type: str
    size_bytes: int
    status: DocumentStatus
    chunk_count: int
    vector_count: int
    attempts: int
    metadata: dict[str, Any] = Field(
        description="`progress` {chunks_done, chunks_total} while processing; `error` "
        "{message, attempt} after a failed attempt."
    )
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


class SearchRequest(Input):
    query: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=r"^[^\x00]*$")]
    top_k: int = Field(default=10, ge=1, le=50)
    agent_id: UUID | None = Field(
        default=None,
        description="Only that agent's documents and the company's shared ones (no agent).",
    )
    mode: SearchMode = DEFAULT_MODE


class SearchHit(Output):
    document_id: UUID
    chunk_index: int
    content: str
    score: float
    document_name: str


class SearchResults(Output):
    data: list[SearchHit]
