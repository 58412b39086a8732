"""A visitor's chat with an agent, as the replies' and hand-off tests drive it: a reply
worker on the app's stores and the stand-in model, and the visitor's calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from syntera.conversations.replies import ReplyWorker
from tests.widget.helpers import WidgetChat

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
