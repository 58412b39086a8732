"""The shared model process: queries per second and CPU per query at 1, 4 and 16
concurrent callers, with queries on onnxruntime (the default) or torch, and 1 or 2
threads, beside the anchor of this run (the same model encoding one query at a time in
this process with torch, one thread).

    python -m bench.model_process [--seconds 8]

Each caller is a RemoteMiniLM embedding one question of the test corpus after another;
the CPU is the model process's own (user + system) over the requests it answered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import psutil
from tests.kb.corpus import QUESTIONS

from bench.common import machine, report
from syntera.config import Settings
from syntera.kb.embeddings import LocalMiniLM
from syntera.kb.model_process import ModelProcess, RemoteMiniLM

QUERIES = [question for question, _ in QUESTIONS]


def anchor(seconds: float) -> tuple[float, float]:
    """Queries per second and CPU ms per query of the model in this process."""
    model = LocalMiniLM(threads=1, onnx=False)
    model.encode(QUERIES[:2])
    done, started, cpu = 0, time.monotonic(), time.process_time()
    while time.monotonic() - started < seconds:
        model.encode([QUERIES[done % len(QUERIES)]])
        done += 1
    return done / (time.monotonic() - started), 1000 * (time.process_time() - cpu) / done


async def callers(model: ModelProcess, count: int, seconds: float) -> tuple[float, float]:
    assert model.process is not None
    process = psutil.Process(model.process.pid)
    embedder = RemoteMiniLM(str(model.socket_path))
    await embedder.embed(QUERIES[:count])
    done = 0
    stop = time.monotonic() + seconds

    async def ask(offset: int) -> None:
        nonlocal done
        while time.monotonic() < stop:
            await embedder.embed([QUERIES[(done + offset) % len(QUERIES)]])
            done += 1

    cpu, started = sum(process.cpu_times()[:2]), time.monotonic()
    await asyncio.gather(*(ask(offset) for offset in range(count)))
    used = sum(process.cpu_times()[:2]) - cpu
    return done / (time.monotonic() - started), 1000 * used / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    floor_rate, floor_cpu = anchor(args.seconds)
    rows = [["in-process torch encode, 1 thread (anchor)", "1", f"{floor_rate:,.0f}",
             f"{floor_cpu:.2f}", "1.00x"]]  # fmt: skip
    for runtime, threads in (("onnxruntime", 1), ("torch", 1), ("onnxruntime", 2)):
        os.environ["SYNTERA_KB_EMBEDDING_THREADS"] = str(threads)
        os.environ["SYNTERA_KB_ONNX_QUERIES"] = str(runtime == "onnxruntime").lower()
        model = ModelProcess(Settings())
        try:
            model.start(wait=True)
            for count in (1, 4, 16):
                rate, cpu = asyncio.run(callers(model, count, args.seconds))
                name = f"model process, {runtime}, {threads} thread(s)"
                rows.append([name, str(count), f"{rate:,.0f}", f"{cpu:.2f}",
                             f"{rate / floor_rate:.2f}x"])  # fmt: skip
        finally:
            model.close()
    report(
        "model_process",
        f"{machine()}; all-MiniLM-L6-v2, one question of the test corpus per request, "
        f"{args.seconds:g} s per row",
        ["encoder", "callers", "queries/s", "CPU ms per query", "vs anchor"],
        rows,
    )


if __name__ == "__main__":
    main()
