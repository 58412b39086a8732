"""Running some of the test modules again in a session of their own, under different
environment variables (the API through PgBouncer, on a Redis Cluster)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_session(modules: list[str], **environment: str) -> None:
    """Run pytest on ``modules`` with ``environment`` added; fail with its output."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules],
        cwd=ROOT, env={**os.environ, **environment}, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    # Without the lines of asyncio's writes to streams that clients closed (hundreds on a
    # loaded run), so the failure itself is what the last 6000 characters show.
    output = "\n".join(
        line for line in result.stdout.splitlines() if "socket.send() raised" not in line
    )
    assert result.returncode == 0, output[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
