"""The process's Pub/Sub hub stops when asked, however its read ends."""

from __future__ import annotations

import asyncio
from typing import Any

from syntera.embedded import StackUrls
from syntera.events.bus import Hub


async def test_the_hub_stops_even_when_its_cancellation_is_lost(api_urls: StackUrls) -> None:
    """redis-py can take a cancellation that arrives while it waits for a message under
    its own timeout for that timeout, and return None (a process under load, with the
    embedding model loading beside it, then never stopped: its hub was "cancelling"
    forever). Here every read loses the cancellation that way; close() still returns."""
    hub = Hub(api_urls.redis_url, timeout_s=1.0)
    hub.start()
    await asyncio.wait_for(hub._connected.wait(), 10)
    assert hub._pubsub is not None
    reads = hub._pubsub.get_message
    lost = 0
    reading = asyncio.Event()

    async def read_losing_cancellation(**options: Any) -> Any:
        nonlocal lost
        reading.set()
        try:
            return await reads(**options)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()  # as a timeout that fired at the same moment would
            lost += 1
            return None

    hub._pubsub.get_message = read_losing_cancellation  # type: ignore[method-assign]
    await asyncio.wait_for(reading.wait(), 10)  # the hub is inside a read now
    closing = asyncio.ensure_future(hub.close())
    done, _ = await asyncio.wait({closing}, timeout=10)  # not cancelled: that would hang too
    assert done == {closing}, "the hub did not stop"
    assert lost == 1
