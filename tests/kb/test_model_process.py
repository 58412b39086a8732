"""The model process that `syntera serve` and `syntera up` share among their API
processes: the same vectors as the model in-process, concurrent queries answered each with
its own row, errors told as errors, a dead process started again, and a search answered
503 (not 500) while no model answers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from fastapi import FastAPI

from syntera.kb.embeddings import EmbeddingError, LocalMiniLM
from syntera.kb.model_process import (
    ANSWER,
    ERROR,
    LENGTH,
    OLD_REQUEST_FORM,
    VECTORS,
    ModelProcess,
    RemoteMiniLM,
    _answer,
)
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany
from tests.kb.corpus import QUESTIONS
from tests.kb.model_socket import raw_answer, running_model_process, state_replaced

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_process() -> Iterator[ModelProcess]:
    with running_model_process("SYNTERA_KB_EMBEDDING_THREADS", "1") as model:
        yield model
    assert not model.socket_path.parent.exists()


@pytest.fixture(scope="module")
def local() -> LocalMiniLM:
    return LocalMiniLM()


async def test_the_vectors_are_those_of_the_model_in_process(
    model_process: ModelProcess, local: LocalMiniLM
) -> None:
    texts = ["How do I get a refund?", "Où est ma commande ?", ""]
    remote = await RemoteMiniLM(str(model_process.socket_path)).embed(texts)
    assert remote.shape == (3, 384)
    np.testing.assert_allclose(remote, local.encode(texts), atol=1e-5)


async def test_a_scoped_request_gets_the_same_vectors(
    model_process: ModelProcess, local: LocalMiniLM
) -> None:
    texts = ["How do I get a refund?", "Où est ma commande ?"]
    embedder = RemoteMiniLM(str(model_process.socket_path))
    for _ in range(2):  # the second time from the model process's memory of the company's
        scoped = await embedder.embed(texts, scope="company-a")
        np.testing.assert_allclose(scoped, local.encode(texts), atol=1e-5)


class Recording:
    """A model that answers zeros and records the scope of each request."""

    def __init__(self) -> None:
        self.scopes: list[str | None] = []

    async def embed(self, texts: list[str], *, scope: str | None = None) -> np.ndarray:  # type: ignore[type-arg]
        self.scopes.append(scope)
        return np.zeros((len(texts), 384), dtype=np.float32)


async def serving(tmp_path: Path, handler: Any) -> tuple[asyncio.AbstractServer, str]:
    path = str(tmp_path / "model.sock")
    return await asyncio.start_unix_server(handler, path), path


async def test_the_scope_goes_with_the_request_to_the_model(tmp_path: Path) -> None:
    model = Recording()
    server, path = await serving(
        tmp_path,
        lambda reader, writer: _answer(model, None, reader, writer),  # type: ignore[arg-type]
    )
    async with server:
        embedder = RemoteMiniLM(path)
        await embedder.embed(["a message"], scope="company-a")
        await embedder.embed(["a query"])
        assert model.scopes == ["company-a", None]


async def test_a_model_process_from_before_scopes_is_asked_as_it_understands(
    tmp_path: Path,
) -> None:
    # An upgrade in place: a new API process may ask a model process of the last version.
    asked: list[object] = []

    async def old(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
            except asyncio.IncompleteReadError:
                return
            request = orjson.loads(await reader.readexactly(length))
            asked.append(request)
            if isinstance(request, list):
                body = np.zeros((len(request), 384), dtype=np.float32).tobytes()
                writer.write(ANSWER.pack(VECTORS, len(body)) + body)
            else:
                writer.write(ANSWER.pack(ERROR, len(OLD_REQUEST_FORM)) + OLD_REQUEST_FORM)
            await writer.drain()

    server, path = await serving(tmp_path, old)
    async with server:
        vectors = await RemoteMiniLM(path).embed(["a message"], scope="company-a")
    assert vectors.shape == (1, 384)
    assert asked == [{"texts": ["a message"], "scope": "company-a"}, ["a message"]]


async def test_concurrent_queries_each_get_their_own_vector(
    model_process: ModelProcess, local: LocalMiniLM
) -> None:
    embedder = RemoteMiniLM(str(model_process.socket_path))
    questions = [question for question, _ in QUESTIONS]
    answers = await asyncio.gather(*(embedder.embed([q]) for q in questions))
    np.testing.assert_allclose(np.concatenate(answers), local.encode(questions), atol=1e-5)
    # A document's chunks (more than a query batch) come back whole and in order.
    chunks = [f"chunk {n} of the handbook, about returns" for n in range(70)]
    np.testing.assert_allclose(await embedder.embed(chunks), local.encode(chunks), atol=1e-5)


async def test_a_malformed_request_is_answered_with_an_error(model_process: ModelProcess) -> None:
    form = 'a request is a JSON array of strings, or {"texts": [...], "scope": "..."}'
    for malformed in (b'{"texts": 1}', b'{"texts": ["a"], "scope": 7}', b'{"texts": ["a"]}'):
        assert await raw_answer(model_process, malformed) == (1, form)


async def test_a_model_process_that_dies_is_started_again(model_process: ModelProcess) -> None:
    embedder = RemoteMiniLM(str(model_process.socket_path), wait_s=120)
    await embedder.embed(["before"])  # leaves an idle connection to the process below
    assert model_process.process is not None
    first = model_process.process.pid
    os.kill(first, signal.SIGKILL)
    vectors = await embedder.embed(["after"])  # waits for the new process, then answers
    assert vectors.shape == (1, 384)
    assert model_process.process.pid != first


async def test_no_model_process_is_an_embedding_error(tmp_path: Path) -> None:
    embedder = RemoteMiniLM(str(tmp_path / "none.sock"), wait_s=0.2)
    with pytest.raises(EmbeddingError, match="no model process answers"):
        await embedder.embed(["anyone?"])


async def test_a_search_without_a_model_is_a_503_naming_it(
    app: FastAPI, client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany,
    tmp_path: Path,
) -> None:  # fmt: skip
    nothing = RemoteMiniLM(str(tmp_path / "none.sock"), wait_s=0.2)
    with state_replaced(app, "kb", embedder=nothing):
        response = await client.post(
            "/v1/kb/search", headers=auth(tenant.member), json={"query": "refunds"}
        )
    assert response.status_code == 503, response.text
    assert "the embedding model is unavailable" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"
