"""Carrying events between API processes through Redis.

Each company has one Redis stream (``t:{company}:events``), trimmed to the retention window
(a count and an age), and one Pub/Sub channel. Publishing is one Lua call that appends the
event to the stream and publishes it with its new id, atomically: the order on the channel
is the order of the ids, and nothing is on the channel that is not in the stream.

Each API process has one ``Hub``: a single Pub/Sub connection, subscribed to the channels of
the companies that have a subscriber in this process, handing each event to their buffers.
A subscriber resuming from an id joins the hub first, then reads the stream after its id:
what arrives live while it replays is dropped by id, so the replay and the live events meet
with neither a gap nor a duplicate.

Publishing is best-effort for the writer: the change is already committed, so a Redis that
does not answer loses the live delivery (subscribers are ended by the hub and resume from
the stream, or get ``reset``), never the write.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis

from syntera.db.redis import REDIS_ERRORS, RedisClient, tenant_key
from syntera.errors import RateLimited, Unavailable
from syntera.events.model import Event, StreamPosition, parse_event_id
from syntera.metrics import EVENTS_DROPPED, EVENTS_PUBLISHED, REDIS_FALLBACKS

log = logging.getLogger(__name__)

# KEYS[1] the company's stream. ARGV: max entries, retention ms, the channel, then the
# events (one transaction's, in order). The stream keeps at least the window (count and
# age) and records in its max-deleted-entry-id the newest id it let go (trimming does not
# record it by itself), which is how a resume learns it comes too late. Excess entries
# go a hundred at a time, so trimming costs little per event.
_PUBLISH = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function later(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams > bms or (ams == bms and aseq > bseq)
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local ids = {}
for i = 4, #ARGV do
  local id = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
  if fresh then
    -- A new stream (the first event, or Redis lost the old one): whatever came before
    -- is gone, so a resume from an earlier id must reset rather than replay from here.
    local ms = parse(id)
    redis.call('XSETID', KEYS[1], id, 'ENTRIESADDED', 1,
               'MAXDELETEDID', string.format('%.0f', ms - 1) .. '-18446744073709551615')
    fresh = false
  end
  redis.call('PUBLISH', ARGV[3], id .. ' ' .. ARGV[i])
  ids[#ids + 1] = id
end
local gone = nil
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[1])
if excess >= 100 then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  gone = oldest[#oldest][1]
end
local cutoff = string.format('%.0f', now_ms - tonumber(ARGV[2]))
local expired = redis.call('XRANGE', KEYS[1], '-', '(' .. cutoff .. '-0', 'COUNT', 1000)
if #expired > 0 and (gone == nil or later(expired[#expired][1], gone)) then
  gone = expired[#expired][1]
end
if gone ~= nil then
  local ms, seq = parse(gone)
  redis.call('XTRIM', KEYS[1], 'MINID', string.format('%.0f-%.0f', ms, seq + 1))
  redis.call('XSETID', KEYS[1], ids[#ids], 'MAXDELETEDID', gone)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return ids
"""

# KEYS[1] a company's stream whose events this process could not publish (Redis was
# down). ARGV: retention ms. A marker entry, recorded as the newest id let go: a resume
# from any earlier position resets instead of silently missing the lost events.
_MARK_GAP = """
local id = redis.call('XADD', KEYS[1], '*', 'gap', '1')
redis.call('XSETID', KEYS[1], id, 'MAXDELETEDID', id)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return id
"""

# KEYS: the slot sets a stream counts against (company, then user or session).
# ARGV: now, the slot's expiry, its member, then each key's limit.
_TAKE_SLOT = """
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then return i end
end
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, ARGV[2], ARGV[3])
  redis.call('EXPIRE', key, math.ceil(tonumber(ARGV[2]) - tonumber(ARGV[1])) + 1)
end
return 0
"""

# Of a stream, what a resume needs: the newest id trimmed away and the newest id issued.
_STREAM_BOUNDS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local bounds = {}
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' or info[i] == 'last-generated-id' then
    bounds[info[i]] = info[i + 1]
  end
end
return {bounds['max-deleted-entry-id'], bounds['last-generated-id']}
"""

REPLAY_BATCH = 500


def stream_key(company_id: UUID) -> str:
    return tenant_key(company_id, "events")


def channel(company_id: UUID) -> str:
    return tenant_key(company_id, "events-live")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class Retention:
    count: int
    age_s: float


class Publisher:
    """Appends events to their company's stream and publishes them (after commit)."""

    def __init__(self, redis: RedisClient, retention: Retention, timeout_s: float) -> None:
        self.redis = redis
        self.retention = retention
        self.timeout_s = timeout_s
        self._publish = redis.register_script(_PUBLISH)
        self._mark_gap = redis.register_script(_MARK_GAP)
        self._stream_bounds = redis.register_script(_STREAM_BOUNDS)
        # Companies with events lost while Redis was down, to be marked when it is back.
        self.gaps: set[UUID] = set()

    async def publish_all(self, events: list[Event]) -> list[str]:
        """Store and publish one company's committed events, in order, in one round trip;
        their ids, or none if Redis did not take them (the change stands; subscribers
        resume or reset)."""
        if not events:
            return []
        company_id = events[0].company_id
        if any(event.company_id != company_id for event in events):
            raise ValueError("events of one publish_all belong to one company")
        if company_id in self.gaps:
            await self.mark_gaps()
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                ids = await self._publish(
                    keys=[stream_key(company_id)],
                    args=[
                        self.retention.count,
                        int(self.retention.age_s * 1000),
                        channel(company_id),
                        *(event.body for event in events),
                    ],
                )
        except REDIS_ERRORS as error:
            for event in events:
                self._lost(event, error)
            return []
        for event in events:
            EVENTS_PUBLISHED.labels(event.type).inc()
        return [_text(event_id) for event_id in ids]

    async def publish_ephemeral(self, event: Event) -> None:
        """Publish without storing (``typing``): never replayed, lost if nobody listens."""
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.publish(channel(event.company_id), b"- " + event.body)
        except REDIS_ERRORS as error:
            self._lost(event, error)
            return
        EVENTS_PUBLISHED.labels(event.type).inc()

    async def mark_gaps(self) -> None:
        """Mark the streams of companies whose events were lost (see ``_MARK_GAP``)."""
        for company_id in tuple(self.gaps):
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._mark_gap(
                        keys=[stream_key(company_id)], args=[int(self.retention.age_s * 1000)]
                    )
            except REDIS_ERRORS:
                return  # still down: the next try marks them
            self.gaps.discard(company_id)

    async def keep_marking_gaps(self, every_s: float = 1.0) -> None:
        """Mark lost events' gaps as soon as Redis answers again (a background task)."""
        while True:
            await asyncio.sleep(every_s)
            if self.gaps:
                await self.mark_gaps()

    def _lost(self, event: Event, error: BaseException) -> None:
        self.gaps.add(event.company_id)
        REDIS_FALLBACKS.labels("events").inc()
        EVENTS_DROPPED.labels("publish").inc()
        log.warning("event %s of company %s not published: %r", event.type, event.company_id, error)

    async def replay(self, company_id: UUID, after: StreamPosition) -> list[Event] | None:
        """The company's events after ``after``, oldest first; None when some of them are
        no longer kept (trimmed, expired, or Redis lost the stream): the client must
        refetch through REST."""
        key = stream_key(company_id)
        async with asyncio.timeout(self.timeout_s * 4):
            bounds = await self._stream_bounds(keys=[key])
            if not bounds:
                return None
            deleted, last = (parse_event_id(_text(value)) for value in bounds)
            oldest_kept_ms = time.time() * 1000 - self.retention.age_s * 1000
            if after < deleted or after > last or after[0] < oldest_kept_ms:
                return None
            events: list[Event] = []
            start = f"({after[0]}-{after[1]}"
            while True:
                entries: list[Any] = (
                    await self.redis.xrange(key, min=start, max="+", count=REPLAY_BATCH) or []
                )
                for entry_id, fields in entries:
                    if b"e" in fields:  # not a gap marker
                        events.append(Event.parse(_text(entry_id), fields[b"e"]))
                if len(entries) < REPLAY_BATCH:
                    return events
                start = "(" + _text(entries[-1][0])


@dataclass(eq=False, slots=True)
class Subscriber:
    """One open stream's buffer in this process. The hub offers it every event of its
    company; ``view`` says what this subscriber may receive of each (or None). Kept
    small: a thousand idle streams must cost little."""

    company_id: UUID
    view: Callable[[Event], Event | None]
    capacity: int
    buffer: list[Event] = field(default_factory=list)
    ended: str | None = None
    _waiter: asyncio.Future[None] | None = None

    def offer(self, event: Event) -> None:
        """Never waits: a subscriber whose buffer is full is ended (it gets ``reset``), so
        a slow reader delays nobody else."""
        if self.ended is not None:
            return
        seen = self.view(event)
        if seen is None:
            return
        if len(self.buffer) >= self.capacity:
            EVENTS_DROPPED.labels("slow_subscriber").inc()
            self.end("behind")
            return
        self.buffer.append(seen)
        self._wake()

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
        self._wake()

    def take(self) -> list[Event]:
        """What is buffered, oldest first (the buffer is emptied)."""
        taken, self.buffer = self.buffer, []
        return taken

    async def wait(self, timeout_s: float) -> None:
        """Until something is buffered or the stream ended, at most ``timeout_s``."""
        if self.buffer or self.ended is not None:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await self._waiter
        except TimeoutError:
            pass
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Hub:
    """This process's one Pub/Sub connection and the local subscribers it feeds."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.subscribers: dict[UUID, set[Subscriber]] = {}
        self._confirmed: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._client: aioredis.Redis | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def close(self) -> None:
        # The flag ends the loops too: a cancellation that arrives while redis-py waits
        # for a message under its own timeout can be taken for that timeout and lost
        # (seen as a process that never stopped after the model loaded beside it: the
        # hub was "cancelling" forever). The read then returns within a second.
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._end_all("shutdown")
        await self._disconnect()

    async def join(self, subscriber: Subscriber) -> None:
        """Add a subscriber; once this returns, every event its company publishes reaches
        it. Unavailable (503) when Redis cannot be reached."""
        if self._pubsub is None or not self._connected.is_set():
            raise Unavailable("live events are unavailable: Redis does not answer")
        name = channel(subscriber.company_id)
        self.subscribers.setdefault(subscriber.company_id, set()).add(subscriber)
        if name in self._confirmed:
            return
        waiting = self._pending.get(name)
        try:
            async with asyncio.timeout(self.timeout_s * 4):
                if waiting is None:
                    waiting = asyncio.get_running_loop().create_future()
                    self._pending[name] = waiting
                    await self._pubsub.subscribe(name)
                await asyncio.shield(waiting)
        except (*REDIS_ERRORS, asyncio.CancelledError) as error:
            self.leave(subscriber)
            if isinstance(error, asyncio.CancelledError):
                raise
            raise Unavailable(f"live events are unavailable: {error!r}") from error

    def leave(self, subscriber: Subscriber) -> None:
        group = self.subscribers.get(subscriber.company_id)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self.subscribers[subscriber.company_id]

    async def _run(self) -> None:
        backoff = 0.2
        while not self._closing:
            try:
                await self._connect()
                backoff = 0.2
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: end the streams, reconnect
                if self._connected.is_set():
                    log.warning("live events: Redis Pub/Sub lost: %r", error)
                self._connected.clear()
                self._end_all("unavailable")
                await self._disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _connect(self) -> None:
        # A plain connection even in a cluster: a PUBLISH on any node reaches every node.
        self._client = aioredis.Redis.from_url(
            self.url, socket_connect_timeout=self.timeout_s * 4, health_check_interval=5
        )
        self._pubsub = self._client.pubsub()
        # A first, private channel opens the connection and proves it answers.
        await self._pubsub.subscribe(tenant_key_of_hub())
        self._connected.set()

    async def _read(self) -> None:
        assert self._pubsub is not None
        idle_since = time.monotonic()
        while not self._closing:
            message = await self._pubsub.get_message(timeout=1.0)
            if message is None:
                if time.monotonic() - idle_since > 30:
                    await self._forget_idle_channels()
                    idle_since = time.monotonic()
                continue
            kind = _text(message["type"])
            name = _text(message["channel"])
            if kind == "message":
                self._deliver(message["data"])
            elif kind == "subscribe":
                self._confirmed.add(name)
                waiting = self._pending.pop(name, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)

    def _deliver(self, payload: bytes) -> None:
        head, _, body = payload.partition(b" ")
        event = Event.parse(None if head == b"-" else head.decode(), body)
        for subscriber in tuple(self.subscribers.get(event.company_id, ())):
            subscriber.offer(event)

    async def _forget_idle_channels(self) -> None:
        """Unsubscribe from companies with no subscriber left here."""
        assert self._pubsub is not None
        idle = [
            name
            for name in self._confirmed
            if name != tenant_key_of_hub() and not self._has_subscribers(name)
        ]
        if idle:
            self._confirmed.difference_update(idle)
            await self._pubsub.unsubscribe(*idle)

    def _has_subscribers(self, name: str) -> bool:
        return any(channel(company) == name for company in self.subscribers)

    def _end_all(self, reason: str) -> None:
        for group in self.subscribers.values():
            for subscriber in group:
                subscriber.end(reason)
        self.subscribers.clear()
        self._confirmed.clear()
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(ConnectionError("Redis Pub/Sub lost"))
        self._pending.clear()

    async def _disconnect(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        try:
            if pubsub is not None:
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            if client is not None:
                await client.aclose()
        except REDIS_ERRORS:
            pass


def tenant_key_of_hub() -> str:
    """The channel every hub subscribes to first (nothing is ever published on it)."""
    return "g:events:{hub}:open"


class StreamSlots:
    """How many streams are open, per company and per user or widget session, across
    processes: a sorted set of open streams per scope, each entry expiring unless its
    stream refreshes it (so a crashed process's streams free their slots)."""

    def __init__(self, redis: RedisClient, timeout_s: float, lifetime_s: float) -> None:
        self.redis = redis
        self.timeout_s = timeout_s
        self.lifetime_s = lifetime_s
        self._take = redis.register_script(_TAKE_SLOT)

    async def take(self, scopes: list[tuple[str, int, str]]) -> str:
        """A slot in every (key, limit, what) scope, or 429 naming the first one full."""
        member = secrets.token_hex(8)
        now = time.time()
        keys = [key for key, _, _ in scopes]
        try:
            async with asyncio.timeout(self.timeout_s):
                full = await self._take(
                    keys=keys,
                    args=[now, now + self.lifetime_s, member, *(limit for _, limit, _ in scopes)],
                )
        except REDIS_ERRORS as error:
            raise Unavailable(f"live events are unavailable: {error!r}") from error
        if int(full):
            _, limit, what = scopes[int(full) - 1]
            raise RateLimited(f"at most {limit} open event streams {what}", retry_after_s=5)
        return member

    async def refresh(self, keys: list[str], member: str) -> None:
        expiry = time.time() + self.lifetime_s
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.zadd(key, {member: expiry}, xx=True)
                    await pipe.execute()
        except REDIS_ERRORS:
            pass  # the stream ends anyway when Redis is gone (the hub ends it)

    async def release(self, keys: list[str], member: str) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.zrem(key, member)
                    await pipe.execute()
        except REDIS_ERRORS:
            pass  # the entry expires by itself
