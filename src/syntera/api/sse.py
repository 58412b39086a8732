"""An HTTP answer that is a stream of Server-Sent Events.

The body comes from an async iterator of ready-made frames. Two things end it besides
the iterator: the client going away (``http.disconnect``), and a client that reads
nothing for ``send_timeout_s`` (its buffers are full), which is cut off so that it holds
no memory and no slot. Heartbeats are the iterator's own, so a stream costs one task
besides its own: the one listening for the disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

EVENT_STREAM = "text/event-stream"


HANDOFF = "syntera.stream_handoff"


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
        handoff = scope.get(HANDOFF)
        if handoff is not None:
            # Streamed by StreamHandoff, outside the routing and middleware frames.
            handoff.append(self)
            return
        await self.stream(receive, send)

    async def stream(self, receive: Receive, send: Send) -> None:
        """Send the frames until they end, the client leaves, or it stops reading."""
        current = asyncio.current_task()
        assert current is not None
        listening = asyncio.ensure_future(_disconnected(receive))

        def client_left(_: object) -> None:
            current.cancel()

        listening.add_done_callback(client_left)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for frame in self.frames:
                async with asyncio.timeout(self.send_timeout_s):
                    await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not listening.done():
                raise  # cancelled from outside (shutdown), not by the client leaving
            current.uncancel()
        except TimeoutError:
            pass  # a client that reads nothing: cut off (the server closes the connection)
        finally:
            listening.remove_done_callback(client_left)
            if not listening.done():
                listening.cancel()
            with contextlib.suppress(Exception):
                await self.frames.aclose()
            await self.on_close()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class StreamHandoff:
    """Streams event-stream answers after the application has returned.

    A stream lives for hours; held inside FastAPI's routing, its dependency stacks and
    every middleware's frame would stay alive with it (about 20 KiB per stream). Here the
    route answers as usual (validation, credentials, limits, its transaction committed),
    hands its response over, and the stack unwinds; then the stream is sent on the
    connection's own send and receive. Sits inside CORS, so a stream keeps its
    cross-origin headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        handed: list[EventStreamResponse] = []
        scope[HANDOFF] = handed
        await self.app(scope, receive, send)
        if handed:
            stream = handed[0]
            for key in [key for key in scope if key.startswith("fastapi") or key == "route"]:
                del scope[key]  # the routing's stacks do not stay alive with the stream
            await stream.stream(receive, send)
