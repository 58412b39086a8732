"""The worker runtime's poll loop (syntera.workers.poll), without a database."""

from __future__ import annotations

import asyncio

from syntera.workers import poll


async def test_a_woken_background_worker_settles_then_does_what_came_meanwhile_at_once() -> None:
    """With ``settle_s``, a NOTIFY starts the round only ``settle_s`` later: the jobs
    that arrive meanwhile (each with its NOTIFY) are done by that one round."""
    queue: list[int] = []
    rounds: list[list[int]] = []
    stop, wake = asyncio.Event(), asyncio.Event()

    async def run_once() -> bool:
        if not queue:
            return False
        rounds.append(queue[:])
        queue.clear()
        return True

    loop = asyncio.ensure_future(poll("background", run_once, stop, 60, wake, settle_s=0.3))
    await asyncio.sleep(0.05)  # the first, idle round is done: the loop waits
    for job in range(3):
        queue.append(job)
        wake.set()
        await asyncio.sleep(0.05)
    assert rounds == [], "a round started before the settling time"
    await asyncio.sleep(0.4)
    assert rounds == [[0, 1, 2]]
    stop.set()
    wake.set()  # the idle wait ends on a NOTIFY or after poll_s
    await asyncio.wait_for(loop, 1)


async def test_without_settling_a_notify_starts_the_round_at_once() -> None:
    done = asyncio.Event()
    stop, wake = asyncio.Event(), asyncio.Event()
    calls = 0

    async def run_once() -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            done.set()
        return False

    loop = asyncio.ensure_future(poll("foreground", run_once, stop, 60, wake))
    await asyncio.sleep(0.05)
    wake.set()
    await asyncio.wait_for(done.wait(), 0.2)
    stop.set()
    wake.set()  # the idle wait ends on a NOTIFY or after poll_s
    await asyncio.wait_for(loop, 1)
