"""The shared model process as its tests drive it: started for a module with one setting
in the environment, asked over its socket with a request of raw bytes, or missing from
the app's stores for one block."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI

from syntera.config import Settings
from syntera.kb.model_process import ModelProcess


@contextmanager
def running_model_process(variable: str, value: str) -> Iterator[ModelProcess]:
    """A model process started (and waited for) with ``variable`` set to ``value`` in the
    environment; closed, and the variable unset, at the end."""
    os.environ[variable] = value
    model = ModelProcess(Settings())
    try:
        model.start(wait=True)
        yield model
    finally:
        os.environ.pop(variable, None)
        model.close()


async def raw_answer(model: ModelProcess, payload: bytes) -> tuple[int, str]:
    """Sends ``payload`` as one length-prefixed request; the answer's status byte and text."""
    reader, writer = await asyncio.open_unix_connection(str(model.socket_path))
    writer.write(struct.pack("!I", len(payload)) + payload)
    status, length = struct.unpack("!BI", await reader.readexactly(5))
    text = (await reader.readexactly(length)).decode()
    writer.close()
    return status, text


@contextmanager
def state_replaced(app: FastAPI, name: str, **fields: Any) -> Iterator[None]:
    """``app.state.<name>`` (a dataclass) with ``fields`` replaced while the block runs,
    e.g. its model pointed at a socket no process answers."""
    kept = getattr(app.state, name)
    setattr(app.state, name, dataclasses.replace(kept, **fields))
    try:
        yield
    finally:
        setattr(app.state, name, kept)
