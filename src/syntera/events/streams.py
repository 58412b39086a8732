"""One open event stream: what it may receive, where it resumes, when it must end.

``open_stream`` does everything that can refuse a stream before its answer starts (a slot
under the limits: 429; the hub and the replay: 503), so a refused stream gets a status
code, not a stream that ends at once. ``OpenStream.frames`` is then the body: the retry
hint, the replayed events (or ``reset``), and the live events, with a heartbeat comment
and a periodic check that the caller may still read what it receives.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from uuid import UUID

import psycopg
from psycopg_pool import PoolTimeout

from syntera.config import Settings
from syntera.db.redis import REDIS_ERRORS, RedisClient, tenant_key
from syntera.errors import Unavailable
from syntera.events.bus import Hub, Publisher, Retention, StreamSlots, Subscriber
from syntera.events.model import Event, StreamPosition, control_frame
from syntera.metrics import EVENT_STREAMS

log = logging.getLogger(__name__)

# Answers None while the caller may go on reading, else why the stream ends.
Recheck = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class StreamSettings:
    heartbeat_s: float
    recheck_s: float
    buffer: int
    retry_ms: int


class CheckMemo:
    """Recent answers of access checks, shared by the streams of one process: the ten
    streams a member has open cost one check, not ten, and streams that check at the
    same moment wait for one check in flight rather than each running their own."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._answers: dict[tuple[object, ...], tuple[float, str | None]] = {}
        self._running: dict[tuple[object, ...], asyncio.Task[str | None]] = {}

    async def answer(self, key: tuple[object, ...], check: Recheck) -> str | None:
        kept = self._answers.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.ttl_s:
            return kept[1]
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(check())
            self._running[key] = running
            running.add_done_callback(lambda done: self._keep(key, done))
        return await asyncio.shield(running)

    def _keep(self, key: tuple[object, ...], done: asyncio.Task[str | None]) -> None:
        self._running.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        if len(self._answers) > 10_000:
            self._answers.clear()
        self._answers[key] = (time.monotonic(), done.result())


@dataclass
class Events:
    """What one API process holds for live events."""

    publisher: Publisher
    hub: Hub
    slots: StreamSlots
    settings: StreamSettings
    checks: CheckMemo

    gap_marker: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.gap_marker is not None:
            self.gap_marker.cancel()
        await self.hub.close()


def publisher_for(settings: Settings, redis: RedisClient) -> Publisher:
    """Where this process publishes live events (a worker needs no more of them)."""
    retention = Retention(settings.events_retention_count, settings.events_retention_s)
    return Publisher(redis, retention, settings.redis_timeout_s)


def create_events(settings: Settings, redis: RedisClient, redis_url: str) -> Events:
    """This process's live events, its hub started (it connects in the background)."""
    events = Events(
        publisher=publisher_for(settings, redis),
        hub=Hub(redis_url, settings.redis_timeout_s),
        slots=StreamSlots(redis, settings.redis_timeout_s, settings.events_heartbeat_s * 3),
        settings=StreamSettings(
            heartbeat_s=settings.events_heartbeat_s,
            recheck_s=settings.events_recheck_s,
            buffer=settings.events_buffer,
            retry_ms=settings.events_retry_ms,
        ),
        checks=CheckMemo(settings.events_recheck_s / 2),
    )
    events.hub.start()
    events.gap_marker = asyncio.create_task(events.publisher.keep_marking_gaps())
    return events


@dataclass(frozen=True)
class StreamRequest:
    """Who opens a stream and what they asked for."""

    kind: str  # "member" or "widget": the label of the open-streams gauge
    company_id: UUID
    view: Callable[[Event], Event | None]
    scopes: list[tuple[str, int, str]]  # slot keys with their limits, company first
    recheck: Recheck
    resume_from: StreamPosition | None
    deadline: float | None = None  # epoch seconds: the credential's expiry


def company_scope(company_id: UUID, limit: int) -> tuple[str, int, str]:
    """The slots of the company's team (members and the service key)."""
    return tenant_key(company_id, "streams"), limit, "per company"


def visitor_scope(company_id: UUID, limit: int) -> tuple[str, int, str]:
    """The slots of the company's widget visitors: a set of their own, since the public
    key that opens them is anyone's, so visitors can never leave the team without one."""
    return tenant_key(company_id, "streams-visitors"), limit, "of visitors per company"


@dataclass
class OpenStream:
    events: Events
    request: StreamRequest
    subscriber: Subscriber
    slot: str
    replayed: list[Event] | None
    closed: bool = field(default=False)

    @property
    def _slot_keys(self) -> list[str]:
        return [key for key, _, _ in self.request.scopes]

    async def frames(self) -> AsyncGenerator[bytes, None]:
        """The stream's body."""
        settings = self.events.settings
        try:
            yield f"retry: {settings.retry_ms}\n\n".encode()
            last: StreamPosition | None = self.request.resume_from
            if last is not None:
                if self.replayed is None:
                    # Refetch through REST; the live events go on from here.
                    yield control_frame("reset", {"reason": "position no longer kept"})
                    last = None
                for event in self.replayed or ():
                    assert event.position is not None
                    last = event.position
                    seen = self.subscriber.view(event)
                    if seen is not None:
                        yield seen.frame()
            async for frame in self._live(last):
                yield frame
        finally:
            await self.close()

    async def _live(self, last: StreamPosition | None) -> AsyncIterator[bytes]:
        settings = self.events.settings
        subscriber = self.subscriber
        now = time.monotonic()
        next_heartbeat = now + settings.heartbeat_s
        # Spread: streams opened together must not all check at the same moment.
        next_check = now + settings.recheck_s * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
        while True:
            await subscriber.wait(max(0.0, min(next_heartbeat, next_check) - time.monotonic()))
            for event in subscriber.take():
                if event.position is not None:
                    if last is not None and event.position <= last:
                        continue  # already replayed
                    last = event.position
                yield event.frame()
            if subscriber.ended is not None:
                if subscriber.ended == "behind":
                    yield control_frame("reset", {"reason": "too far behind"})
                return  # Redis lost or shutting down: the client reconnects and resumes
            now = time.monotonic()
            if now >= next_heartbeat:
                yield b": heartbeat\n\n"
                await self.events.slots.refresh(self._slot_keys, self.slot)
                next_heartbeat = now + settings.heartbeat_s
            if now >= next_check:
                reason = await self._ended_by_check()
                if reason is not None:
                    yield control_frame("end", {"reason": reason})
                    return
                next_check = time.monotonic() + settings.recheck_s

    async def _ended_by_check(self) -> str | None:
        deadline = self.request.deadline
        if deadline is not None and time.time() >= deadline:
            return "the access token has expired"
        try:
            return await self.request.recheck()
        except (*REDIS_ERRORS, psycopg.Error, PoolTimeout) as error:
            # A busy or unreachable store: checked again at the next interval (an expired
            # token still ends the stream, by its deadline above).
            log.warning("event stream access not checked: %r", error)
            return None

    async def close(self) -> None:
        """Leave the hub and free the slot (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.events.hub.leave(self.subscriber)
        EVENT_STREAMS.labels(self.request.kind).dec()
        await self.events.slots.release(self._slot_keys, self.slot)


async def open_stream(events: Events, request: StreamRequest) -> OpenStream:
    """A stream ready to send: under the limits, joined to the hub, its replay read."""
    slot = await events.slots.take(request.scopes)
    subscriber = Subscriber(request.company_id, request.view, events.settings.buffer)
    keys = [key for key, _, _ in request.scopes]
    try:
        await events.hub.join(subscriber)
        replayed = None
        if request.resume_from is not None:
            try:
                if events.publisher.gaps:  # lost events of this process: marked first
                    await events.publisher.mark_gaps()
                replayed = await events.publisher.replay(request.company_id, request.resume_from)
            except REDIS_ERRORS as error:
                raise Unavailable(f"live events are unavailable: {error!r}") from error
    except BaseException:
        events.hub.leave(subscriber)
        await events.slots.release(keys, slot)
        raise
    EVENT_STREAMS.labels(request.kind).inc()
    return OpenStream(events, request, subscriber, slot, replayed)
