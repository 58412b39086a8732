"""/v1/kb/documents: upload, processing, listing, deletion, reprocessing; bad uploads."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import httpx
import psycopg
import pytest

from syntera.config import Settings
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany
from tests.kb import files
from tests.kb.conftest import Process, Upload

FAQ = b"# Refunds\n\nRefunds are paid within 14 days to the original card.\n"


def chunk_rows(owner_conn: psycopg.Connection, document_id: UUID) -> list[tuple[int, str]]:
    return owner_conn.execute(
        "SELECT chunk_index, content FROM public.knowledge_base_chunks"
        " WHERE document_id = %s ORDER BY chunk_index",
        (document_id,),
    ).fetchall()


@pytest.mark.parametrize(
    ("filename", "data", "expected"),
    [
        ("faq.md", FAQ, "Refunds are paid within 14 days"),
        ("notes.txt", b"Support is open 9 to 5 on weekdays.", "Support is open 9 to 5"),
        ("page.html", files.HTML, "We ship to 40 countries."),
        ("terms.pdf", files.pdf_bytes("Warranty lasts two years."), "Warranty lasts two years."),
        ("guide.docx", files.docx_bytes("Guide", ["Press the blue button."]), "blue button"),
    ],
)
async def test_upload_is_processed_into_chunks_and_vectors(
    upload: Upload,
    auth: AuthHeaders,
    tenant: SeededCompany,
    process: Process,
    owner_conn: psycopg.Connection,
    client: httpx.AsyncClient,
    filename: str,
    data: bytes,
    expected: str,
) -> None:
    headers = auth(tenant.member)
    response = await upload(headers, filename, data, agent_id=str(tenant.rows["agent_configs"]))
    assert response.status_code == 202, response.text
    document = response.json()
    assert document["status"] == "pending"
    assert document["name"] == filename
    assert document["size_bytes"] == len(data)
    assert document["agent_id"] == str(tenant.rows["agent_configs"])
    document_id = UUID(document["id"])

    [row] = await process(document_id)
    assert row["status"] == "completed", row["metadata"]
    chunks = chunk_rows(owner_conn, document_id)
    assert row["chunk_count"] == row["vector_count"] == len(chunks) >= 1
    assert [index for index, _ in chunks] == list(range(len(chunks)))
    assert expected in " ".join(content for _, content in chunks)
    assert row["metadata"]["progress"] == {
        "chunks_done": len(chunks),
        "chunks_total": len(chunks),
    }
    assert row["metadata"]["embedding_model"] == "all-MiniLM-L6-v2"
    shown = (await client.get(f"/v1/kb/documents/{document_id}", headers=headers)).json()
    assert shown["status"] == "completed"
    assert shown["processed_at"] is not None


async def test_name_defaults_to_the_file_name_and_can_be_given(
    upload: Upload, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    named = await upload(auth(tenant.member), "a.md", FAQ, name="Refund policy")
    assert named.status_code == 202
    assert named.json()["name"] == "Refund policy"


@pytest.mark.parametrize(
    ("filename", "data", "content_type", "status", "message"),
    [
        ("photo.png", b"\x89PNG....", "image/png", 415, "not a supported type"),
        ("empty.txt", b"", "text/plain", 422, "the file is empty"),
        ("blank.md", b"  \n\n  ", "text/markdown", 422, "no text"),
        ("latin1.txt", "café".encode("latin-1"), "text/plain", 422, "not UTF-8"),
        ("fake.pdf", b"this is not a pdf", "application/pdf", 422, "not a PDF"),
        ("fake.docx", b"nor a docx", "application/octet-stream", 422, "not a DOCX"),
    ],
)
async def test_bad_uploads_are_refused_and_nothing_is_stored(
    upload: Upload,
    auth: AuthHeaders,
    tenant: SeededCompany,
    owner_conn: psycopg.Connection,
    settings: Settings,
    filename: str,
    data: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    response = await upload(auth(tenant.member), filename, data, content_type)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert message in response.json()["detail"]
    stored = owner_conn.execute(
        "SELECT count(*) FROM public.knowledge_base_documents WHERE company_id = %s",
        (tenant.company_id,),
    ).fetchone()
    assert stored == (1,)  # the factory's seeded document only
    assert not (settings.data_dir / "kb-files" / str(tenant.company_id)).exists()


async def test_a_file_over_10_mib_is_refused_while_streaming(
    auth: AuthHeaders, tenant: SeededCompany, client: httpx.AsyncClient
) -> None:
    eleven_mib = b"word " * (11 * 1024 * 1024 // 5)

    async def stream() -> object:  # no Content-Length: the limit is met mid-stream
        boundary = b"--xyz\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        yield b"Content-Type: text/plain\r\n\r\n"
        for start in range(0, len(eleven_mib), 1024 * 1024):
            yield eleven_mib[start : start + 1024 * 1024]
        yield b"\r\n--xyz--\r\n"

    headers = {**auth(tenant.member), "Content-Type": "multipart/form-data; boundary=xyz"}
    streamed = await client.post("/v1/kb/documents", headers=headers, content=stream())
    assert streamed.status_code == 413, streamed.text
    declared = await client.post(
        "/v1/kb/documents", headers=auth(tenant.member), files={"file": ("big.txt", eleven_mib)}
    )
    assert declared.status_code == 413
    assert "bytes" in declared.json()["detail"]


async def test_a_file_under_10_mib_with_over_3_mib_of_text_is_refused(
    upload: Upload, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    response = await upload(auth(tenant.member), "long.txt", b"lorem " * (700 * 1024))
    assert response.status_code == 422
    assert "text is over 3145728 bytes" in response.json()["detail"]


async def test_unknown_agent_and_missing_file_are_422(
    upload: Upload, auth: AuthHeaders, tenant: SeededCompany, client: httpx.AsyncClient
) -> None:
    headers = auth(tenant.member)
    foreign = await upload(headers, "a.md", FAQ, agent_id="00000000-0000-4000-8000-000000000000")
    assert foreign.status_code == 422
    assert "agent_id" in foreign.json()["detail"]
    missing = await client.post("/v1/kb/documents", headers=headers, data={"name": "x"})
    assert missing.status_code == 422
    assert "file" in missing.text


async def test_list_filters_by_status_and_agent(
    upload: Upload,
    auth: AuthHeaders,
    tenant: SeededCompany,
    client: httpx.AsyncClient,
    process: Process,
) -> None:
    headers = auth(tenant.member)
    agent = str(tenant.rows["agent_configs"])
    done = (await upload(headers, "done.md", FAQ, agent_id=agent)).json()
    await process(UUID(done["id"]))
    waiting = (await upload(headers, "waiting.md", FAQ)).json()

    def names(response: httpx.Response) -> set[str]:
        assert response.status_code == 200, response.text
        return {row["name"] for row in response.json()["data"]}

    everything = await client.get("/v1/kb/documents", headers=headers)
    assert {"done.md", "waiting.md"} <= names(everything)
    completed = await client.get("/v1/kb/documents?status=completed", headers=headers)
    assert names(completed) == {"done.md"}
    of_agent = await client.get(f"/v1/kb/documents?agent_id={agent}", headers=headers)
    assert "done.md" in names(of_agent)
    assert waiting["name"] not in names(of_agent)
    wrong = await client.get("/v1/kb/documents?status=finished", headers=headers)
    assert wrong.status_code == 422


async def test_delete_removes_the_file_chunks_and_vectors(
    upload: Upload,
    auth: AuthHeaders,
    tenant: SeededCompany,
    client: httpx.AsyncClient,
    process: Process,
    owner_conn: psycopg.Connection,
    settings: Settings,
) -> None:
    headers = auth(tenant.member)
    document = (await upload(headers, "faq.md", FAQ)).json()
    document_id = UUID(document["id"])
    await process(document_id)
    path = Path(
        owner_conn.execute(
            "SELECT file_path FROM public.knowledge_base_documents WHERE id = %s", (document_id,)
        ).fetchone()[0]
    )
    stored = settings.data_dir / "kb-files" / path
    assert stored.read_bytes() == FAQ
    assert chunk_rows(owner_conn, document_id)

    deleted = await client.delete(f"/v1/kb/documents/{document_id}", headers=headers)
    assert deleted.status_code == 204
    assert chunk_rows(owner_conn, document_id) == []
    assert not stored.exists()
    again = await client.get(f"/v1/kb/documents/{document_id}", headers=headers)
    assert again.status_code == 404
    search = await client.post("/v1/kb/search", headers=headers, json={"query": "refunds"})
    assert document["id"] not in {hit["document_id"] for hit in search.json()["data"]}


async def test_reprocess_queues_the_document_again(
    upload: Upload,
    auth: AuthHeaders,
    tenant: SeededCompany,
    client: httpx.AsyncClient,
    process: Process,
    owner_conn: psycopg.Connection,
) -> None:
    headers = auth(tenant.member)
    document_id = UUID((await upload(headers, "faq.md", FAQ)).json()["id"])
    [first] = await process(document_id)
    again = await client.post(f"/v1/kb/documents/{document_id}/reprocess", headers=headers)
    assert again.status_code == 202
    assert again.json()["status"] == "pending"
    assert again.json()["attempts"] == 0
    [second] = await process(document_id)
    assert second["status"] == "completed"
    assert second["processed_at"] > first["processed_at"]
    assert len(chunk_rows(owner_conn, document_id)) == first["chunk_count"]  # replaced, not added
