"""Fixtures of the agents' tests: the knowledge base's (documents processed by a test
worker), and a stand-in OpenAI-compatible endpoint that the app's models can be pointed
at."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from syntera.llm.choice import ChatModels
from syntera.llm.local import count_tokens
from syntera.llm.openai_compatible import OpenAICompatible
from tests.agents.chats import agent_chat, headers, make_worker  # noqa: F401  (fixtures)
from tests.agents.shops import shops  # noqa: F401  (a fixture)
from tests.agents.standin import StandIn
from tests.api_fixtures import serving
from tests.kb.conftest import kb, process, upload, worker  # noqa: F401  (fixtures)

STANDIN_TIMEOUT_S = 1.5


@pytest.fixture(scope="session")
def standin_server() -> Iterator[tuple[StandIn, str]]:
    standin = StandIn()
    with serving(standin.app) as url:
        yield standin, f"{url}/v1"


@pytest.fixture
def standin(standin_server: tuple[StandIn, str]) -> StandIn:
    """The stand-in endpoint, reset to answer normally, with no request recorded."""
    server, _ = standin_server
    server.reset()
    return server


@pytest.fixture
def endpoint(standin_server: tuple[StandIn, str]) -> OpenAICompatible:
    """The real adapter, pointed at the stand-in."""
    _, url = standin_server
    return OpenAICompatible(url, "sk-test", STANDIN_TIMEOUT_S, count_tokens)


@pytest.fixture
def app_on_standin(app: FastAPI, endpoint: OpenAICompatible) -> Iterator[FastAPI]:
    """The app with SYNTERA_LLM_BASE_URL pointing at the stand-in, for one test."""
    kept = app.state.models
    app.state.models = ChatModels(kept.local, endpoint)
    try:
        yield app
    finally:
        app.state.models = kept
