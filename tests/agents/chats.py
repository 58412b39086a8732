"""A visitor's chat with an agent, as the replies' and hand-off tests drive it: a reply
worker on the app's stores and the stand-in model, and the visitor's calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from syntera.conversations.replies import Job, ReplyWorker
from tests.agents.shops import make_agent
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany
from tests.widget.helpers import WidgetChat, open_chat

ASK = "How do I get a refund for my order?"

MakeWorker = Callable[..., ReplyWorker]


@pytest.fixture
def make_worker(app_on_standin: FastAPI, owner_conn: psycopg.Connection) -> MakeWorker:
    """A reply worker on the app's stores and the stand-in model (settings overridable),
    on an empty queue: the jobs other tests' visitors left are not this test's."""
    owner_conn.execute("DELETE FROM syntera.agent_replies")
    app = app_on_standin

    def make(**settings: Any) -> ReplyWorker:
        return ReplyWorker(
            app.state.stores.postgres, app.state.settings.model_copy(update=settings),
            app.state.conversations, app.state.kb, app.state.models,
            cache=app.state.cache, events=app.state.publisher,
        )  # fmt: skip

    return make


async def until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    """Wait until ``check()`` holds (returning as soon as it does)."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


async def until_claimed(worker: ReplyWorker, within: float = 20.0) -> Job:
    """The job ``worker`` claims once one is due (a lease that runs out, say)."""
    deadline = asyncio.get_running_loop().time() + within
    while (job := await worker.claim()) is None:
        assert asyncio.get_running_loop().time() < deadline, "no job came due"
        await asyncio.sleep(0.05)
    return job


async def say(http: httpx.AsyncClient, chat: WidgetChat, text: str) -> None:
    sent = await http.post(f"{chat.url}/messages", headers=chat.session, json={"content": text})
    assert sent.status_code == 201, sent.text


async def messages(http: httpx.AsyncClient, chat: WidgetChat) -> list[dict[str, Any]]:
    page = await http.get(f"{chat.url}/messages", headers=chat.session, params={"limit": 100})
    assert page.status_code == 200, page.text
    data: list[dict[str, Any]] = page.json()["data"]
    return data


async def conversation(
    http: httpx.AsyncClient, headers: dict[str, str], chat: WidgetChat
) -> dict[str, Any]:
    found = await http.get(f"/v1/conversations/{chat.url.rsplit('/', 1)[1]}", headers=headers)
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


@dataclass
class AgentChat:
    """A visitor's chat with a new gpt-4o-mini agent, and the headers of the member who
    made the agent (to read the conversation as the team sees it)."""

    http: httpx.AsyncClient
    headers: dict[str, str]
    chat: WidgetChat

    async def say(self, text: str) -> None:
        """The visitor sends ``text``."""
        await say(self.http, self.chat, text)

    async def senders(self) -> list[str]:
        """Who sent each stored message, oldest first."""
        return [m["sender_type"] for m in await messages(self.http, self.chat)]

    async def handled_by(self) -> str:
        """Who has the conversation: ``"agent"`` or ``"human"``."""
        handler: str = (await conversation(self.http, self.headers, self.chat))["handled_by"]
        return handler


async def open_agent_chat(
    http: httpx.AsyncClient, headers: dict[str, str], **agent: Any
) -> AgentChat:
    """A new gpt-4o-mini agent made by ``headers``' member, and a visitor's chat with it."""
    made = await make_agent(http, headers, model="gpt-4o-mini", **agent)
    return AgentChat(http, headers, await open_chat(http, headers, made["id"]))


@pytest.fixture
def headers(
    auth: AuthHeaders, shops: tuple[SeededCompany, SeededCompany], app_on_standin: FastAPI
) -> dict[str, str]:
    """The first shop's member's headers, with the app's models on the stand-in."""
    first, _ = shops
    return auth(first.member)


@pytest.fixture
async def agent_chat(http: httpx.AsyncClient, headers: dict[str, str]) -> AgentChat:
    """A visitor's chat with a new agent of the first shop, made by its member."""
    return await open_agent_chat(http, headers)


async def start_conversation(http: httpx.AsyncClient, headers: dict[str, str], **agent: Any) -> str:
    """A new gpt-4o-mini agent and a conversation ``headers``' member started with it
    through the members' API: the URL of its messages."""
    made = await make_agent(http, headers, model="gpt-4o-mini", **agent)
    started = await http.post("/v1/conversations", headers=headers, json={"agent_id": made["id"]})
    assert started.status_code == 201, started.text
    return f"/v1/conversations/{started.json()['id']}/messages"


async def post_as_user(http: httpx.AsyncClient, headers: dict[str, str], url: str) -> None:
    """A member posts ``ASK`` as the user (the visitor) to the messages at ``url``."""
    sent = await http.post(url, headers=headers, json={"sender_type": "user", "content": ASK})
    assert sent.status_code == 201, sent.text
