"""GET /v1/reports/agents: exact figures from known conversations, per day and per agent,
bounded by its period, and nothing of another company."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from syntera.insights.reports import DEFINITIONS, nearest_rank
from tests.agents.shops import make_agent
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.factories import SeededCompany

DAY = datetime(2026, 3, 2, tzinfo=UTC)


def at(hours: float, seconds: float = 0) -> datetime:
    return DAY + timedelta(hours=hours, seconds=seconds)


def visitor(when: datetime, score: float | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"reactions": []}
    if score is not None:
        metadata["sentiment"] = {"label": "neutral", "score": score}
    return {"sender_type": "user", "role": "user", "created_at": when, "metadata": metadata}


def answer(when: datetime, tokens: int | None = None, cost: str | None = None) -> dict[str, Any]:
    ai = {"model": "gpt-4o-mini", "tokens_used": tokens, "cost": cost} if tokens else None
    return {"sender_type": "agent", "role": "assistant", "created_at": when, "ai_metadata": ai,
            "metadata": {"reactions": []}}  # fmt: skip


async def seed(
    app: FastAPI,
    company: SeededCompany,
    agent_id: str,
    started: datetime,
    messages: list[dict[str, Any]],
    *,
    ended: datetime | None = None,
    handled_by: str = "agent",
    rating: int | None = None,
) -> None:
    """A conversation of ``company`` as the platform stores it, with its messages."""
    database = app.state.conversations.database
    oid = ObjectId()
    await database["conversations"].insert_one({
        "company_id": str(company.company_id), "_id": oid, "agent_id": agent_id,
        "contact_id": None, "channel": "chat", "status": "ended" if ended else "active",
        "started_at": started, "ended_at": ended, "handled_by": handled_by,
        "rating": {"score": rating, "comment": None, "rated_at": ended} if rating else None,
        "tags": [], "threads": [], "metadata": {}, "created_at": started, "updated_at": started,
    })  # fmt: skip
    if messages:
        await database["messages"].insert_many([
            {"company_id": str(company.company_id), "conversation_id": str(oid),
             "content": "…", "message_type": "text", "attachments": [], "read_by": [],
             "thread_id": None, **message}
            for message in messages
        ])  # fmt: skip


@pytest.fixture(scope="module")
async def reported(
    app: FastAPI, client: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant
) -> tuple[SeededCompany, SeededCompany, dict[str, str]]:
    """Two companies: the first with two agents' conversations on DAY and the next day,
    the second with one of its own on DAY."""
    first, second = await make_tenant(), await make_tenant()
    headers = auth(first.member)
    ada = (await make_agent(client, headers, name="Ada"))["id"]
    bob = (await make_agent(client, headers, name="Bob"))["id"]
    other = (await make_agent(client, auth(second.member), name="Other"))["id"]
    # Ada, on DAY: answered in 2 s, resolved alone in 5 min, rated 5, mood -0.5 -> 0.5.
    await seed(app, first, ada, at(10), [
        visitor(at(10), -0.5), answer(at(10, 2), 100, "0.001"), visitor(at(10, 30), 0.5),
        answer(at(10, 40), 50, "0.0005"),
    ], ended=at(10, 300), rating=5)  # fmt: skip
    # Ada, on DAY: answered in 4 s, handed to people, ended after 10 min, rated 3.
    await seed(app, first, ada, at(11), [visitor(at(11)), answer(at(11, 4), 250, "0.0025")],
               ended=at(11, 600), handled_by="human", rating=3)  # fmt: skip
    # Ada, on DAY: a greeting before the visitor spoke, never answered after, still open.
    await seed(app, first, ada, at(12), [answer(at(12), 0), visitor(at(12, 5), -0.2)])
    # Bob, on DAY: a teammate answered in a minute; ended after 30 min.
    await seed(app, first, bob, at(9), [visitor(at(9)), answer(at(9, 60))], ended=at(9, 1800))
    # Bob, the next day.
    await seed(app, first, bob, at(30), [visitor(at(30))])
    # The other company, on DAY.
    await seed(app, second, other, at(10), [visitor(at(10), 0.9), answer(at(10, 1), 999, "9")])
    return first, second, {"ada": ada, "bob": bob, "other": other}


async def test_each_figure_per_day_and_agent_is_exact(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    reported: tuple[SeededCompany, SeededCompany, dict[str, str]],
) -> None:
    first, _, agents = reported
    answer = await client.get("/v1/reports/agents", headers=auth(first.member),
                              params={"from": "2026-03-02", "to": "2026-03-03"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["from_day"] == "2026-03-02"
    assert body["to_day"] == "2026-03-03"
    assert set(body["definitions"]) == set(DEFINITIONS)
    rows = {(row["day"], row["agent_name"]): row for row in body["rows"]}
    assert list(rows) == [("2026-03-02", "Ada"), ("2026-03-02", "Bob"), ("2026-03-03", "Bob")]
    assert rows["2026-03-02", "Ada"] == {
        "day": "2026-03-02", "agent_id": agents["ada"], "agent_name": "Ada",
        "conversations": 3,
        "first_response_ms": {"p50": 2000.0, "p90": 4000.0},
        "resolution_ms": {"p50": 300000.0, "p90": 600000.0},
        "handoff_rate": 0.3333,
        "resolved_by_agent_rate": 0.3333,
        "tokens_per_conversation": 133.33,  # (100 + 50 + 250) / 3
        "cost_per_conversation": 0.001333,  # $0.004 / 3
        "sentiment_start": -0.35,  # mean(-0.5, -0.2)
        "sentiment_end": 0.15,  # mean(0.5, -0.2)
        "satisfaction": {"count": 2, "average": 4.0},
    }  # fmt: skip
    bob = rows["2026-03-02", "Bob"]
    assert bob["first_response_ms"] == {"p50": 60000.0, "p90": 60000.0}
    assert bob["resolution_ms"] == {"p50": 1800000.0, "p90": 1800000.0}
    assert (bob["handoff_rate"], bob["resolved_by_agent_rate"]) == (0.0, 1.0)
    assert (bob["tokens_per_conversation"], bob["cost_per_conversation"]) == (0.0, 0.0)
    assert (bob["sentiment_start"], bob["sentiment_end"]) == (None, None)
    assert bob["satisfaction"] == {"count": 0, "average": None}
    later = rows["2026-03-03", "Bob"]
    assert later["conversations"] == 1
    assert later["first_response_ms"] == {"p50": None, "p90": None}


async def test_the_period_and_the_agent_narrow_the_report(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    reported: tuple[SeededCompany, SeededCompany, dict[str, str]],
) -> None:
    first, _, agents = reported
    headers = auth(first.member)
    one_day = await client.get("/v1/reports/agents", headers=headers,
                               params={"from": "2026-03-03", "to": "2026-03-03"})  # fmt: skip
    assert [(r["day"], r["agent_name"]) for r in one_day.json()["rows"]] == [("2026-03-03", "Bob")]
    ada = await client.get("/v1/reports/agents", headers=headers,
                           params={"from": "2026-03-01", "to": "2026-03-05",
                                   "agent_id": agents["ada"]})  # fmt: skip
    assert [r["agent_name"] for r in ada.json()["rows"]] == ["Ada"]


async def test_another_companys_member_sees_none_of_it(
    client: httpx.AsyncClient,
    auth: AuthHeaders,
    reported: tuple[SeededCompany, SeededCompany, dict[str, str]],
) -> None:
    _, second, agents = reported
    params = {"from": "2026-03-02", "to": "2026-03-03"}
    theirs = await client.get("/v1/reports/agents", headers=auth(second.member), params=params)
    assert theirs.status_code == 200
    [row] = theirs.json()["rows"]
    assert row["agent_id"] == agents["other"]
    assert row["conversations"] == 1
    assert row["tokens_per_conversation"] == 999.0
    # Naming the first company's agent answers as for an agent that does not exist.
    named = await client.get("/v1/reports/agents", headers=auth(second.member),
                             params={**params, "agent_id": agents["ada"]})  # fmt: skip
    assert named.status_code == 422
    assert "agent_id" in named.text
    assert (await client.get("/v1/reports/agents", params=params)).status_code == 401


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-05", "to": "2026-03-01"}, "from"),
        ({"from": "2024-01-01", "to": "2026-03-01"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-03-01T10:00:00Z"}, "to"),
        ({"to": "0001-01-01"}, "to"),
        ({"from": "9999-12-31"}, "from"),
        ({"agent_id": "not-a-uuid"}, "agent_id"),
    ],
)
async def test_a_bad_period_is_a_422_naming_it(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany,
    params: dict[str, str], field: str,
) -> None:  # fmt: skip
    answer = await client.get("/v1/reports/agents", headers=auth(tenant.member), params=params)
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def test_percentiles_are_by_nearest_rank() -> None:
    assert nearest_rank([], 0.5) is None
    assert nearest_rank([5.0], 0.9) == 5.0
    assert nearest_rank([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert nearest_rank([float(n) for n in range(1, 11)], 0.9) == 9.0
    assert nearest_rank([float(n) for n in range(1, 12)], 0.9) == 10.0


async def test_scores_a_client_wrote_outside_minus_one_to_one_are_not_sentiments(
    app: FastAPI, client: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant
) -> None:
    company = await make_tenant()
    headers = auth(company.member)
    agent = (await make_agent(client, headers, name="Huge"))["id"]
    for hour in (10, 11):  # two of them once overflowed the mean: a 500
        await seed(app, company, agent, at(hour), [visitor(at(hour), 1e308)])
    day = DAY.date().isoformat()
    response = await client.get(
        "/v1/reports/agents", headers=headers, params={"from": day, "to": day}
    )
    assert response.status_code == 200, response.text
    [row] = response.json()["rows"]
    assert (row["sentiment_start"], row["sentiment_end"]) == (None, None)
