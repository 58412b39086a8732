"""Uploading, listing, deleting, reprocessing and searching knowledge-base documents.

An upload is checked and its text extracted before anything is stored (415 for a type we
do not read, 422 for an empty file, a file we cannot read or too much text, 413 for a file
over the limit), then the file is stored and the document row created as ``pending``;
a worker (``syntera.kb.processing``) does the rest.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from psycopg import sql

from syntera.db.postgres import TenantConnection
from syntera.db.tables import Filter, Row, equal_filters
from syntera.errors import TooLarge, UnsupportedMediaType, field_error, not_found
from syntera.kb.extract import ExtractionError, UnsupportedType, content_type_of, extract
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.schemas import KnowledgeDocument, SearchHit, SearchRequest, SearchResults
from syntera.kb.storage import file_name
from syntera.kb.vectors import HybridUnsupported
from syntera.kit.resources import Resource, delete_row
from syntera.unit_of_work import TenantTransaction

DOCUMENTS = Resource.of(
    "knowledge_base_documents",
    KnowledgeDocument,
    "knowledge base document",
    json_columns=frozenset({"metadata"}),
    hidden_columns=("file_path",),
)


def check_upload(kb: KnowledgeBase, filename: str, declared: str | None, data: bytes) -> str:
    """The upload's content type once it is known to hold acceptable text; else the
    error that says what is wrong with it."""
    settings = kb.settings
    try:
        content_type = content_type_of(filename, declared)
    except UnsupportedType as error:
        raise UnsupportedMediaType(str(error)) from error
    if not data:
        raise field_error("file", "the file is empty")
    if len(data) > settings.kb_max_file_bytes:
        raise TooLarge(f"the file is over {settings.kb_max_file_bytes} bytes")
    try:
        text = extract(data, content_type).text
    except ExtractionError as error:
        raise field_error("file", str(error)) from error
    if not text.strip():
        raise field_error("file", "the file has no text")
    if len(text.encode()) > settings.kb_max_text_bytes:
        raise field_error(
            "file", f"the file's text is over {settings.kb_max_text_bytes} bytes; split it"
        )
    return content_type


# The database chooses the document's id and path (migration 018): a member cannot name
# another company's file.
QUEUE_DOCUMENT = sql.SQL(
    "SELECT {cols} FROM public.queue_document(%(company_id)s, %(name)s, %(agent_id)s,"
    " %(file_name)s, %(content_type)s, %(size_bytes)s)"
).format(cols=sql.SQL(", ").join(map(sql.Identifier, DOCUMENTS.table.columns)))


async def store_document(
    kb: KnowledgeBase,
    conn: TenantConnection,
    company_id: UUID,
    *,
    filename: str,
    declared_type: str | None,
    data: bytes,
    name: str | None,
    agent_id: UUID | None,
) -> Row:
    """Check, queue and store one file of ``company_id`` in the transaction of ``conn``.

    The row is inserted first (the database names the file) and the file written before
    the transaction commits, so a worker never claims a document without its file."""
    content_type = await asyncio.to_thread(check_upload, kb, filename, declared_type, data)
    params = {
        "company_id": company_id,
        "name": (name or filename).strip() or "document",
        "agent_id": agent_id,
        "file_name": file_name(filename),
        "content_type": content_type,
        "size_bytes": len(data),
    }
    row = await (await conn.execute(QUEUE_DOCUMENT, params)).fetchone()
    if row is None:  # the function answers a row or raises
        raise not_found("Company")
    await kb.storage.put(row["file_path"], data)
    return row


def status_filters(status: str | None, agent_id: UUID | None) -> list[Filter]:
    """The filters of GET /v1/kb/documents."""
    return equal_filters(status=status, agent_id=agent_id)


async def delete_document(tx: TenantTransaction, kb: KnowledgeBase, document_id: UUID) -> None:
    """Delete the document (its pgvector chunks go with it, by cascade) and its vectors in
    an external store now, and its file once committed."""
    row = await delete_row(tx, DOCUMENTS, document_id)
    await kb.vectors.delete_document(tx.conn, tx.company_id, document_id)
    path = row["file_path"]

    async def remove_file() -> None:
        await kb.storage.delete(path)

    tx.after_commit.append(remove_file)


REQUEUE = sql.SQL("SELECT {cols} FROM public.reprocess_document(%(company_id)s, %(id)s)").format(
    cols=sql.SQL(", ").join(map(sql.Identifier, DOCUMENTS.table.columns))
)


async def reprocess(tx: TenantTransaction, document_id: UUID) -> KnowledgeDocument:
    """Queue the document again (a worker holding it loses its lease)."""
    cursor = await tx.conn.execute(REQUEUE, {"company_id": tx.company_id, "id": document_id})
    row = await cursor.fetchone()
    if row is None:
        raise not_found(DOCUMENTS.label)
    return DOCUMENTS.out(row)


async def search(
    tx: TenantTransaction, kb: KnowledgeBase, request: SearchRequest, vector: list[float]
) -> SearchResults:
    """The caller's company's chunks nearest to the query (embedded as ``vector``)."""
    try:
        hits = await kb.vectors.search(
            tx.conn,
            tx.company_id,
            request.query,
            vector,
            request.top_k,
            request.agent_id,
            request.mode,
        )
    except HybridUnsupported as error:
        raise field_error("mode", str(error)) from error
    return SearchResults(data=[SearchHit.model_validate(hit, from_attributes=True) for hit in hits])
