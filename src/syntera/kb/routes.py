"""/v1/kb: knowledge-base documents and search."""

from __future__ import annotations

from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile

from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Member, principal
from syntera.api.errors import ProblemDetails
from syntera.db.tables import Filter
from syntera.errors import Unavailable
from syntera.kb import service
from syntera.kb.embeddings import EmbeddingError
from syntera.kb.knowledge_base import KnowledgeBase
from syntera.kb.schemas import DocumentStatus, KnowledgeDocument, SearchRequest, SearchResults
from syntera.kit.schemas import Name
from syntera.tenancy import Principal


def knowledge_base_of(request: Request) -> KnowledgeBase:
    """This process's knowledge base (files, embedder, vector store), made with the app."""
    return cast(KnowledgeBase, request.app.state.kb)


documents = APIRouter(prefix="/v1/kb/documents", tags=["knowledge base"])
search_router = APIRouter(prefix="/v1/kb", tags=["knowledge base"])

UPLOAD_PATH = "/v1/kb/documents"


UNSUPPORTED: dict[int | str, dict[str, Any]] = {
    415: {
        "model": ProblemDetails,
        "description": "Not a type we read (text, Markdown, HTML, PDF, DOCX)",
    }
}


@documents.post("", status_code=202, response_model=KnowledgeDocument, responses=UNSUPPORTED)
async def upload_document(
    request: Request,
    tx: Member,
    file: Annotated[UploadFile, File(description="Text, Markdown, HTML, PDF or DOCX.")],
    name: Annotated[Name | None, Form(description="Defaults to the file's name.")] = None,
    agent_id: Annotated[UUID | None, Form(description="The agent that uses it.")] = None,
) -> KnowledgeDocument:
    """Upload a document; it is processed in the background (`status` tells how far)."""
    kb = knowledge_base_of(request)
    data = await file.read()
    row = await service.store_document(
        kb,
        tx.conn,
        tx.company_id,
        filename=file.filename or "document",
        declared_type=file.content_type,
        data=data,
        name=name,
        agent_id=agent_id,
    )
    return service.DOCUMENTS.out(row)


async def document_filters(
    status: Annotated[
        DocumentStatus | None, Query(description="Only documents in this state.")
    ] = None,
    agent_id: Annotated[UUID | None, Query(description="Only this agent's documents.")] = None,
) -> list[Filter]:
    return service.status_filters(status, agent_id)


add_crud_routes(documents, service.DOCUMENTS, filters=document_filters, routes=("read", "list"))


@documents.delete("/{row_id}", status_code=204, response_class=Response)
async def delete_document(request: Request, tx: Member, row_id: RowId) -> Response:
    """Delete a document with its chunks, vectors and file."""
    await service.delete_document(tx, knowledge_base_of(request), row_id)
    return Response(status_code=204)


@documents.post("/{row_id}/reprocess", status_code=202, response_model=KnowledgeDocument)
async def reprocess_document(tx: Member, row_id: RowId) -> KnowledgeDocument:
    """Process the document again from its stored file."""
    return await service.reprocess(tx, row_id)


def searcher_scope(caller: Principal) -> str | None:
    """Whose queries a search's vector is remembered for: the user's own (a company is
    not known before the transaction), so a query repeated answers sooner to its writer
    alone; nobody's for a caller without a user."""
    return f"user:{caller.user_id}" if caller.user_id is not None else None


async def query_vector(
    request: Request, caller: Annotated[Principal, Depends(principal)], body: SearchRequest
) -> list[float]:
    """The query's embedding, made after the caller is known and before the request's
    transaction opens: no pooled connection waits on the model."""
    try:
        vectors = await knowledge_base_of(request).embedder.embed(
            [body.query], scope=searcher_scope(caller)
        )
    except EmbeddingError as error:
        raise Unavailable(f"the embedding model is unavailable: {error}", 5) from error
    return [float(x) for x in vectors[0]]


@search_router.post("/search", response_model=SearchResults)
async def search(
    request: Request,
    vector: Annotated[list[float], Depends(query_vector)],
    tx: Member,
    body: SearchRequest,
) -> SearchResults:
    """The chunks of your company's documents nearest to the query, best first."""
    return await service.search(tx, knowledge_base_of(request), body, vector)


routers = [documents, search_router]
