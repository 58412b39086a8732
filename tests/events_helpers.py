"""Reading Server-Sent Events as a client does: open a stream over TCP, take its events
one at a time (with a deadline), see its comments and its end."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Received:
    """One event as the client saw it."""

    event: str
    data: Any
    id: str | None = None


@dataclass
class EventStream:
    response: httpx.Response
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    ended: bool = False

    def __post_init__(self) -> None:
        # One task reads the lines: a read cancelled by a deadline would close httpx's
        # connection, so deadlines apply to the queue instead.
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for line in self.response.aiter_lines():
                await self._queue.put(line)
        except httpx.HTTPError:
            pass
        finally:
            await self._queue.put(None)

    async def next(self, within: float = 5.0) -> Received:
        """The next event (comments and the retry hint are recorded, not returned);
        TimeoutError if none comes in time, EOFError if the stream ends."""
        async with asyncio.timeout(within):
            fields: dict[str, str] = {}
            while True:
                line = await self._queue.get()
                if line is None:
                    self.ended = True
                    await self._queue.put(None)  # every later call sees the end too
                    raise EOFError("the stream ended")
                if line == "":
                    if "event" in fields or "data" in fields:
                        data = fields.get("data")
                        return Received(
                            fields.get("event", "message"),
                            json.loads(data) if data is not None else None,
                            fields.get("id"),
                        )
                    fields = {}
                    continue
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "retry":
                    self.retry = int(value)
                elif name == "data" and "data" in fields:
                    fields["data"] += "\n" + value
                else:
                    fields[name] = value

    async def close(self) -> None:
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def events(self, count: int, within: float = 5.0) -> list[Received]:
        return [await self.next(within) for _ in range(count)]

    async def nothing_within(self, seconds: float) -> None:
        """Assert that no event arrives within ``seconds`` (comments may)."""
        try:
            event = await self.next(within=seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected no event, got {event}")

    async def until_end(self, within: float = 10.0) -> list[Received]:
        """Every event until the server ends the stream."""
        seen: list[Received] = []
        while True:
            try:
                seen.append(await self.next(within))
            except EOFError:
                return seen

    async def end_reason(self, within: float = 10.0) -> str:
        """Why the server ended the stream, checking the end was the only event it sent."""
        seen = await self.until_end(within)
        assert [event.event for event in seen] == ["end"]
        return str(seen[0].data["reason"])


@contextlib.asynccontextmanager
async def subscribe(
    http: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[EventStream]:
    """An open stream (its answer must be 200 text/event-stream)."""
    async with http.stream("GET", path, headers=headers, params=params) as response:
        if response.status_code != 200:
            await response.aread()
            raise AssertionError(f"stream refused: {response.status_code} {response.text}")
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(response)
        try:
            yield stream
        finally:
            await stream.close()


async def refused(
    http: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    """The answer to a stream that must be refused (read whole: it is not a stream)."""
    async with http.stream("GET", path, headers=headers, params=params) as response:
        await response.aread()
        assert response.status_code != 200, "the stream was not refused"
        return response
