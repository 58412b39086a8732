"""A stand-in for a paid OpenAI-compatible chat-completions endpoint: a real HTTP server
(Starlette on uvicorn, in a thread) that streams server-sent chunks as OpenAI does, with
the usage in the last chunk, and that can also refuse, stall, or cut its stream. The real
``openai`` client talks to it; it records every request it receives."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Behaviour = Literal["answer", "refuse", "stall", "cut", "unfinished", "garbage"]


@dataclass
class Script:
    """What the stand-in does with the next requests."""

    behaviour: Behaviour = "answer"
    deltas: list[str] = field(default_factory=lambda: ["Refunds ", "take ", "14 days [1]."])
    model: str = "gpt-4o-mini-2024-07-18"
    prompt_tokens: int = 321
    completion_tokens: int = 7
    with_usage: bool = True
    first_token_delay_s: float = 0.0
    delta_gap_s: float = 0.0  # between two deltas
    stall_s: float = 30.0
    status: int = 500
    on_request: Callable[[], None] | None = None  # called as each request arrives
    # Call this tool (if the request offers it), its JSON arguments streamed in pieces.
    tool_call: tuple[str, list[str]] | None = None


class StandIn:
    """The app, the requests it received and the script it follows."""

    def __init__(self) -> None:
        self.script = Script()
        self.requests: list[dict[str, Any]] = []
        self.keep_requests = True
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    def reset(self, **script: Any) -> Script:
        with self.lock:
            self.script = Script(**script)
            self.requests.clear()
        return self.script

    def prompt_text(self) -> str:
        """Every message of every request received, as one text."""
        return "\n".join(
            message["content"] for request in self.requests for message in request["messages"]
        )

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            if self.keep_requests:
                self.requests.append(body)
            script = self.script
        if script.on_request is not None:
            script.on_request()
        if script.behaviour == "refuse":
            error = {"error": {"message": "the stand-in refuses", "type": "server_error"}}
            return JSONResponse(error, status_code=script.status)
        return StreamingResponse(self._chunks(body, script), media_type="text/event-stream")

    async def _chunks(self, body: dict[str, Any], script: Script) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": script.model}  # fmt: skip

        def event(payload: dict[str, Any]) -> bytes:
            return f"data: {json.dumps(payload)}\n\n".encode()

        def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"index": 0, "delta": delta, "finish_reason": finish}

        await asyncio.sleep(script.first_token_delay_s)
        if script.behaviour == "garbage":
            yield b"data: {this is not json\n\n"
            return
        yield event({**base, "choices": [choice({"role": "assistant", "content": ""})]})
        for number, delta in enumerate(script.deltas):
            if number and script.delta_gap_s:
                await asyncio.sleep(script.delta_gap_s)
            yield event({**base, "choices": [choice({"content": delta})]})
            if number == 0 and script.behaviour == "stall":
                await asyncio.sleep(script.stall_s)
            if number == 0 and script.behaviour == "cut":
                raise ConnectionAbortedError("the stand-in cuts its stream")  # uvicorn drops it
        if script.behaviour == "unfinished":
            yield b"data: [DONE]\n\n"  # ends without any choice having finished
            return
        offered = {tool["function"]["name"] for tool in body.get("tools") or []}
        finish = "stop"
        if script.tool_call is not None and script.tool_call[0] in offered:
            name, arguments = script.tool_call
            first = {"index": 0, "id": "call_standin", "type": "function",
                     "function": {"name": name, "arguments": ""}}  # fmt: skip
            yield event({**base, "choices": [choice({"tool_calls": [first]})]})
            for piece in arguments:
                call = {"index": 0, "function": {"arguments": piece}}
                yield event({**base, "choices": [choice({"tool_calls": [call]})]})
            finish = "tool_calls"
        yield event({**base, "choices": [choice({}, finish)]})
        include = (body.get("stream_options") or {}).get("include_usage")
        if script.with_usage and include:
            usage = {"prompt_tokens": script.prompt_tokens,
                     "completion_tokens": script.completion_tokens,
                     "total_tokens": script.prompt_tokens + script.completion_tokens}  # fmt: skip
            yield event({**base, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"


def main() -> None:
    """Serve the stand-in alone (the agents' benchmark runs it as a process of its own,
    so its clock is not shared with the client measuring the platform)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first-token-delay", type=float, default=0.2)
    parser.add_argument("--delta-gap", type=float, default=0.0)
    args = parser.parse_args()
    standin = StandIn()
    standin.keep_requests = False
    standin.reset(first_token_delay_s=args.first_token_delay, delta_gap_s=args.delta_gap)
    uvicorn.run(standin.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
