"""POST /v1/agents/{id}/preview: an agent answers a test question from its company's
knowledge base, through the real adapter and a stand-in endpoint, without holding a
database connection while the model writes; another company's member gets 404; a model
that fails, stalls or cuts its stream is a 5xx problem naming it, never a 500."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from syntera.kb.model_process import RemoteMiniLM
from tests.agents.shops import QUESTION, make_agent
from tests.agents.standin import StandIn
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


async def preview(
    client: httpx.AsyncClient, headers: dict[str, str], agent_id: str, question: str = QUESTION
) -> httpx.Response:
    return await client.post(
        f"/v1/agents/{agent_id}/preview", headers=headers, json={"question": question}
    )


async def test_the_answer_comes_from_the_companys_own_chunks_with_reported_usage(
    client: httpx.AsyncClient, headers: dict[str, str], standin: StandIn
) -> None:
    agent = await make_agent(client, headers, model="gpt-4o-mini", temperature=0.2)
    response = await preview(client, headers, agent["id"])
    assert response.status_code == 200, response.text
    body = response.json()

    prompt = standin.prompt_text()
    assert "You are the shop's refund helper." in prompt
    assert "ALPHA-7731" in prompt  # the company's chunk
    assert "BRAVO-4410" not in prompt  # never the other company's, on the same topic
    assert QUESTION in prompt
    sent = standin.requests[0]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 512  # the default when the agent sets none

    assert body["answer"] == "Refunds take 14 days [1]."
    assert body["model"] == "gpt-4o-mini-2024-07-18"
    assert body["note"] is None
    assert body["tokens"] == {"prompt": 321, "completion": 7, "total": 328, "counted": False}
    assert Decimal(body["cost"]) == Decimal("0.00005235")  # 321 * 0.15 + 7 * 0.60 per 1M
    assert body["response_time_ms"] >= body["time_to_first_token_ms"] > 0
    [source] = body["sources"]
    assert source["number"] == 1
    assert source["document_name"] == "refunds.md"
    assert "ALPHA-7731" in source["content"]
    assert 0.3 <= source["score"] <= 1
    assert source["chunk_id"]


async def test_no_database_connection_is_held_while_the_model_writes(
    client: httpx.AsyncClient, headers: dict[str, str], standin: StandIn, app_on_standin: FastAPI
) -> None:
    agent = await make_agent(client, headers)
    pool = app_on_standin.state.stores.postgres
    in_use: list[int] = []

    def look_at_the_pool() -> None:  # in the stand-in's thread, while it is being asked
        stats = pool.get_stats()
        in_use.append(stats["pool_size"] - stats["pool_available"])

    standin.reset(on_request=look_at_the_pool, first_token_delay_s=0.2)
    response = await preview(client, headers, agent["id"])
    assert response.status_code == 200, response.text
    assert in_use == [0]


@pytest.mark.parametrize(
    ("script", "status", "words"),
    [
        ({"behaviour": "stall", "stall_s": 10}, 504, "sent nothing for 1.5 s"),
        ({"behaviour": "cut"}, 502, "the model endpoint failed"),
        ({"behaviour": "refuse", "status": 503}, 502, "answered 503: the stand-in refuses"),
        ({"behaviour": "unfinished"}, 502, "ended its answer before completing it"),
    ],
)
async def test_a_failing_model_is_a_clear_5xx_not_a_500(
    client: httpx.AsyncClient, headers: dict[str, str], standin: StandIn,
    script: dict[str, Any], status: int, words: str,
) -> None:  # fmt: skip
    agent = await make_agent(client, headers)
    standin.reset(**script)
    response = await preview(client, headers, agent["id"])
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    assert detail.startswith("the agent's model gave no answer: ")
    assert words in detail


async def test_another_companys_member_gets_404_and_the_model_is_not_asked(
    client: httpx.AsyncClient, auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany],
    standin: StandIn, app_on_standin: FastAPI,
) -> None:  # fmt: skip
    first, second = shops
    agent = await make_agent(client, auth(first.member))
    response = await preview(client, auth(second.member), agent["id"])
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == "Agent not found"
    assert standin.requests == []
    unknown = await preview(client, auth(second.member), "00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404


async def test_a_disabled_agent_can_still_be_tried(
    client: httpx.AsyncClient, headers: dict[str, str], standin: StandIn
) -> None:
    agent = await make_agent(client, headers, enabled=False)
    response = await preview(client, headers, agent["id"])
    assert response.status_code == 200, response.text


async def test_a_question_off_the_knowledge_base_gets_no_source(
    client: httpx.AsyncClient, headers: dict[str, str], standin: StandIn
) -> None:
    agent = await make_agent(client, headers)
    response = await preview(client, headers, agent["id"], "Which planet has the most moons?")
    assert response.status_code == 200, response.text
    assert response.json()["sources"] == []
    assert "No document of the knowledge base matches" in standin.prompt_text()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"question": ""}, "question"),
        ({"question": "   "}, "question"),
        ({"question": "x" * 20_001}, "question"),
        ({"question": "a\x00b"}, "question"),
        ({}, "question"),
        ({"question": "hi", "model": "gpt-4o"}, "model"),
    ],
)
async def test_a_bad_question_is_a_422_naming_it(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany,
    body: dict[str, Any], field: str,
) -> None:  # fmt: skip
    headers = auth(tenant.member)
    agent = await make_agent(client, headers)
    response = await client.post(f"/v1/agents/{agent['id']}/preview", headers=headers, json=body)
    assert response.status_code == 422, response.text
    assert any(error["field"].endswith(field) for error in response.json()["errors"])


async def test_a_question_of_20000_characters_is_answered(
    client: httpx.AsyncClient, headers: dict[str, str], standin: StandIn
) -> None:
    agent = await make_agent(client, headers)
    question = ("refund " * 3000)[:20_000]
    response = await preview(client, headers, agent["id"], question)
    assert response.status_code == 200, response.text


async def test_without_a_session_it_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/agents/00000000-0000-4000-8000-000000000000/preview", json={"question": "hi"}
    )
    assert response.status_code == 401


async def test_an_agent_of_another_company_is_a_404_before_any_model_works(
    app: FastAPI, client: httpx.AsyncClient, auth: AuthHeaders,
    shops: tuple[SeededCompany, SeededCompany], tmp_path: Path,
) -> None:  # fmt: skip
    first, second = shops
    agent = await make_agent(client, auth(first.member))
    kept = app.state.kb
    # No embedding model answers: a request that reached it would be a 503.
    app.state.kb = dataclasses.replace(
        kept, embedder=RemoteMiniLM(str(tmp_path / "none.sock"), wait_s=0.2)
    )
    try:
        foreign = await preview(client, auth(second.member), agent["id"])
        own = await preview(client, auth(first.member), agent["id"])
    finally:
        app.state.kb = kept
    assert foreign.status_code == 404, foreign.text
    assert own.status_code == 503, own.text
    assert "the embedding model is unavailable" in own.json()["detail"]
