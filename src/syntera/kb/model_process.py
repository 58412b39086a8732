"""The local models in a process of their own, shared by a host's API processes: the
embedding model, and the local chat model (SmolLM2, syntera.llm.local).

Inside an API process, encoding a query holds the GIL between torch kernels, so every
forward pass stalls that process's event loop: under the mixed load of bench/mixed.py the
other routes waited on the searches. `syntera serve` and `syntera up` therefore start one
model process before the API processes and hand them its Unix socket
(``SYNTERA_KB_MODEL_SOCKET``); each API process embeds through :class:`RemoteMiniLM`, and
the queries of every API process that arrive together are encoded in one forward pass.
The model is in memory once per host instead of once per API process.

Frames on the socket: a request is a 4-byte big-endian length and a JSON array of
strings (or ``{"texts": [...], "scope": "<company>"}``: short texts are then remembered
for that scope alone, see ``LocalMiniLM.embed``); an answer is one status byte (0:
vectors, 1: error), a 4-byte length, and either the float32 vectors (row-major, one row
of 384 per text) or the error's message in UTF-8.
An empty array is a ping: it is answered at once, without touching the model.

A chat request is a JSON object ``{"chat": {"messages": [...], "max_tokens": n,
"temperature": t}}`` on a connection of its own; it is answered by frames of the same
form: status 2 with a piece of the answer (whole UTF-8 characters), until status 3 with
the usage as JSON (``model``, ``prompt_tokens``, ``completion_tokens``), or status 1 with
an error (4: the local model is not installed). Closing the connection stops the
generation between two tokens. The chat model is loaded at its first request (llama.cpp
maps the file: well under a second) and is in memory once per host.
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
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path

import numpy as np
import orjson

from syntera.config import Settings, get_settings
from syntera.kb.embeddings import MINILM_DIMENSIONS, EmbeddingError, LocalMiniLM, Vectors
from syntera.llm.local import LocalModel, LocalModelMissing, LocalOptions
from syntera.llm.models import ChatMessage, ModelError, Piece, StreamingModel, Usage

log = logging.getLogger(__name__)

LENGTH = struct.Struct("!I")
ANSWER = struct.Struct("!BI")
VECTORS, ERROR, DELTA, DONE, MISSING = 0, 1, 2, 3, 4
MAX_REQUEST_BYTES = 64 * 2**20
REQUEST_FORM = b'a request is a JSON array of strings, or {"texts": [...], "scope": "..."}'
OLD_REQUEST_FORM = b"a request is a JSON array of strings"  # a process before scopes


# The model process.


async def _answer(
    model: LocalMiniLM,
    chat: LocalModel,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
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
            if isinstance(texts, dict) and isinstance(texts.get("chat"), dict):
                await _answer_chat(chat, texts["chat"], writer)
                continue
            scope = None
            if isinstance(texts, dict) and set(texts) == {"texts", "scope"}:
                scope, texts = texts["scope"], texts["texts"]
            if (
                not isinstance(texts, list)
                or not all(isinstance(t, str) for t in texts)
                or not isinstance(scope, str | None)
            ):
                status, body = ERROR, REQUEST_FORM
            elif not texts:
                status, body = VECTORS, b""
            else:
                try:
                    status, body = VECTORS, (await model.embed(texts, scope=scope)).tobytes()
                except Exception as error:  # told to the caller, who answers 503
                    log.exception("encoding failed")
                    status, body = ERROR, f"encoding failed: {error}".encode()
            writer.write(ANSWER.pack(status, len(body)) + body)
            await writer.drain()
    except (ConnectionError, orjson.JSONDecodeError):
        return
    finally:
        writer.close()


async def _answer_chat(
    chat: LocalModel, request: dict[str, object], writer: asyncio.StreamWriter
) -> None:
    """Stream the local model's answer to one chat request (ConnectionError when the
    caller went away: leaving the stream stops the generation)."""
    try:
        messages, max_tokens, temperature = _chat_request(request)
    except ValueError as error:
        body = str(error).encode()
        writer.write(ANSWER.pack(ERROR, len(body)) + body)
        await writer.drain()
        return
    stream = chat.stream(messages, model=chat.name, max_tokens=max_tokens, temperature=temperature)
    async with stream:
        try:
            async for delta in stream:
                body = delta.encode()
                writer.write(ANSWER.pack(DELTA, len(body)) + body)
                await writer.drain()
        except ModelError as error:
            if not isinstance(error, LocalModelMissing):
                log.warning("the local model failed: %s", error.detail)
            body = error.detail.encode()
            status = MISSING if isinstance(error, LocalModelMissing) else ERROR
            writer.write(ANSWER.pack(status, len(body)) + body)
            await writer.drain()
            return
    usage = stream.usage
    assert usage is not None
    body = orjson.dumps(
        {"model": usage.model, "prompt_tokens": usage.prompt_tokens,
         "completion_tokens": usage.completion_tokens}
    )  # fmt: skip
    writer.write(ANSWER.pack(DONE, len(body)) + body)
    await writer.drain()


def _chat_request(request: dict[str, object]) -> tuple[list[ChatMessage], int, float]:
    """The messages, max_tokens and temperature of a chat request; ValueError naming
    what is wrong."""
    messages = request.get("messages")
    max_tokens = request.get("max_tokens")
    temperature = request.get("temperature", 0.7)
    if not isinstance(messages, list) or not all(
        isinstance(m, dict)
        and m.get("role") in ("system", "user", "assistant")
        and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise ValueError("chat.messages is a list of {role, content}")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError("chat.max_tokens is a positive integer")
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise ValueError("chat.temperature is a number from 0 to 2")
    chat_messages: list[ChatMessage] = [
        {"role": m["role"], "content": m["content"]} for m in messages
    ]
    return chat_messages, max_tokens, float(temperature)


async def serve_model(
    socket_path: Path, model: LocalMiniLM, preload: bool, chat: LocalModel | None = None
) -> None:
    """Load the model (if ``preload``), then answer on ``socket_path`` until cancelled or
    until SIGTERM/SIGINT. The socket appears only once the model is loaded."""
    if preload:
        await model.warm()
    chat_model = chat or LocalModel(LocalOptions(), None)
    server = await asyncio.start_unix_server(
        lambda reader, writer: _answer(model, chat_model, reader, writer), path=str(socket_path)
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
    # The callers keep their own timeout (SYNTERA_LLM_TIMEOUT_S): none here.
    chat = LocalModel(
        LocalOptions(settings.llm_local_context_tokens, settings.llm_local_threads), None
    )
    preload = settings.kb_preload_model and settings.kb_embedding_provider == "local"
    asyncio.run(serve_model(args.socket, model, preload, chat))


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

    async def embed(self, texts: list[str], *, scope: str | None = None) -> Vectors:
        try:
            return await asyncio.wait_for(self._embed(texts, scope), self.timeout_s)
        except TimeoutError as error:
            raise EmbeddingError(
                f"the model process did not answer within {self.timeout_s:g} s"
            ) from error

    async def _embed(self, texts: list[str], scope: str | None) -> Vectors:
        request = orjson.dumps(texts if scope is None else {"texts": texts, "scope": scope})
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
            if status == ERROR and body == OLD_REQUEST_FORM and scope is not None:
                # A model process of the version before scopes (an upgrade in place, its
                # API processes restarted first): asked again as it understands, nothing
                # remembered.
                request, scope = orjson.dumps(texts), None
                continue
            if status == ERROR:
                raise EmbeddingError(body.decode(errors="replace"))
            vectors = np.frombuffer(body, dtype=np.float32)
            return vectors.reshape(len(texts), self.dimensions)

    async def _connect(self, deadline: float) -> Connection:
        return await _connect(self.socket_path, deadline)


class RemoteChat(StreamingModel):
    """The local chat model as served by the model process at ``socket_path``: one
    connection per answer, closed when the answer is (so a caller that stops reading
    stops the generation). A connection that breaks mid-answer is a ModelError, never
    retried here: part of the answer may already have been shown."""

    label = "the local model"

    def __init__(self, socket_path: str, timeout_s: float, wait_s: float = 30) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.wait_s = wait_s

    async def _pieces(
        self, messages: list[ChatMessage], model: str, max_tokens: int, temperature: float
    ) -> AsyncGenerator[Piece, None]:
        request = orjson.dumps(
            {"chat": {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}}
        )
        try:
            reader, writer = await _connect(self.socket_path, time.monotonic() + self.wait_s)
        except EmbeddingError as error:
            raise ModelError(str(error), unavailable=True) from error
        try:
            writer.write(LENGTH.pack(len(request)) + request)
            while True:
                status, length = ANSWER.unpack(await reader.readexactly(ANSWER.size))
                body = await reader.readexactly(length)
                if status == DELTA:
                    yield body.decode()
                elif status == DONE:
                    usage = orjson.loads(body)
                    yield Usage(
                        str(usage["model"]),
                        int(usage["prompt_tokens"]),
                        int(usage["completion_tokens"]),
                        None,
                    )
                    return
                else:
                    text = body.decode(errors="replace")
                    raise ModelError(text, unavailable=status == MISSING)
        except (ConnectionError, asyncio.IncompleteReadError) as error:
            raise ModelError(f"the model process went away mid-answer: {error}") from error
        finally:
            writer.close()


async def _connect(socket_path: str, deadline: float) -> Connection:
    """A connection to the model process, waiting until ``deadline`` for it to appear."""
    while True:
        try:
            return await asyncio.open_unix_connection(socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as error:
            if time.monotonic() > deadline:
                raise EmbeddingError(f"no model process answers at {socket_path}") from error
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
    """Whether `syntera serve`/`up` run a shared model process for these settings: a
    local model is in use (embeddings, or chat with no endpoint configured)."""
    uses_local = settings.kb_embedding_provider == "local" or settings.llm_base_url is None
    return uses_local and settings.kb_model_process and settings.kb_model_socket is None


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
