"""The agents' report reads the figures each conversation keeps as it happens: a
conversation handed to people and back before it ended counts as handed off, not as
resolved by the agent alone; every path to people is counted on the conversation
(``handoff_count``, ``handed_off_at``); the figures need no message to be read again;
another company's member sees none of it."""

from __future__ import annotations

from typing import Any

import httpx
from bson import ObjectId
from fastapi import FastAPI

from tests.agents.chats import ASK, AgentChat, MakeWorker, conversation
from tests.agents.standin import StandIn
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany


async def report(
    http: httpx.AsyncClient, headers: dict[str, str], agent_id: str | None = None
) -> list[dict[str, Any]]:
    params = {"agent_id": agent_id} if agent_id else {}
    found = await http.get("/v1/reports/agents", headers=headers, params=params)
    assert found.status_code == 200, found.text
    rows: list[dict[str, Any]] = found.json()["rows"]
    return rows


async def test_a_conversation_handed_back_before_it_ended_counts_as_handed_off(
    app_on_standin: FastAPI, http: httpx.AsyncClient, auth: AuthHeaders,
    shops: tuple[SeededCompany, SeededCompany], agent_chat: AgentChat,
    standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    _, second = shops
    headers = agent_chat.headers
    cid = agent_chat.chat.url.rsplit("/", 1)[1]
    await agent_chat.say(ASK)
    assert await make_worker().run_once()
    kept = await conversation(http, headers, agent_chat.chat)
    assert (kept["handoff_count"], kept["handed_off_at"]) == (0, None)
    for to in ("human", "agent"):
        moved = await http.post(f"/v1/conversations/{cid}/handoff", headers=headers,
                                json={"to": to})  # fmt: skip
        assert moved.status_code == 200, moved.text
    assert moved.json()["handoff_count"] == 1
    assert moved.json()["handed_off_at"] is not None
    ended = await http.post(f"/v1/conversations/{cid}/end", headers=headers)
    assert ended.status_code == 200, ended.text
    replies = [m for m in (await http.get(f"/v1/conversations/{cid}/messages",
               headers=headers)).json()["data"] if m["sender_type"] == "agent"]  # fmt: skip
    tokens = sum(m["ai_metadata"]["tokens_used"] for m in replies)
    assert tokens > 0
    # The figures are the conversation's own: the messages are not read again.
    database = app_on_standin.state.conversations.database
    await database["messages"].delete_many(
        {"company_id": str(kept["company_id"]), "conversation_id": cid}
    )
    [row] = await report(http, headers, kept["agent_id"])
    assert row["conversations"] == 1
    assert (row["handoff_rate"], row["resolved_by_agent_rate"]) == (1.0, 0.0)
    assert row["tokens_per_conversation"] == tokens
    assert row["first_response_ms"]["p50"] is not None
    assert row["resolution_ms"]["p50"] is not None
    stored = await database["conversations"].find_one(
        {"company_id": str(kept["company_id"]), "_id": ObjectId(cid)}
    )
    assert stored is not None
    assert stored["figures"]["first_answer_at"] > stored["figures"]["first_visitor_at"]
    foreign = await http.get("/v1/reports/agents", headers=auth(second.member),
                             params={"agent_id": kept["agent_id"]})  # fmt: skip
    assert foreign.status_code == 422, foreign.text
    assert all(r["agent_id"] != kept["agent_id"] for r in await report(http, auth(second.member)))


async def test_a_visitors_request_and_a_teammates_reply_are_counted_hand_offs(
    http: httpx.AsyncClient, agent_chat: AgentChat, make_worker: MakeWorker
) -> None:
    await agent_chat.say("Can I talk to a human please?")
    asked = await conversation(http, agent_chat.headers, agent_chat.chat)
    assert (asked["handled_by"], asked["handoff_count"]) == ("human", 1)
    assert asked["handed_off_at"] is not None
    cid = agent_chat.chat.url.rsplit("/", 1)[1]
    back = await http.post(f"/v1/conversations/{cid}/handoff", headers=agent_chat.headers,
                           json={"to": "agent"})  # fmt: skip
    assert back.json()["handoff_count"] == 1
    sent = await http.post(f"/v1/conversations/{cid}/messages", headers=agent_chat.headers,
                           json={"sender_type": "agent", "content": "Sam here."})  # fmt: skip
    assert sent.status_code == 201, sent.text
    taken = await conversation(http, agent_chat.headers, agent_chat.chat)
    assert (taken["handled_by"], taken["handoff_count"]) == ("human", 2)
    assert taken["handed_off_at"] == asked["handed_off_at"]
