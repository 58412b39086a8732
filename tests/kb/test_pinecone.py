"""The Pinecone vector store through the real ``pinecone`` SDK, against a local stand-in
of Pinecone's data plane (a paid service this machine cannot reach): upsert, query with
a metadata filter, list by id prefix, delete by id, one namespace per company."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import numpy as np
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from syntera.kb.vectors import HybridUnsupported, PineconeStore


class FakeDataPlane:
    """Namespaces of id → (values, metadata); exact cosine ranking."""

    def __init__(self) -> None:
        self.namespaces: dict[str, dict[str, tuple[list[float], dict[str, Any]]]] = {}

    @staticmethod
    def reply(body: dict[str, Any]) -> Response:
        return Response(json.dumps(body), content_type="application/json")

    def upsert(self, request: Request) -> Response:
        body = json.loads(request.data)
        space = self.namespaces.setdefault(body.get("namespace", ""), {})
        for vector in body["vectors"]:
            space[vector["id"]] = (vector["values"], vector.get("metadata", {}))
        return self.reply({"upsertedCount": len(body["vectors"])})

    def query(self, request: Request) -> Response:
        body = json.loads(request.data)
        space = self.namespaces.get(body.get("namespace", ""), {})
        allowed = (body.get("filter") or {}).get("agent_id", {}).get("$in")
        query = np.array(body["vector"])
        scored = [
            (float(np.dot(query, values)), vid, metadata)
            for vid, (values, metadata) in space.items()
            if allowed is None or metadata.get("agent_id") in allowed
        ]
        scored.sort(reverse=True)
        matches = [
            {"id": vid, "score": score, "values": [], "metadata": metadata}
            for score, vid, metadata in scored[: body["topK"]]
        ]
        return self.reply({"matches": matches, "namespace": body.get("namespace", "")})

    def list(self, request: Request) -> Response:
        space = self.namespaces.get(request.args.get("namespace", ""), {})
        prefix = request.args.get("prefix", "")
        ids = [{"id": vid} for vid in sorted(space) if vid.startswith(prefix)]
        return self.reply({"vectors": ids, "namespace": request.args.get("namespace", "")})

    def delete(self, request: Request) -> Response:
        body = json.loads(request.data)
        space = self.namespaces.get(body.get("namespace", ""), {})
        for vid in body.get("ids", []):
            space.pop(vid, None)
        return self.reply({})


@pytest.fixture
def pinecone(httpserver: HTTPServer) -> FakeDataPlane:
    plane = FakeDataPlane()
    httpserver.expect_request("/vectors/upsert", method="POST").respond_with_handler(plane.upsert)
    httpserver.expect_request("/query", method="POST").respond_with_handler(plane.query)
    httpserver.expect_request("/vectors/list", method="GET").respond_with_handler(plane.list)
    httpserver.expect_request("/vectors/delete", method="POST").respond_with_handler(plane.delete)
    return plane


def unit(*values: float) -> list[float]:
    vector = np.zeros(384, dtype=np.float32)
    vector[: len(values)] = values
    return list(vector / np.linalg.norm(vector))


async def test_documents_live_in_their_company_namespace(
    httpserver: HTTPServer, pinecone: FakeDataPlane
) -> None:
    store = PineconeStore("pc-test", httpserver.url_for("").rstrip("/"))
    company, other_company = uuid4(), uuid4()
    agent, other_agent = uuid4(), uuid4()
    doc, shared, foreign = uuid4(), uuid4(), uuid4()
    vectors = np.array([unit(1, 0), unit(0.9, 0.1), unit(0, 1)], dtype=np.float32)
    confirmed = await store.replace_document(
        None,
        company,
        doc,
        agent,
        "faq.md",
        ["a", "b", "c"],
        vectors,  # type: ignore[arg-type]
    )
    assert confirmed == 3
    await store.replace_document(None, company, shared, None, "all.md", ["s"], vectors[:1])  # type: ignore[arg-type]
    await store.replace_document(
        None,
        other_company,
        foreign,
        other_agent,
        "x.md",
        ["x"],
        vectors[:1],  # type: ignore[arg-type]
    )
    assert set(pinecone.namespaces) == {f"kb-{company}", f"kb-{other_company}"}
    assert f"{doc}#2" in pinecone.namespaces[f"kb-{company}"]

    hits = await store.search(None, company, "q", unit(1, 0), 10, None, "vector")  # type: ignore[arg-type]
    assert [(h.document_name, h.chunk_index) for h in hits][:2] in (
        [("faq.md", 0), ("all.md", 0)],
        [("all.md", 0), ("faq.md", 0)],
    )
    assert {h.document_id for h in hits} == {doc, shared}  # never the other company's
    scoped = await store.search(None, company, "q", unit(0, 1), 10, other_agent, "vector")  # type: ignore[arg-type]
    assert {h.document_id for h in scoped} == {shared}
    with pytest.raises(HybridUnsupported):
        await store.search(None, company, "q", unit(1, 0), 10, None, "hybrid")  # type: ignore[arg-type]

    again = await store.replace_document(None, company, doc, agent, "faq.md", ["a"], vectors[:1])  # type: ignore[arg-type]
    assert again == 1
    assert sorted(pinecone.namespaces[f"kb-{company}"]) == sorted([f"{doc}#0", f"{shared}#0"])
    await store.delete_document(None, company, doc)  # type: ignore[arg-type]
    assert list(pinecone.namespaces[f"kb-{company}"]) == [f"{shared}#0"]
