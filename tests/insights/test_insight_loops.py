"""The insights worker's rounds: summaries in a loop of their own (never behind a backlog
of messages to classify), a claim's lease renewed while a slow model works, and a
summary's prompt bounded by its token budget."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
from fastapi import FastAPI

from syntera.app import build_workers
from syntera.embedded import StackUrls
from syntera.insights.classifier import Classification, Classifier
from syntera.llm.local import count_text_tokens
from tests.agents.standin import StandIn
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.insights.conftest import MakeInsightWorker
from tests.insights.test_insights import post, start


class Held:
    """A classifier that answers once ``go`` is set (or after ``delay_s``)."""

    def __init__(self, inner: Classifier, delay_s: float | None = None) -> None:
        self.inner = inner
        self.go = asyncio.Event()
        self.delay_s = delay_s

    async def classify(
        self, texts: list[str], labels: Sequence[str], model: str, *, scope: str | None = None
    ) -> list[Classification]:
        if self.delay_s is not None:
            await asyncio.sleep(self.delay_s)
        else:
            await self.go.wait()
        return await self.inner.classify(texts, labels, model, scope=scope)


async def test_the_workers_run_summaries_in_a_loop_of_their_own(
    app: FastAPI, api_urls: StackUrls
) -> None:
    state = app.state
    settings = state.settings.model_copy(update={
        "insights_worker_enabled": True, "reply_worker_enabled": False,
        "workflow_worker_enabled": False, "purge_worker_enabled": False,
        "mail_worker_enabled": False, "size_sample_s": 0,
    })  # fmt: skip
    workers = build_workers(
        settings, api_urls, state.stores.postgres, state.kb, state.stored_elsewhere,
        jwt_secret="unused", documents=0, conversations=state.conversations, models=state.models,
    )  # fmt: skip
    loops = {worker.name: worker.run_once for worker in workers}
    assert getattr(loops["insights"], "__name__", "") == "run_classifying"
    assert getattr(loops["insight summaries"], "__name__", "") == "run_summarizing"


async def test_a_summary_is_written_while_classification_is_busy(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    make_insight_worker: MakeInsightWorker, standin: StandIn,
) -> None:  # fmt: skip
    headers = auth((await make_tenant()).member)
    url = await start(http, headers)
    await post(http, headers, url, "Do you ship to Norway?")
    assert (await http.post(f"{url}/end", headers=headers)).status_code == 200
    standin.reset(deltas=["Shipping to Norway."])
    worker = make_insight_worker(summary_every_messages=0)
    held = Held(worker.classifier)
    worker.classifier = held
    classifying = asyncio.ensure_future(worker.run_classifying())
    try:
        assert await asyncio.wait_for(worker.run_summarizing(), 30)
        assert (await http.get(url, headers=headers)).json()["summary"] == "Shipping to Norway."
        assert not classifying.done()
    finally:
        held.go.set()
        assert await classifying


async def test_a_slow_classification_keeps_its_lease(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    make_insight_worker: MakeInsightWorker,
) -> None:  # fmt: skip
    headers = auth((await make_tenant()).member)
    url = await start(http, headers)
    await post(http, headers, url, "Is the battery replaceable?")
    worker = make_insight_worker(insights_lease_s=1.5)
    worker.classifier = Held(worker.classifier, delay_s=4)
    other = make_insight_worker(insights_lease_s=1.5)
    classifying = asyncio.ensure_future(worker.run_classifying())
    try:
        await asyncio.sleep(2.5)  # past the lease's first length
        assert await other.claim("classify", 32) == [], "not taken over while it works"
    finally:
        assert await classifying


async def test_a_summary_prompt_stays_within_its_token_budget(
    http: httpx.AsyncClient, auth: AuthHeaders, make_tenant: MakeTenant,
    make_insight_worker: MakeInsightWorker, standin: StandIn,
) -> None:  # fmt: skip
    headers = auth((await make_tenant()).member)
    url = await start(http, headers)
    await post(http, headers, url, "An older question about delivery.")
    await post(http, headers, url, "refund " * 1500)  # far over the budget on its own
    assert (await http.post(f"{url}/end", headers=headers)).status_code == 200
    standin.reset(deltas=["A refund."])
    worker = make_insight_worker(summary_every_messages=0, summary_prompt_tokens=300)
    assert await worker.run_classifying()
    assert await worker.run_summarizing()
    [request] = standin.requests
    prompt = sum(count_text_tokens(m["content"]) for m in request["messages"])
    assert prompt <= 300
    assert "Customer: refund refund" in request["messages"][1]["content"]
    assert "delivery" not in request["messages"][1]["content"]
