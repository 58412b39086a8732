"""Hand-off to people: a visitor asking for a person, a teammate's reply and a member's
``POST /handoff`` put the conversation in people's hands (``handled_by: "human"`` on the
team's stream, one polite line to the visitor, the owners notified), after which the
agent says nothing more; another company's member can neither hand it off nor hear it."""

from __future__ import annotations

from typing import Any

import httpx

from tests.agents.chats import ASK, AgentChat, MakeWorker, conversation
from tests.agents.standin import StandIn
from tests.api_fixtures import AuthHeaders
from tests.events_helpers import EventStream, subscribe
from tests.factories import SeededCompany


async def handed_over(stream: EventStream) -> dict[str, Any]:
    """The next conversation.updated event's conversation (other events skipped)."""
    while True:
        event = await stream.next(within=15)
        if event.event == "conversation.updated":
            data: dict[str, Any] = event.data["data"]
            return data


async def test_a_visitor_asking_for_a_person_is_handed_over_and_the_agent_says_no_more(
    http: httpx.AsyncClient, auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany],
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    first, second = shops
    async with (
        subscribe(http, "/v1/events", headers=agent_chat.headers) as team,
        subscribe(http, "/v1/events", headers=auth(second.member)) as other,
    ):
        await agent_chat.say(ASK)  # a reply job waits…
        await agent_chat.say("Can I talk to a HUMAN please?")
        assert (await handed_over(team))["handled_by"] == "human"
        await other.nothing_within(0.5)
    # …and is dropped: the agent answers nothing once people have the conversation.
    await make_worker().run_once()
    await agent_chat.say("Hello?")
    assert not await make_worker().run_once()
    assert standin.requests == []
    assert await agent_chat.senders() == ["user", "user", "system", "user"]
    assert await agent_chat.handled_by() == "human"
    found = await http.get("/v1/notifications", headers=auth(first.owner))
    assert found.status_code == 200, found.text
    kinds = [n["type"] for n in found.json()["data"]]
    assert "conversation.handoff" in kinds


async def test_a_teammates_reply_takes_the_conversation_over(
    http: httpx.AsyncClient, agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    conversation_id = agent_chat.chat.url.rsplit("/", 1)[1]
    await agent_chat.say(ASK)
    sent = await http.post(
        f"/v1/conversations/{conversation_id}/messages", headers=agent_chat.headers,
        json={"sender_type": "agent", "content": "Hi, I'm Sam from the team."},
    )  # fmt: skip
    assert sent.status_code == 201, sent.text
    assert await agent_chat.handled_by() == "human"
    await make_worker().run_once()  # the waiting job is dropped
    await agent_chat.say("Thanks Sam")
    assert not await make_worker().run_once()
    assert standin.requests == []
    assert await agent_chat.senders() == ["user", "agent", "user"]


async def test_members_hand_it_back_and_forth_and_another_company_cannot(
    http: httpx.AsyncClient, auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany],
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker,
) -> None:  # fmt: skip
    _, second = shops
    headers = agent_chat.headers
    url = f"/v1/conversations/{agent_chat.chat.url.rsplit('/', 1)[1]}/handoff"
    foreign = await http.post(url, headers=auth(second.owner), json={"to": "human"})
    assert foreign.status_code == 404, foreign.text
    bad = await http.post(url, headers=headers, json={"to": "robot"})
    assert bad.status_code == 422
    taken = await http.post(url, headers=headers, json={"to": "human"})
    assert taken.status_code == 200, taken.text
    assert taken.json()["handled_by"] == "human"
    await agent_chat.say(ASK)
    assert not await make_worker().run_once()
    back = await http.post(url, headers=headers, json={"to": "agent"})
    assert back.json()["handled_by"] == "agent"
    await agent_chat.say(ASK)
    assert await make_worker().run_once()
    assert await agent_chat.senders() == ["user", "user", "agent"]


async def test_the_model_hands_off_on_a_request_in_words_no_phrase_holds(
    http: httpx.AsyncClient, agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    words = "Could somebody from your staff look at my order themselves?"
    phrases = make_worker().settings.agent_handoff_phrases.lower().split(",")
    assert not any(phrase in words.lower() for phrase in phrases)
    # The model answers nothing and calls its hand-off tool, its arguments in pieces.
    standin.reset(deltas=[], tool_call=("conversation_handoff", ['{"reas', 'on": "asks staff"}']))
    async with subscribe(http, "/v1/events", headers=agent_chat.headers) as team:
        await agent_chat.say(words)
        assert await make_worker().run_once()
        assert (await handed_over(team))["handled_by"] == "human"
    offered = standin.requests[-1]["tools"]
    assert [tool["function"]["name"] for tool in offered] == ["conversation_handoff"]
    assert await agent_chat.handled_by() == "human"
    assert (await conversation(http, agent_chat.headers, agent_chat.chat))["handoff_count"] == 1
    assert await agent_chat.senders() == ["user", "system"]
    # The agent says nothing more.
    standin.reset()
    await agent_chat.say("Hello?")
    assert not await make_worker().run_once()
    assert standin.requests == []
    assert await agent_chat.senders() == ["user", "system", "user"]


async def test_an_answer_without_the_tool_call_stays_with_the_agent(
    agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    await agent_chat.say(ASK)
    assert await make_worker().run_once()
    assert standin.requests[-1]["tools"][0]["function"]["name"] == "conversation_handoff"
    assert await agent_chat.handled_by() == "agent"
    assert await agent_chat.senders() == ["user", "agent"]
