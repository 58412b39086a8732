"""Any OpenAI-compatible chat-completions endpoint (OpenAI, Azure, vLLM, Ollama,
llama.cpp's server), streamed through the ``openai`` package.

The request asks for ``stream_options: {"include_usage": true}``, so the provider ends the
stream with a chunk holding the answer's usage; a provider that sends none gets its tokens
counted here. An answer is complete only once a choice says why it finished: a stream
that ends without it was cut.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncGenerator, Callable
from functools import cache
from typing import Any

from syntera.llm.models import (
    HANDOFF_TOOL,
    ChatMessage,
    Handoff,
    ModelError,
    Piece,
    StreamingModel,
    Usage,
)

TokenCounter = Callable[[list[ChatMessage], str], tuple[int, int]]


class OpenAICompatible(StreamingModel):
    """The chat-completions endpoint at ``base_url``. ``timeout_s`` bounds every wait:
    connecting, the first token and each pause between two chunks."""

    label = "the model endpoint"

    def __init__(
        self, base_url: str, api_key: str | None, timeout_s: float, count_tokens: TokenCounter
    ) -> None:
        from openai import AsyncOpenAI

        self.base_url = base_url
        self.timeout_s = timeout_s
        self.count_tokens = count_tokens
        # No retries by the client: a reply that failed half-way must not be asked for
        # again behind the caller's back (the caller decides, and knows what was shown).
        self.client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "unused",  # servers such as Ollama or vLLM take none
            timeout=timeout_s,
            max_retries=0,
        )

    async def _create(self, body: dict[str, Any]) -> Any:
        return await _post_chat(self.client, body)

    def _pieces(
        self, messages: list[ChatMessage], model: str, max_tokens: int, temperature: float
    ) -> AsyncGenerator[Piece, None]:
        return self._answer(messages, model, max_tokens, temperature, offer_handoff=False)

    def _offering_handoff(
        self, messages: list[ChatMessage], model: str, max_tokens: int, temperature: float
    ) -> AsyncGenerator[Piece, None]:
        return self._answer(messages, model, max_tokens, temperature, offer_handoff=True)

    async def _answer(
        self,
        messages: list[ChatMessage],
        model: str,
        max_tokens: int,
        temperature: float,
        *,
        offer_handoff: bool,
    ) -> AsyncGenerator[Piece, None]:
        from openai import APIStatusError, APITimeoutError, OpenAIError

        failures: tuple[type[Exception], ...] = (OpenAIError, *_transport_errors())

        answered_by = model
        finished = False
        usage: Usage | None = None
        text: list[str] = []
        calls: dict[int, list[str]] = {}  # the hand-off tool's calls: name, then arguments
        body: dict[str, Any] = {
            "model": model,
            "messages": _as_params(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if offer_handoff:
            body |= {"tools": [HANDOFF_FUNCTION], "tool_choice": "auto"}
        try:
            chunks = await self._create(body)
            async with chunks:
                async for chunk in chunks:
                    if chunk.model:
                        answered_by = chunk.model
                    if chunk.usage is not None:
                        usage = Usage(
                            answered_by,
                            chunk.usage.prompt_tokens,
                            chunk.usage.completion_tokens,
                            None,
                        )
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue
                        if choice.delta is not None and choice.delta.content:
                            text.append(choice.delta.content)
                            yield choice.delta.content
                        for call in (choice.delta.tool_calls or []) if choice.delta else []:
                            parts = calls.setdefault(call.index, ["", ""])
                            if call.function is not None:
                                parts[0] += call.function.name or ""
                                parts[1] += call.function.arguments or ""
                        if choice.finish_reason is not None:
                            finished = True
        except APITimeoutError as error:
            raise ModelError(
                f"{self.label} did not answer within {self.timeout_s:g} s", timed_out=True
            ) from error
        except APIStatusError as error:
            raise ModelError(
                f"{self.label} answered {error.status_code}: {_message_of(error)}"
            ) from error
        except failures as error:
            if isinstance(error, _timeout_errors()):
                raise ModelError(
                    f"{self.label} sent nothing for {self.timeout_s:g} s", timed_out=True
                ) from error
            raise ModelError(f"{self.label} failed: {error or type(error).__name__}") from error
        except ValueError as error:  # a chunk that is not JSON, or not a chunk
            raise ModelError(
                f"{self.label} sent something that is not an answer: {error}"
            ) from error
        if not finished:
            return  # ChatStream: ended before completing it
        for name, arguments in calls.values():
            if name == HANDOFF_TOOL:
                yield Handoff(_reason_of(arguments))
                break
        if usage is None:
            prompt_tokens, completion_tokens = self.count_tokens(messages, "".join(text))
            usage = Usage(answered_by, prompt_tokens, completion_tokens, None, counted=True)
        yield usage


async def _post_chat(client: Any, body: dict[str, Any]) -> Any:
    """The streamed answer of ``POST /chat/completions`` with ``body`` as it is: the
    client's own request path (auth, timeout, SSE parsing into ``ChatCompletionChunk``s)
    without ``chat.completions.create``'s transformation of every parameter against its
    types, which the profile of 20 concurrent chats found costing more CPU than all the
    rest of a reply (the body here is already plain JSON)."""
    from openai import AsyncStream
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    return await client.post(
        "/chat/completions",
        body=body,
        cast_to=ChatCompletion,
        options={"security": {"bearer_auth": True}},
        stream=True,
        stream_cls=AsyncStream[ChatCompletionChunk],
    )


HANDOFF_FUNCTION = {
    "type": "function",
    "function": {
        "name": HANDOFF_TOOL,
        "description": (
            "Pass this conversation to a person of the team. Call it when the visitor "
            "asks, in any words, to talk to a person rather than to you, or when you "
            "cannot help them at all."
        ),
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
        },
    },
}


def _reason_of(arguments: str) -> str:
    """The hand-off's reason from its call's JSON arguments (a model's arguments that are
    not JSON still hand off: the call is the decision)."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = {}
    reason = parsed.get("reason") if isinstance(parsed, dict) else None
    return str(reason)[:500] if reason else "the model decided the visitor needs a person"


def _as_params(messages: list[ChatMessage]) -> Any:
    """The messages as the client's parameter type (TypedDicts of the same shape)."""
    return [dict(message) for message in messages]


@cache
def _http_modules() -> tuple[Any, ...]:
    """The HTTP client packages the ``openai`` package may use (httpx, or httpx2 from its
    3.x releases on): a connection cut mid-stream raises their errors unwrapped."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return tuple(found)


def _transport_errors() -> tuple[type[Exception], ...]:
    return tuple(module.HTTPError for module in _http_modules())


def _timeout_errors() -> tuple[type[Exception], ...]:
    return tuple(module.TimeoutException for module in _http_modules())


def _message_of(error: Exception) -> str:
    """The provider's own words, when its error body has them."""
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:500]
    return str(error)[:500]
