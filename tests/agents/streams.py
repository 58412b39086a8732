"""Reading a model's answer as the agents' tests do."""

from __future__ import annotations

from syntera.llm.models import ChatStream


async def read(stream: ChatStream) -> str:
    """The whole text of ``stream``'s answer (the stream closed after)."""
    async with stream:
        return "".join([delta async for delta in stream])
