"""Intent and sentiment of visitors' messages: the prototype classifier (all-MiniLM-L6-v2
embeddings against labelled examples) against the local chat model asked for JSON
(SmolLM2-135M-Instruct, llama.cpp), on the labelled set of bench/insights_set.py: accuracy
of each and the time per message (the classifier in batches of 32, as the worker runs it;
the model one message at a time, as it must).

    python -m bench.insights [--model-messages 64]

Both run in this process (the platform runs them in the shared model process; the
embeddings' and the model's own time is what differs). A model answer that holds no JSON
object with a known label counts as wrong.

Measured here (2 CPUs shared with other work, 64 labelled messages, two runs): the
prototypes 77% right on intent (49/64) and 80% on sentiment (51/64) at 6.7-14.3 ms a
message; of the 45 messages classified with a confidence of 0.8 or more, 43 right.
SmolLM2-135M asked for JSON: 2% (1/64) on both, 1.7-3.6 s a message (median), 63 of 64
answers holding no usable JSON (it writes Python code or prose about JSON). The
prototypes are the default; a large model behind SYNTERA_LLM_BASE_URL may do better
(``SYNTERA_INSIGHTS_CLASSIFIER=model``), at a model call per message.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.common import machine, report
from bench.insights_set import LABELLED
from syntera.insights.classifier import ModelClassifier, PrototypeClassifier, parse_answer
from syntera.insights.examples import DEFAULT_INTENTS
from syntera.kb.embeddings import LocalMiniLM
from syntera.llm.choice import ChatModels
from syntera.llm.local import LOCAL_MODEL, LocalModel, LocalOptions


class InProcessMiniLM:
    """LocalMiniLM's encoding, awaited in a thread."""

    name = "all-MiniLM-L6-v2"
    dimensions = 384

    def __init__(self) -> None:
        self.model = LocalMiniLM()

    async def embed(self, texts: list[str], *, scope: str | None = None):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(self.model.encode, texts)

    async def warm(self) -> None:
        await self.embed(["warm"])


async def measure(model_messages: int) -> None:
    texts = [text for text, _, _ in LABELLED]
    prototype = PrototypeClassifier(InProcessMiniLM())  # type: ignore[arg-type]
    await prototype.classify(["warm up"], DEFAULT_INTENTS)  # examples embedded once
    started = time.perf_counter()
    batches = []
    for start in range(0, len(texts), 32):
        batches += await prototype.classify(texts[start : start + 32], DEFAULT_INTENTS)
    prototype_ms = (time.perf_counter() - started) * 1000 / len(texts)
    intent_ok = sum(c.intent == i for c, (_, i, _) in zip(batches, LABELLED, strict=True))
    feeling_ok = sum(c.sentiment == s for c, (_, _, s) in zip(batches, LABELLED, strict=True))
    confident = [c for c in batches if c.confidence >= 0.8]
    confident_ok = sum(
        c.intent == i for c, (_, i, _) in zip(batches, LABELLED, strict=True) if c.confidence >= 0.8
    )

    models = ChatModels(LocalModel(LocalOptions(), 60))
    asker = ModelClassifier(models, prototype)
    subset = LABELLED[:model_messages]
    await asker.ask("warm up", DEFAULT_INTENTS, LOCAL_MODEL)
    times, m_intent, m_feeling, unusable = [], 0, 0, 0
    for text, intent, sentiment in subset:
        started = time.perf_counter()
        answer = parse_answer(await asker.ask(text, DEFAULT_INTENTS, LOCAL_MODEL), DEFAULT_INTENTS)
        times.append((time.perf_counter() - started) * 1000)
        if answer is None:
            unusable += 1
            continue
        m_intent += answer.intent == intent
        m_feeling += answer.sentiment == sentiment

    n, m = len(LABELLED), len(subset)
    report(
        "insights_classifiers",
        f"{machine()}; {n} labelled messages (5 intents, 3 sentiments); the model on {m}",
        ["classifier", "intent accuracy", "sentiment accuracy", "ms per message", "notes"],
        [
            [
                "prototypes (all-MiniLM-L6-v2)",
                f"{intent_ok / n:.0%} ({intent_ok}/{n})",
                f"{feeling_ok / n:.0%} ({feeling_ok}/{n})",
                f"{prototype_ms:.1f} (batches of 32)",
                f"confidence >= 0.8: {len(confident)} messages, "
                f"{confident_ok}/{len(confident)} right",
            ],
            [
                f"{LOCAL_MODEL} JSON",
                f"{m_intent / m:.0%} ({m_intent}/{m})",
                f"{m_feeling / m:.0%} ({m_feeling}/{m})",
                f"{statistics.median(times):.0f} (median, one at a time)",
                f"{unusable}/{m} answers without usable JSON",
            ],
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-messages", type=int, default=len(LABELLED))
    args = parser.parse_args()
    asyncio.run(measure(args.model_messages))


if __name__ == "__main__":
    main()
