"""The local model's structured hand-off decision against the phrase list alone.

An endpoint's model decides hand-offs with the ``conversation_handoff`` tool; the local
model (SmolLM2-135M-Instruct, llama.cpp) keeps to the phrase list. This measures whether
llama.cpp's JSON-schema constrained output (``response_format={"type": "json_object",
"schema": ...}``, a grammar that makes every answer valid JSON of the schema) gets a
usable decision from the local model: on the visitors' messages of bench/insights_set.py
(those labelled ``human`` ask for a person, in various words; the others are ordinary
questions, complaints, purchases and cancellations), the accuracy of the phrases alone,
of the model alone, and of either, and the time the model's decision adds to a turn.

    python -m bench.local_handoff [--threads 1] [--shots]

The rule for adopting it: either must find more requests than the phrases alone and
hand off no ordinary message.

Measured here (2 CPUs shared with other work, load average 11-14; 64 messages, 12 asking
for a person; one llama.cpp thread; every answer valid JSON, as the grammar forces):

| prompt | found by phrases / model / either | ordinary messages handed off (model) | decision |
|---|---|---|---|
| zero-shot | 6 / 7 / 9 of 12 | 30 of 52 | 5.9 s median, 13.7 s p95 |
| 4-shot | 6 / 0 / 6 of 12 | 3 of 52 | 1.9 s median, 8.1 s p95 |
| 4-shot, again at load 7 | 6 / 0 / 6 of 12 | 3 of 52 | 0.67 s median, 7.3 s p95 |

The schema makes the answer well-formed, not right: zero-shot the model says ``true`` to
most messages (30 false hand-offs), with four examples it says ``false`` to all but a few
(none of them a real request), and its decision costs seconds before the answer's first
token. Not adopted: the local model keeps to the phrase list (``AnswerPlan.start`` offers
no hand-off to it); an endpoint's model decides with the ``conversation_handoff`` tool.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from bench.common import machine, report
from bench.insights_set import LABELLED
from syntera.config import Settings
from syntera.conversations.service import asks_for_people
from syntera.llm.local import LocalOptions, load_llama

SCHEMA = {
    "type": "object",
    "properties": {"handoff": {"type": "boolean"}},
    "required": ["handoff"],
}
INSTRUCTION = (
    "You route a customer's chat message. Answer handoff true only if the customer asks "
    "to talk to a human (a person, staff, an agent, a representative) instead of the "
    "assistant; answer handoff false for every other message (questions, complaints, "
    'orders). Answer JSON: {"handoff": true} or {"handoff": false}.'
)
SHOTS = [
    ("Can I talk to someone from your team?", True),
    ("How much is shipping to Spain?", False),
    ("Get me a real human now.", True),
    ("My order arrived broken, I want a refund.", False),
]


def decide(llama: Any, text: str, shots: bool) -> tuple[bool | None, float]:
    """The model's decision on ``text`` (None: no decision) and the seconds it took."""
    messages: list[dict[str, str]] = [{"role": "system", "content": INSTRUCTION}]
    if shots:
        for example, answer in SHOTS:
            messages.append({"role": "user", "content": example})
            messages.append({"role": "assistant", "content": json.dumps({"handoff": answer})})
    messages.append({"role": "user", "content": text})
    started = time.perf_counter()
    result = llama.create_chat_completion(
        messages=messages,
        response_format={"type": "json_object", "schema": SCHEMA},
        max_tokens=16,
        temperature=0.0,
    )
    elapsed = time.perf_counter() - started
    try:
        decision = json.loads(result["choices"][0]["message"]["content"])["handoff"]
    except (ValueError, KeyError, TypeError):
        return None, elapsed
    return bool(decision), elapsed


def score(decisions: list[bool], truth: list[bool]) -> tuple[int, int, int]:
    """Requests found, ordinary messages handed off, right in all."""
    found = sum(d and t for d, t in zip(decisions, truth, strict=True))
    false = sum(d and not t for d, t in zip(decisions, truth, strict=True))
    right = sum(d == t for d, t in zip(decisions, truth, strict=True))
    return found, false, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shots", action="store_true", help="four examples in the prompt")
    args = parser.parse_args()
    llama = load_llama(LocalOptions(context_tokens=2048, threads=args.threads))
    phrases = Settings().handoff_phrase_list
    texts = [text for text, _, _ in LABELLED]
    truth = [intent == "human" for _, intent, _ in LABELLED]
    by_phrase = [asks_for_people(text, phrases) for text in texts]
    decide(llama, "warm up", args.shots)
    by_model: list[bool] = []
    invalid = 0
    times: list[float] = []
    for text in texts:
        decision, elapsed = decide(llama, text, args.shots)
        invalid += decision is None
        by_model.append(bool(decision))
        times.append(elapsed * 1000)
    either = [p or m for p, m in zip(by_phrase, by_model, strict=True)]
    asking = sum(truth)
    rows = []
    for name, decisions in (("phrases alone", by_phrase), ("model alone", by_model),
                            ("phrases or model", either)):  # fmt: skip
        found, false, right = score(decisions, truth)
        rows.append([name, f"{found}/{asking}", f"{false}/{len(texts) - asking}",
                     f"{right}/{len(texts)}"])  # fmt: skip
    quantiles = statistics.quantiles(times, n=20)
    report(
        "local_handoff",
        f"{machine()}; SmolLM2-135M-Instruct Q4_1, llama.cpp, {args.threads} thread(s), "
        f"JSON schema {{handoff: boolean}}, {'4-shot' if args.shots else 'zero-shot'}; "
        f"{len(texts)} labelled messages; {invalid} model answers not valid JSON; "
        f"model decision {statistics.median(times):.0f} ms median, {quantiles[18]:.0f} ms p95",
        ["decided by", "requests for a person found", "ordinary messages handed off", "right"],
        rows,
    )


if __name__ == "__main__":
    main()
