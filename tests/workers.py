"""A ``syntera worker`` process killed in the middle of its work, for the take-over tests."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

import pytest


async def kill_worker_once(
    env: Mapping[str, str], busy: Callable[[], bool], never: str, timeout_s: float, poll_s: float
) -> None:
    """Start ``syntera worker`` under ``env``, SIGKILL it as soon as ``busy()`` holds (polled
    every ``poll_s``) and wait until it is gone; fail with ``never`` if it is not busy
    within ``timeout_s``, and with its stderr if it stops by itself."""
    # Not the other tests' departures, which a killed worker would leave under its lease.
    env = {"SYNTERA_DEPARTURE_WORKER_ENABLED": "false", **env}
    process = subprocess.Popen(  # noqa: ASYNC220 (started once; the loop is idle meanwhile)
        [sys.executable, "-m", "syntera", "worker"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if busy():
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            await asyncio.sleep(poll_s)
        else:
            pytest.fail(never)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
