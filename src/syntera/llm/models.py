"""The one interface every chat model answers through.

A model's ``stream`` gives a :class:`ChatStream`: an async iterator of text deltas that,
once exhausted, holds the :class:`Usage` of the answer (its tokens, the model that really
answered, the time to its first token). Whatever goes wrong on the way — the endpoint
refusing, a connection cut, a silence longer than the timeout, a stream that ends without
saying it is complete — is one :class:`ModelError`, raised by the iteration, so a caller
never mistakes half an answer for a whole one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict

Role = Literal["system", "user", "assistant"]


class ChatMessage(TypedDict):
    """One message of a chat-completions prompt."""

    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    """What an answer cost and how fast it came.

    ``model`` is the model that really answered (as the provider names it);
    ``counted`` says the tokens were counted with a tokenizer here because the provider
    reported none."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_ms: float | None
    counted: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelError(RuntimeError):
    """The model did not give a complete answer; ``timed_out`` when it fell silent for
    longer than the timeout, ``unavailable`` when nothing could be asked at all (the
    local model process is not there)."""

    def __init__(self, detail: str, *, timed_out: bool = False, unavailable: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.timed_out = timed_out
        self.unavailable = unavailable


@dataclass(frozen=True)
class Handoff:
    """The model's structured decision, beside its answer, that the conversation should
    pass to a person (its ``conversation_handoff`` tool called, as Chatwoot Captain's)."""

    reason: str


HANDOFF_TOOL = "conversation_handoff"

# What an adapter's generator yields: text deltas (and a Handoff, if the model decided
# one), then exactly one Usage, last.
Piece = str | Usage | Handoff


class ChatStream(AsyncIterator[str]):
    """The deltas of one answer. Iterate it to the end, then read ``usage``; ``aclose``
    (or ``async with``) stops a generation that is no longer wanted.

    Every adapter's generator goes through the same checks here: each piece must come
    within ``timeout_s`` of the previous one (of the start, for the first), and the
    generator must end with its usage, or the answer is incomplete. (``timeout_s`` None:
    no limit, for the model process, whose callers keep their own.)"""

    def __init__(
        self, pieces: AsyncGenerator[Piece, None], timeout_s: float | None, label: str
    ) -> None:
        self._pieces = pieces
        self._timeout_s = timeout_s
        self._label = label
        self.started = time.perf_counter()
        self._first_delta_at: float | None = None
        self.usage: Usage | None = None
        self.handoff: Handoff | None = None  # the model asked for a person

    @property
    def time_to_first_token_ms(self) -> float | None:
        """From the request to the first non-empty delta."""
        if self._first_delta_at is None:
            return None
        return (self._first_delta_at - self.started) * 1000

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> str:
        while True:
            if self.usage is not None:
                raise StopAsyncIteration
            try:
                async with asyncio.timeout(self._timeout_s):
                    piece = await anext(self._pieces)
            except TimeoutError as error:
                await self.aclose()
                raise ModelError(
                    f"{self._label} sent nothing for {self._timeout_s:g} s", timed_out=True
                ) from error
            except StopAsyncIteration:
                raise ModelError(f"{self._label} ended its answer before completing it") from None
            if isinstance(piece, Handoff):
                self.handoff = piece
                continue
            if isinstance(piece, Usage):
                if piece.time_to_first_token_ms is None:
                    piece = Usage(
                        piece.model,
                        piece.prompt_tokens,
                        piece.completion_tokens,
                        self.time_to_first_token_ms,
                        piece.counted,
                    )
                self.usage = piece
                await self.aclose()
                raise StopAsyncIteration
            if piece:
                if self._first_delta_at is None:
                    self._first_delta_at = time.perf_counter()
                return piece

    async def aclose(self) -> None:
        """Stop the generation (its connection is closed)."""
        await self._pieces.aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class ChatModel(Protocol):
    """A chat model: an endpoint by URL, or the local model."""

    label: str  # how errors name it ("the model endpoint", "the local model")

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        offer_handoff: bool = False,
    ) -> ChatStream:
        """Start answering ``messages`` as ``model``; nothing is sent before the first
        iteration. ``offer_handoff``: let the model decide to pass the conversation to
        a person (``ChatStream.handoff``), where the model can."""
        ...


class StreamingModel:
    """A ``ChatModel`` whose answer is the pieces of ``_pieces``, each awaited within
    ``timeout_s`` (the adapters say only how they get their pieces)."""

    label: str
    timeout_s: float | None

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str,
        max_tokens: int,
        temperature: float,
        offer_handoff: bool = False,
    ) -> ChatStream:
        """Start answering ``messages`` as ``model``; nothing is sent before the first
        iteration. ``offer_handoff``: let the model decide to pass the conversation to
        a person, where the adapter can (``_offering_handoff``)."""
        if offer_handoff:
            pieces = self._offering_handoff(messages, model, max_tokens, temperature)
        else:
            pieces = self._pieces(messages, model, max_tokens, temperature)
        return ChatStream(pieces, self.timeout_s, self.label)

    def _offering_handoff(
        self, messages: list[ChatMessage], model: str, max_tokens: int, temperature: float
    ) -> AsyncGenerator[Piece, None]:
        """The answer with the hand-off offered to the model; by default the plain
        answer (the local model: its small model calls no tools reliably, the phrase
        list decides)."""
        return self._pieces(messages, model, max_tokens, temperature)

    def _pieces(
        self, messages: list[ChatMessage], model: str, max_tokens: int, temperature: float
    ) -> AsyncGenerator[Piece, None]:
        raise NotImplementedError
