"""What reading, embedding and storing documents needs, made once per process from the
settings: file storage, the embedder, the vector store and the chunker."""

from __future__ import annotations

from dataclasses import dataclass

from syntera.config import Settings
from syntera.kb.chunking import Chunker
from syntera.kb.embeddings import Embedder, embedder_from
from syntera.kb.storage import FileStorage, storage_from
from syntera.kb.vectors import VectorStore, vector_store_from


@dataclass
class KnowledgeBase:
    """What reading, embedding and storing documents needs; one per process."""

    settings: Settings
    storage: FileStorage
    embedder: Embedder
    vectors: VectorStore
    chunker: Chunker

    @classmethod
    def from_settings(cls, settings: Settings) -> KnowledgeBase:
        return cls(
            settings,
            storage_from(settings),
            embedder_from(settings),
            vector_store_from(settings),
            Chunker(settings.kb_chunk_tokens, settings.kb_chunk_overlap_tokens),
        )
