"""The team's private notes on a conversation never reach the agent's prompt: the model
is asked with the visitor's words and the knowledge base, and nothing the team wrote
for itself."""

from __future__ import annotations

import httpx

from tests.agents.chats import ASK, AgentChat, MakeWorker
from tests.agents.standin import StandIn

SECRET = "note-only-codeword-7731"


async def test_a_note_on_the_conversation_is_not_in_the_agents_prompt(
    http: httpx.AsyncClient, agent_chat: AgentChat, standin: StandIn, make_worker: MakeWorker
) -> None:
    conversation_id = agent_chat.chat.url.rsplit("/", 1)[1]
    noted = await http.post(
        f"/v1/conversations/{conversation_id}/notes", headers=agent_chat.headers,
        json={"body": f"Careful: {SECRET}, offer nothing"},
    )  # fmt: skip
    assert noted.status_code == 201, noted.text
    await agent_chat.say(ASK)
    assert await make_worker().run_once()
    asked = standin.prompt_text()
    assert ASK in asked  # the prompt was built, with the visitor's words…
    assert SECRET not in asked  # …and without the team's note
    assert await agent_chat.senders() == ["user", "agent"]
