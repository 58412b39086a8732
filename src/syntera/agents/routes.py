"""/v1/agents."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request

from syntera.agents import service
from syntera.agents.answers import Reply, answer, plan_answer
from syntera.agents.prompt import find_sources
from syntera.agents.schemas import (
    Agent,
    PreviewAnswer,
    PreviewRequest,
    PreviewSource,
    PreviewTokens,
    PublicKey,
)
from syntera.api.crud import RowId, add_crud_routes
from syntera.api.deps import Member, member_transaction, principal
from syntera.api.errors import Problem, ProblemDetails
from syntera.api.state import settings_of
from syntera.errors import Unavailable
from syntera.kb.embeddings import EmbeddingError
from syntera.kb.routes import knowledge_base_of, searcher_scope
from syntera.llm.choice import ChatModels
from syntera.llm.models import ModelError
from syntera.tenancy import Principal


def models_of(request: Request) -> ChatModels:
    """This process's chat models (the configured endpoint, the local model), made with
    the app."""
    return cast(ChatModels, request.app.state.models)


agents = APIRouter(prefix="/v1/agents", tags=["agents"])


@agents.get("/{row_id}", response_model=Agent, operation_id="read_agent")
async def read_agent(tx: Member, row_id: RowId) -> Agent:
    """One agent of your company (served from the cache while it is current)."""
    return await service.read_agent(tx, row_id)


add_crud_routes(
    agents,
    service.AGENTS,
    routes=("create", "update", "delete", "list"),
    on_change=service.invalidate_agent,
)


@agents.post("/{row_id}/public-key", status_code=201, response_model=PublicKey)
async def create_public_key(tx: Member, row_id: RowId) -> PublicKey:
    """Create or rotate the agent's widget key (``pub_key_…``); it is returned only now."""
    return await service.rotate_public_key(tx, row_id)


MODEL_FAILURES: dict[int | str, dict[str, Any]] = {
    502: {"model": ProblemDetails, "description": "The model failed or cut its answer short"},
    504: {"model": ProblemDetails, "description": "The model fell silent for too long"},
}


@agents.post(
    "/{row_id}/preview", response_model=PreviewAnswer, responses=MODEL_FAILURES,
    operation_id="preview_agent",
)  # fmt: skip
async def preview_agent(
    request: Request,
    caller: Annotated[Principal, Depends(principal)],
    row_id: RowId,
    body: PreviewRequest,
) -> PreviewAnswer:
    """Answer a test question as the agent would (a disabled agent too), without a
    conversation: the answer, the sources it was given with their scores, its tokens,
    timings, cost, and the model that really answered."""
    settings = settings_of(request)
    kb = knowledge_base_of(request)
    # Short transactions of their own, each closed before a model is asked: the agent
    # first (an unknown one is a 404 before any model works), the question's embedding
    # outside any transaction, then the search; the chat model after both.
    async with member_transaction(request, caller) as tx:
        agent = await service.read_agent(tx, row_id)
    try:
        embedded = await kb.embedder.embed([body.question], scope=searcher_scope(caller))
        vector = [float(x) for x in embedded[0]]
    except EmbeddingError as error:
        raise Unavailable(f"the embedding model is unavailable: {error}", 5) from error
    async with member_transaction(request, caller) as tx:
        sources = await find_sources(
            tx, kb, agent.id, body.question, vector,
            limit=settings.agent_sources, min_similarity=settings.agent_min_similarity,
            mode=settings.agent_search_mode,
        )  # fmt: skip
    plan = plan_answer(models_of(request), settings, agent, body.question, [], sources)
    try:
        reply = await answer(plan, settings.llm_prices)
    except ModelError as error:
        raise _model_problem(error) from error
    return _preview(reply)


def _model_problem(error: ModelError) -> Problem:
    detail = f"the agent's model gave no answer: {error.detail}"
    if error.timed_out:
        return Problem(504, "Gateway Timeout", detail)
    if error.unavailable:
        return Problem(503, "Service Unavailable", detail, headers={"Retry-After": "5"})
    return Problem(502, "Bad Gateway", detail)


def _preview(reply: Reply) -> PreviewAnswer:
    usage = reply.usage
    return PreviewAnswer(
        answer=reply.text,
        model=usage.model,
        note=reply.note,
        sources=[
            PreviewSource(
                number=source.number,
                document_id=source.document_id,
                document_name=source.document_name,
                chunk_id=source.chunk_id,
                score=source.score,
                content=source.content,
            )
            for source in reply.sources
        ],
        tokens=PreviewTokens(
            prompt=usage.prompt_tokens,
            completion=usage.completion_tokens,
            total=usage.total_tokens,
            counted=usage.counted,
        ),
        time_to_first_token_ms=_ms(usage.time_to_first_token_ms),
        response_time_ms=round(reply.response_time_ms, 1),
        cost=reply.cost,
    )


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


routers = [agents]
