"""Embedding providers and file storage backends.

The local model is the real all-MiniLM-L6-v2. The OpenAI provider and S3 storage speak to
stand-ins of those paid services (a local HTTP server, moto's S3 server): the adapters
are the real ones, only the far end is local.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from syntera.config import Settings
from syntera.kb.embeddings import (
    RECENT_TEXTS_PER_SCOPE,
    EmbeddingError,
    LocalMiniLM,
    OpenAIEmbedder,
    embedder_from,
    load_minilm,
    load_onnx_minilm,
)
from syntera.kb.storage import LocalStorage, S3Storage, file_key, storage_from


async def test_the_local_model_gives_normalised_384_dimension_vectors() -> None:
    model = LocalMiniLM()
    vectors = await model.embed(["refund policy", "money back guarantee", "bluetooth pairing"])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2], "related texts are nearer"
    again = await model.embed(["refund policy"])
    assert np.allclose(again[0], vectors[0], atol=1e-5)


def test_small_batches_run_on_onnxruntime_with_torchs_vectors() -> None:
    """Queries (short, few) go through the ONNX export, long batches through torch; both
    give the vectors of sentence-transformers, padding included."""
    from syntera.kb.minilm_onnx import SMALL_BATCH_TOKENS

    onnx, torch_only = LocalMiniLM(), LocalMiniLM(onnx=False)
    exported = load_onnx_minilm()
    queries = ["refund?", "how do I pair my bluetooth headphones with a new phone"]
    assert exported.tokens(queries)["input_ids"].size <= SMALL_BATCH_TOKENS
    vectors = onnx.encode(queries)
    assert np.array_equal(vectors, exported.encode(exported.tokens(queries))), "onnx ran"
    assert np.allclose(vectors, torch_only.encode(queries), atol=1e-5)
    one = onnx.encode(queries[1:])  # alone, without the padding of the batch
    assert np.allclose(one[0], vectors[1], atol=1e-5)

    chunks = [f"chunk {i} of a long manual about returns, warranties and repairs " * 6
              for i in range(8)]  # fmt: skip
    assert exported.tokens(chunks)["input_ids"].size > SMALL_BATCH_TOKENS
    assert np.array_equal(onnx.encode(chunks), torch_only.encode(chunks)), "torch ran"


def test_the_exported_graph_is_kept_and_a_broken_one_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first load exports the graph and keeps it; the next reads it without
    exporting; a cached file that is no graph is exported again and replaced."""
    from syntera.kb import minilm_onnx

    monkeypatch.setenv("SYNTERA_MODEL_CACHE_DIR", str(tmp_path))
    model = load_minilm()
    first = minilm_onnx.OnnxMiniLM(model, 1)
    (kept,) = tmp_path.iterdir()
    assert kept == minilm_onnx.cache_path()
    assert kept.stat().st_size > 1_000_000
    query = first.tokens(["where is my parcel?"])
    expected = first.encode(query)

    def no_export(_: object) -> bytes:
        raise AssertionError("exported although the graph was cached")

    with monkeypatch.context() as patched:
        patched.setattr(minilm_onnx, "_export", no_export)
        assert np.array_equal(minilm_onnx.OnnxMiniLM(model, 1).encode(query), expected)

    kept.write_bytes(b"half a graph")
    again = minilm_onnx.OnnxMiniLM(model, 1)
    assert np.array_equal(again.encode(query), expected)
    assert kept.stat().st_size > 1_000_000, "the broken file was not replaced"
    assert [path.name for path in tmp_path.iterdir()] == [kept.name]  # no partial left


def openai_embeddings(request: Request) -> Response:
    """What /v1/embeddings answers: one unnormalised vector per input, out of order."""
    body = json.loads(request.data)
    assert request.headers["Authorization"] == "Bearer sk-test"
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": [float(len(text)), 1.0, 0.0, 2.0][: body["dimensions"]],
        }
        for i, text in enumerate(body["input"])
    ]
    answer = {
        "object": "list",
        "data": data[::-1],
        "model": body["model"],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    return Response(json.dumps(answer), content_type="application/json")


async def test_the_openai_provider_batches_orders_and_normalises(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/embeddings", method="POST").respond_with_handler(
        openai_embeddings
    )
    embedder = OpenAIEmbedder(
        "sk-test", "text-embedding-3-small", 4, httpserver.url_for("/v1"), batch_size=2
    )
    vectors = await embedder.embed(["a", "bbb", "cc"])
    assert vectors.shape == (3, 4)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1)
    expected = np.array([1.0, 1.0, 0.0, 2.0]) / np.sqrt(6)
    assert np.allclose(vectors[0], expected)  # index 0 although answered last
    assert len(httpserver.log) == 2  # batches of two


async def test_the_openai_provider_reports_failures_and_wrong_shapes(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/v1/embeddings").respond_with_json(
        {"error": {"message": "bad key"}}, status=401
    )
    failing = OpenAIEmbedder("sk-test", "text-embedding-3-small", 4, httpserver.url_for("/v1"))
    with pytest.raises(EmbeddingError, match="text-embedding-3-small"):
        await failing.embed(["a"])
    httpserver.clear()
    httpserver.expect_request("/v1/embeddings").respond_with_handler(openai_embeddings)
    wrong = OpenAIEmbedder("sk-test", "text-embedding-3-small", 8, httpserver.url_for("/v1"))
    with pytest.raises(EmbeddingError, match="shape"):
        await wrong.embed(["a"])


def test_the_provider_is_chosen_by_settings(settings: Settings) -> None:
    assert isinstance(embedder_from(settings), LocalMiniLM)
    openai = settings.model_copy(update={"kb_embedding_provider": "openai", "openai_api_key": "k"})
    chosen = embedder_from(openai)
    assert isinstance(chosen, OpenAIEmbedder)
    assert chosen.dimensions == 384
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        embedder_from(settings.model_copy(update={"kb_embedding_provider": "openai"}))


def test_file_keys_are_ours_not_the_uploaders() -> None:
    company, document = uuid4(), uuid4()
    assert file_key(company, document, "../../etc/passwd") == f"{company}/{document}/passwd"
    assert (
        file_key(company, document, "My Report (final).pdf")
        == f"{company}/{document}/My_Report_final_.pdf"
    )
    assert file_key(company, document, "..") == f"{company}/{document}/file"


async def test_local_storage_round_trip_and_no_escape(tmp_path: object) -> None:
    from pathlib import Path

    storage = LocalStorage(Path(str(tmp_path)))
    await storage.put("c/d/a.txt", b"hello")
    assert await storage.get("c/d/a.txt") == b"hello"
    await storage.delete("c/d/a.txt")
    assert not (Path(str(tmp_path)) / "c").exists()
    with pytest.raises(ValueError, match="leaves"):
        await storage.put("../outside.txt", b"x")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


async def test_s3_storage_round_trip(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="syntera-kb")
    storage = S3Storage("syntera-kb", "files/", s3_endpoint)
    await storage.put("c/d/a.md", b"# hi")
    assert await storage.get("c/d/a.md") == b"# hi"
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket="syntera-kb")
    assert [item["Key"] for item in listed["Contents"]] == ["files/c/d/a.md"]
    await storage.delete("c/d/a.md")
    with pytest.raises(Exception, match="NoSuchKey"):
        await storage.get("c/d/a.md")


def test_storage_is_chosen_by_settings(settings: Settings) -> None:
    assert isinstance(storage_from(settings), LocalStorage)
    with pytest.raises(ValueError, match="BUCKET"):
        storage_from(settings.model_copy(update={"kb_storage": "s3"}))


async def test_concurrent_queries_share_one_forward_pass() -> None:
    model = LocalMiniLM()
    calls: list[int] = []
    encode = model.encode

    def counted(texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
        calls.append(len(texts))
        return encode(texts)

    model.encode = counted  # type: ignore[method-assign]
    questions = [f"question number {i} about refunds" for i in range(20)]
    together = await asyncio.gather(*(model.embed([q]) for q in questions))
    assert len(calls) < len(questions)
    assert sum(calls) == len(questions)
    alone = encode(questions)
    for i, vectors in enumerate(together):
        assert vectors.shape == (1, 384)
        assert np.allclose(vectors[0], alone[i], atol=1e-5)


def counted_encodes(model: LocalMiniLM) -> tuple[list[list[str]], Any]:
    """The texts of each encode ``model`` does from now on, and its own encode (which
    counts nothing)."""
    calls: list[list[str]] = []
    encode = model.encode

    def counted(texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
        calls.append(texts)
        return encode(texts)

    model.encode = counted  # type: ignore[method-assign]
    return calls, encode


async def test_a_text_embedded_again_is_not_encoded_again() -> None:
    """A visitor's message is embedded as the agent's question, then by the insights
    classifier, both for the visitor's company: the second time, its vector is the one
    kept."""
    model = LocalMiniLM()
    calls, encode = counted_encodes(model)
    first = await model.embed(["How do I get a refund?"], scope="company-a")
    both = await model.embed(["Where does it go?", "How do I get a refund?"], scope="company-a")
    assert calls == [["How do I get a refund?"], ["Where does it go?"]]
    assert both.shape == (2, 384)
    assert np.array_equal(both[1], first[0])
    assert np.allclose(both[0], encode(["Where does it go?"])[0], atol=1e-5)
    assert (await model.embed([], scope="company-a")).shape == (0, 384)


async def test_recent_vectors_are_remembered_per_company_and_never_across() -> None:
    # A vector remembered for one company would answer another's same text sooner, and
    # so tell it that the text was written there; and one company's traffic evicts only
    # its own vectors.
    model = LocalMiniLM()
    calls, _ = counted_encodes(model)
    text = "Has my parcel left the warehouse?"
    first = await model.embed([text], scope="company-a")
    again = await model.embed([text], scope="company-a")
    other = await model.embed([text], scope="company-b")
    unscoped = await model.embed([text])
    assert calls == [[text], [text], [text]], "only company a's second one was remembered"
    for vectors in (again, other, unscoped):
        assert np.allclose(vectors, first, atol=1e-6)
    # Company b fills its own room many times over: company a's vector stays.
    flood = [f"message {n} of a busy shop" for n in range(3 * RECENT_TEXTS_PER_SCOPE)]
    await asyncio.gather(*(model.embed([message], scope="company-b") for message in flood))
    calls.clear()
    await model.embed([text], scope="company-a")
    assert calls == []
