"""An HTTP answer that is a stream of Server-Sent Events.

The body comes from an async iterator of ready-made frames. Two things end it besides
the iterator: the client going away (``http.disconnect``), and a client that reads
nothing for ``send_timeout_s`` (its buffers are full), which is cut off so that it holds
no memory and no slot. Heartbeats are the iterator's own, so a stream costs two tasks:
one sending, one listening for the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

EVENT_STREAM = "text/event-stream"


class EventStreamResponse(StreamingResponse):
    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        *,
        send_timeout_s: float,
        on_close: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(
            frames,
            status_code=200,
            media_type=EVENT_STREAM,
            # no-store: never cached; X-Accel-Buffering: a proxy (nginx) must not hold
            # events back to fill its buffer.
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self.frames = frames
        self.send_timeout_s = send_timeout_s
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            sending = asyncio.ensure_future(self._send_frames(send))
            listening = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait((sending, listening), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sending, listening):
                    task.cancel()
                await asyncio.gather(sending, listening, return_exceptions=True)
        finally:
            with contextlib.suppress(Exception):
                await self.frames.aclose()
            await self.on_close()

    async def _send_frames(self, send: Send) -> None:
        async for frame in self.frames:
            async with asyncio.timeout(self.send_timeout_s):
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
