"""The local embedding model in a process of its own, shared by a host's API processes.

Inside an API process, encoding a query holds the GIL between torch kernels, so every
forward pass stalls that process's event loop: under the mixed load of bench/mixed.py the
other routes waited on the searches. `syntera serve` and `syntera up` therefore start one
model process before the API processes and hand them its Unix socket
(``SYNTERA_KB_MODEL_SOCKET``); each API process embeds through :class:`RemoteMiniLM`, and
the queries of every API process that arrive together are encoded in one forward pass.
The model is in memory once per host instead of once per API process.

Frames on the socket: a request is a 4-byte big-endian length and a JSON array of
strings; an answer is one status byte (0: vectors, 1: error), a 4-byte length, and either
the float32 vectors (row-major, one row of 384 per text) or the error's message in UTF-8.
An empty array is a ping: it is answered at once, without touching the model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson

from syntera.config import Settings, get_settings
from syntera.kb.embeddings import MINILM_DIMENSIONS, EmbeddingError, LocalMiniLM, Vectors

log = logging.getLogger(__name__)

LENGTH = struct.Struct("!I")
ANSWER = struct.Struct("!BI")
VECTORS, ERROR = 0, 1
MAX_REQUEST_BYTES = 64 * 2**20


# The model process.


async def _answer(
    model: LocalMiniLM, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer one connection's requests, one after the other, until it closes."""
    try:
        while True:
            try:
                (length,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
            except asyncio.IncompleteReadError:
                return
            if length > MAX_REQUEST_BYTES:
                message = f"a request is at most {MAX_REQUEST_BYTES} bytes".encode()
                writer.write(ANSWER.pack(ERROR, len(message)) + message)
                await writer.drain()
                return
            texts = orjson.loads(await reader.readexactly(length))
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                status, body = ERROR, b"a request is a JSON array of strings"
            elif not texts:
                status, body = VECTORS, b""
            else:
                try:
                    status, body = VECTORS, (await model.embed(texts)).tobytes()
                except Exception as error:  # told to the caller, who answers 503
                    log.exception("encoding failed")
                    status, body = ERROR, f"encoding failed: {error}".encode()
            writer.write(ANSWER.pack(status, len(body)) + body)
            await writer.drain()
    except (ConnectionError, orjson.JSONDecodeError):
        return
    finally:
        writer.close()


async def serve_model(socket_path: Path, model: LocalMiniLM, preload: bool) -> None:
    """Load the model (if ``preload``), then answer on ``socket_path`` until cancelled or
    until SIGTERM/SIGINT. The socket appears only once the model is loaded."""
    if preload:
        await model.warm()
    server = await asyncio.start_unix_server(
        lambda reader, writer: _answer(model, reader, writer), path=str(socket_path)
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def orphaned() -> None:  # the supervisor was killed: nobody would stop us
        while os.getppid() == parent:  # noqa: ASYNC110 (no event tells of it)
            await asyncio.sleep(1)
        stop.set()

    watching = asyncio.create_task(orphaned())
    async with server:
        await stop.wait()
    watching.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the local embedding model.")
    parser.add_argument("--socket", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="model process: %(message)s")
    settings = get_settings()
    # One torch thread unless told otherwise: the queries of a busy host come batched,
    # and a second thread spent more CPU per query than it saved (kb_embedding_threads).
    model = LocalMiniLM(
        settings.kb_embedding_batch,
        settings.kb_embedding_threads or 1,
        settings.kb_onnx_queries,
    )
    asyncio.run(serve_model(args.socket, model, settings.kb_preload_model))


# The API processes' side.

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RemoteMiniLM:
    """all-MiniLM-L6-v2 as served by the model process at ``socket_path``. A request waits
    up to ``wait_s`` for the socket to appear (the model still loading, or the process
    being restarted); a connection that breaks mid-request is retried on a new one
    within the same wait (an embedding can be asked for twice)."""

    name = LocalMiniLM.name
    dimensions = MINILM_DIMENSIONS
    MAX_IDLE = 32

    def __init__(self, socket_path: str, wait_s: float = 30, timeout_s: float = 60) -> None:
        self.socket_path = socket_path
        self.wait_s = wait_s
        self.timeout_s = timeout_s
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Connection]] = (
            weakref.WeakKeyDictionary()
        )

    async def warm(self) -> None:
        """Wait until the model process answers."""
        await self.embed([])

    async def embed(self, texts: list[str]) -> Vectors:
        try:
            return await asyncio.wait_for(self._embed(texts), self.timeout_s)
        except TimeoutError as error:
            raise EmbeddingError(
                f"the model process did not answer within {self.timeout_s:g} s"
            ) from error

    async def _embed(self, texts: list[str]) -> Vectors:
        request = orjson.dumps(texts)
        idle = self._idle.setdefault(asyncio.get_running_loop(), [])
        deadline = time.monotonic() + self.wait_s
        while True:
            reader, writer = idle.pop() if idle else await self._connect(deadline)
            try:
                writer.write(LENGTH.pack(len(request)) + request)
                status, length = ANSWER.unpack(await reader.readexactly(ANSWER.size))
                body = await reader.readexactly(length)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                # The process died (a dying one may still accept): every idle connection
                # is to it; ask again on a new one until the restarted process answers.
                for _, stale in [(reader, writer), *idle]:
                    stale.close()
                idle.clear()
                if time.monotonic() > deadline:
                    raise EmbeddingError(f"the model process went away: {error}") from error
                await asyncio.sleep(0.1)
                continue
            if len(idle) < self.MAX_IDLE:
                idle.append((reader, writer))
            else:
                writer.close()
            if status == ERROR:
                raise EmbeddingError(body.decode(errors="replace"))
            vectors = np.frombuffer(body, dtype=np.float32)
            return vectors.reshape(len(texts), self.dimensions)

    async def _connect(self, deadline: float) -> Connection:
        while True:
            try:
                return await asyncio.open_unix_connection(self.socket_path)
            except (FileNotFoundError, ConnectionRefusedError) as error:
                if time.monotonic() > deadline:
                    raise EmbeddingError(
                        f"no model process answers at {self.socket_path}"
                    ) from error
                await asyncio.sleep(0.1)


# The supervisor, in the process of `syntera serve` or `syntera up`.


class ModelProcess:
    """Runs the model process and starts it again if it dies, until closed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = Path(tempfile.mkdtemp(prefix="syntera-model-"))
        self.socket_path = self.directory / "model.sock"
        self.process: subprocess.Popen[bytes] | None = None
        self.closing = threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)

    def start(self, wait: bool) -> None:
        """Start it; with ``wait``, return once it answers (its model loaded)."""
        self._spawn()
        if wait:
            self.wait_until_answering()
        self.watcher.start()

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syntera.kb.model_process", "--socket", str(self.socket_path)],
            env=os.environ.copy(),
            start_new_session=True,  # a Ctrl-C reaches the supervisor, which stops it
        )

    def wait_until_answering(self, timeout_s: float = 300) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while not self.socket_path.exists():
            if self.process.poll() is not None:
                raise EmbeddingError(f"the model process exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise EmbeddingError(f"the model process did not start in {timeout_s:g} s")
            time.sleep(0.05)
        asyncio.run(RemoteMiniLM(str(self.socket_path), wait_s=timeout_s).warm())

    def _watch(self) -> None:
        while not self.closing.is_set():
            assert self.process is not None
            code = self.process.wait()
            if self.closing.wait(1):  # closing, or a pause before starting it again
                return
            log.warning("the model process exited with %s; starting it again", code)
            self._spawn()

    def close(self) -> None:
        self.closing.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def runs_model_process(settings: Settings) -> bool:
    """Whether `syntera serve`/`up` run a shared model process for these settings."""
    return (
        settings.kb_embedding_provider == "local"
        and settings.kb_model_process
        and settings.kb_model_socket is None
    )


@contextlib.contextmanager
def shared_model(settings: Settings) -> Iterator[None]:
    """Around serving: a model process for the API processes started inside (they find
    it through ``SYNTERA_KB_MODEL_SOCKET``), if these settings call for one."""
    if not runs_model_process(settings):
        yield
        return
    model = ModelProcess(settings)
    try:
        wait = settings.kb_preload_model and settings.kb_model_loading == "before_serving"
        model.start(wait=wait)
        os.environ["SYNTERA_KB_MODEL_SOCKET"] = str(model.socket_path)
        get_settings.cache_clear()
        yield
    finally:
        os.environ.pop("SYNTERA_KB_MODEL_SOCKET", None)
        get_settings.cache_clear()
        model.close()


if __name__ == "__main__":
    main()
