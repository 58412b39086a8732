"""The models' interface: the OpenAI-compatible adapter against a stand-in endpoint (the
real ``openai`` client, a real HTTP server), which model answers an agent, and prices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from decimal import Decimal

import pytest

from syntera.config import DEFAULT_PRICES, ModelPrice
from syntera.llm.choice import ChatModels
from syntera.llm.local import LOCAL_MODEL, LocalModel, LocalOptions
from syntera.llm.models import ChatMessage, ChatStream, ModelError, Piece, Usage
from syntera.llm.openai_compatible import OpenAICompatible
from syntera.llm.prices import cost_of, price_of
from tests.agents.conftest import STANDIN_TIMEOUT_S
from tests.agents.standin import StandIn
from tests.agents.streams import read

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You answer questions about refunds."},
    {"role": "user", "content": "How long do refunds take?"},
]


def ask(endpoint: OpenAICompatible, model: str = "gpt-4o-mini") -> ChatStream:
    return endpoint.stream(MESSAGES, model=model, max_tokens=64, temperature=0.2)


async def test_the_answer_streams_and_its_usage_is_the_one_reported(
    standin: StandIn, endpoint: OpenAICompatible
) -> None:
    standin.reset(first_token_delay_s=0.2)
    stream = ask(endpoint)
    assert await read(stream) == "Refunds take 14 days [1]."
    assert stream.usage is not None
    assert stream.usage.model == "gpt-4o-mini-2024-07-18"  # what really answered
    assert (stream.usage.prompt_tokens, stream.usage.completion_tokens) == (321, 7)
    assert stream.usage.total_tokens == 328
    assert stream.usage.counted is False
    assert stream.usage.time_to_first_token_ms is not None
    assert stream.usage.time_to_first_token_ms >= 200
    sent = standin.requests[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == MESSAGES
    assert sent["max_tokens"] == 64


async def test_without_reported_usage_the_tokens_are_counted(
    standin: StandIn, endpoint: OpenAICompatible
) -> None:
    standin.reset(with_usage=False)
    stream = ask(endpoint)
    await read(stream)
    assert stream.usage is not None
    assert stream.usage.counted is True
    assert stream.usage.prompt_tokens > 10
    assert 3 <= stream.usage.completion_tokens <= 20


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ({"behaviour": "refuse", "status": 500}, "answered 500: the stand-in refuses"),
        ({"behaviour": "refuse", "status": 404}, "answered 404: the stand-in refuses"),
        ({"behaviour": "cut"}, "the model endpoint failed"),
        ({"behaviour": "unfinished"}, "ended its answer before completing it"),
        ({"behaviour": "garbage"}, "the model endpoint"),
    ],
)
async def test_a_failing_endpoint_is_one_model_error(
    standin: StandIn, endpoint: OpenAICompatible, script: dict[str, object], message: str
) -> None:
    standin.reset(**script)
    stream = ask(endpoint)
    with pytest.raises(ModelError, match=message) as raised:
        await read(stream)
    assert raised.value.timed_out is False
    assert stream.usage is None


async def test_a_stalled_stream_is_a_timeout_after_the_first_delta(
    standin: StandIn, endpoint: OpenAICompatible
) -> None:
    standin.reset(behaviour="stall", stall_s=10)
    stream = ask(endpoint)
    received: list[str] = []

    async def read_into_received() -> None:
        async with stream:
            async for delta in stream:
                received.append(delta)

    started = asyncio.get_running_loop().time()
    with pytest.raises(ModelError, match=r"1\.5 s") as raised:
        await read_into_received()
    assert raised.value.timed_out is True
    assert received == ["Refunds "]  # what came before the stall, never presented as whole
    assert asyncio.get_running_loop().time() - started < STANDIN_TIMEOUT_S + 2


async def test_a_silent_endpoint_times_out_before_its_first_token(
    standin: StandIn, endpoint: OpenAICompatible
) -> None:
    standin.reset(first_token_delay_s=10)
    with pytest.raises(ModelError) as raised:
        await read(ask(endpoint))
    assert raised.value.timed_out is True


async def test_an_endpoint_that_is_not_there_is_a_model_error() -> None:
    from syntera.llm.local import count_tokens

    nowhere = OpenAICompatible("http://127.0.0.1:9/v1", None, 2, count_tokens)
    with pytest.raises(ModelError, match="the model endpoint failed"):
        await read(ask(nowhere))


async def test_every_adapter_goes_through_the_same_checks() -> None:
    async def slow() -> AsyncGenerator[Piece, None]:
        yield "a"
        await asyncio.sleep(5)
        yield Usage("m", 1, 1, None)

    async def without_usage() -> AsyncGenerator[Piece, None]:
        yield "a"

    with pytest.raises(ModelError, match=r"sent nothing for 0\.1 s"):
        await read(ChatStream(slow(), 0.1, "the test model"))
    with pytest.raises(ModelError, match="ended its answer before completing it"):
        await read(ChatStream(without_usage(), 1, "the test model"))


def test_the_agent_model_names_what_answers_and_a_substitute_says_so() -> None:
    local = LocalModel(LocalOptions(), 5)
    without_url = ChatModels(local)
    choice = without_url.choose("gpt-4o")
    assert (choice.model, choice.name) == (local, LOCAL_MODEL)
    assert choice.note is not None
    assert "gpt-4o is not served here" in choice.note
    assert "SYNTERA_LLM_BASE_URL" in choice.note
    assert without_url.choose("SmolLM2-135M-Instruct").note is None
    assert without_url.choose("local").name == LOCAL_MODEL

    from syntera.llm.local import count_tokens

    endpoint = OpenAICompatible("http://127.0.0.1:9/v1", None, 2, count_tokens)
    with_url = ChatModels(local, endpoint)
    assert with_url.choose("gpt-4o") == type(choice)(endpoint, "gpt-4o", None)
    assert with_url.choose("local").model is local
    listed = ChatModels(local, endpoint, ("gpt-4o-mini",))
    assert listed.choose("gpt-4o-mini").model is endpoint
    other = listed.choose("claude-3")
    assert other.model is local
    assert other.note is not None
    assert "claude-3 is not among the models of the configured endpoint" in other.note


def test_a_reply_costs_its_tokens_at_its_model_price() -> None:
    prices = dict(DEFAULT_PRICES)
    prices["my-model"] = ModelPrice(prompt=Decimal("1"), completion=Decimal("2"))
    usage = Usage("gpt-4o-mini-2024-07-18", 1_000, 500, None)  # a dated snapshot
    assert cost_of(prices, usage) == Decimal("0.00045000")  # 1000 * 0.15 + 500 * 0.60 per 1M
    assert price_of(prices, "GPT-4o") == DEFAULT_PRICES["gpt-4o"]
    assert price_of(prices, "gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert cost_of(prices, Usage("my-model", 1_000_000, 1_000_000, None)) == Decimal("3")
    assert str(cost_of(prices, Usage(LOCAL_MODEL, 5_000, 5_000, None))) == "0"
    assert cost_of(prices, Usage("unpriced-model", 5, 5, None)) is None


def test_prices_are_configured_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from syntera.config import Settings

    monkeypatch.setenv("SYNTERA_LLM_PRICES", '{"llama3": {"prompt": 0.1, "completion": 0.2}}')
    settings = Settings()
    assert settings.llm_prices == {
        "llama3": ModelPrice(prompt=Decimal("0.1"), completion=Decimal("0.2"))
    }
    monkeypatch.setenv("SYNTERA_LLM_PRICES", '{"llama3": {"prompt": -1, "completion": 0}}')
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings()
