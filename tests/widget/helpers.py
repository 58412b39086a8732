"""Driving the chat widget as a visitor would: a public key, then a chat and its session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


async def public_key(client: httpx.AsyncClient, headers: dict[str, str], agent_id: Any) -> str:
    """A new widget key for the agent (made by a member with ``headers``)."""
    response = await client.post(f"/v1/agents/{agent_id}/public-key", headers=headers)
    assert response.status_code == 201
    key: str = response.json()["public_key"]
    return key


async def start_chat(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    """A chat started with the widget key: the conversation and its session token."""
    response = await client.post("/v1/public/conversations", headers={"X-Api-Key": key})
    assert response.status_code == 201, response.text
    chat: dict[str, Any] = response.json()
    return chat


@dataclass(frozen=True)
class WidgetChat:
    """A visitor's chat: the headers that carry its session, and its URL."""

    session: dict[str, str]
    url: str


async def open_chat(
    client: httpx.AsyncClient, headers: dict[str, str], agent_id: Any
) -> WidgetChat:
    """A new widget key for the agent and a chat started with it."""
    key = await public_key(client, headers, agent_id)
    chat = await start_chat(client, key)
    return WidgetChat(
        {"X-Api-Key": key, "X-Widget-Session": chat["session_token"]},
        f"/v1/public/conversations/{chat['conversation']['id']}",
    )
