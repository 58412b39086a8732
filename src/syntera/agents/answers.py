"""An agent's answer, from its prompt to its cost: what the preview route does now and
the reply worker will do for conversations.

The caller reads what the answer needs (the agent, the sources) in a short transaction
of its own, closes it, and only then asks the model: a model never runs inside a request's
or a job's database transaction. ::

    async with a tenant transaction as tx:        # short: read, then close it
        agent = await read_agent(tx, agent_id)
        sources = await find_sources(tx, kb, agent.id, question, vector, ...)
    plan = plan_answer(models, settings, agent, question, history, sources)
    stream = plan.start()                          # nothing is sent before it is read
    async with stream:
        async for delta in stream: ...             # publish each delta as it comes
    reply = plan.reply(stream, text, settings.llm_prices)
    reply.ai_metadata(), reply.citations()         # what the stored message carries

A ModelError from the iteration means no complete answer: store nothing of it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from syntera.agents.prompt import Prompt, Source, build_prompt
from syntera.agents.schemas import Agent
from syntera.config import ModelPrice, Settings
from syntera.llm.choice import ChatModels, ModelChoice
from syntera.llm.local import LOCAL_MODEL, count_text_tokens
from syntera.llm.models import ChatMessage, ChatStream, Handoff, Usage
from syntera.llm.prices import cost_of

CITATION = re.compile(r"\[(\d{1,2})\]")


@dataclass(frozen=True)
class Reply:
    """A whole answer and what it cost."""

    text: str
    usage: Usage
    cost: Decimal | None
    sources: list[Source]
    note: str | None
    response_time_ms: float
    handoff: Handoff | None = None  # the model decided the visitor needs a person

    def citations(self) -> list[dict[str, Any]]:
        """``metadata.citations`` of the stored reply: the sources the answer cites as
        [n]; when it cites none (small models seldom do), every source it was given."""
        cited = {int(number) for number in CITATION.findall(self.text)}
        used = [source for source in self.sources if source.number in cited] or self.sources
        return [source.citation() for source in used]

    def ai_metadata(self) -> dict[str, Any]:
        """The reply's ``ai_metadata`` as a stored message carries it."""
        return {
            "model": self.usage.model,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "tokens_used": self.usage.total_tokens,
            "tokens_counted": self.usage.counted,
            "time_to_first_token_ms": _rounded(self.usage.time_to_first_token_ms),
            "response_time_ms": _rounded(self.response_time_ms),
            "cost": str(self.cost) if self.cost is not None else None,
            "note": self.note,
        }


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)


@dataclass(frozen=True)
class AnswerPlan:
    """What to ask of which model; ``start`` asks it."""

    choice: ModelChoice
    prompt: Prompt
    max_tokens: int
    temperature: float

    def start(self) -> ChatStream:
        """Ask the model (nothing is sent before the stream is first read)."""
        return self.choice.model.stream(
            self.prompt.messages,
            model=self.choice.name,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            # An endpoint's model decides hand-offs with a tool; the local model's
            # answers go by the phrase list (a 135M model calls no tools reliably, nor
            # decides well under a JSON schema: bench/local_handoff.py).
            offer_handoff=self.choice.name != LOCAL_MODEL,
        )

    def reply(self, stream: ChatStream, text: str, prices: dict[str, ModelPrice]) -> Reply:
        """The reply of a stream read to its end, whose deltas made ``text``."""
        assert stream.usage is not None, "the stream was not read to its end"
        elapsed_ms = (time.perf_counter() - stream.started) * 1000
        return Reply(
            text,
            stream.usage,
            cost_of(prices, stream.usage),
            self.prompt.sources,
            self.choice.note,
            elapsed_ms,
            stream.handoff,
        )


def plan_answer(
    models: ChatModels,
    settings: Settings,
    agent: Agent,
    question: str,
    history: Sequence[ChatMessage],
    sources: Sequence[Source],
    summary: str | None = None,
) -> AnswerPlan:
    """The prompt of ``agent``'s answer to ``question`` and the model that will answer
    (``summary``: the conversation's, standing for the turns the budget leaves out)."""
    choice = models.choose(agent.model)
    max_tokens = agent.max_tokens or settings.agent_max_tokens
    prompt_tokens = None
    if choice.name == LOCAL_MODEL:  # a small window: the prompt must leave room to answer
        max_tokens = min(max_tokens, settings.llm_local_context_tokens // 4)
        prompt_tokens = settings.llm_local_context_tokens - max_tokens
    prompt = build_prompt(
        agent.system_prompt,
        question,
        history,
        sources,
        count_tokens=count_text_tokens,
        history_tokens=settings.agent_history_tokens,
        prompt_tokens=prompt_tokens,
        summary=summary,
    )
    return AnswerPlan(choice, prompt, max_tokens, float(agent.temperature))


async def answer(plan: AnswerPlan, prices: dict[str, ModelPrice]) -> Reply:
    """The whole answer of ``plan`` (ModelError if the model gives no complete one)."""
    parts: list[str] = []
    stream = plan.start()
    async with stream:
        async for delta in stream:
            parts.append(delta)
    return plan.reply(stream, "".join(parts), prices)
