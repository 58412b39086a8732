"""End to end with the local model: a widget visitor in Debian's chromium asks a question
from a document the company uploaded; SmolLM2 (llama.cpp, in the reply worker's process)
answers, the answer grows in the widget piece by piece, and the stored reply names its
source under it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from syntera.conversations.replies import ReplyWorker
from syntera.llm.choice import ChatModels
from syntera.llm.local import LOCAL_MODEL
from tests.agents.shops import make_agent
from tests.agents.test_local_model import needs_local_model
from tests.api_fixtures import AuthHeaders, MakeTenant
from tests.browser import launch_browser, needs_chromium
from tests.kb.conftest import Process, Upload
from tests.widget.helpers import public_key

pytestmark = [needs_chromium, needs_local_model, pytest.mark.slow]

GUIDE = (
    "# Shipping guide\n\nOrders to Norway are delivered within two working days. "
    "Orders to Sweden are delivered within three working days."
)


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async for launched in launch_browser():
        yield launched


async def answering(worker: ReplyWorker, stop: asyncio.Event) -> None:
    """The reply worker's loop, as a process runs it."""
    while not stop.is_set():
        if not await worker.run_once():
            await asyncio.sleep(0.05)


async def test_a_visitor_sees_the_local_models_answer_grow_with_its_source(
    browser: object, events_url: str, http: httpx.AsyncClient, app: FastAPI,
    auth: AuthHeaders, make_tenant: MakeTenant, upload: Upload, process: Process,
) -> None:  # fmt: skip
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    expect.set_options(timeout=60_000)
    shop = await make_tenant()
    member = auth(shop.member)
    sent = await upload(member, "shipping.md", GUIDE.encode(), "text/markdown")
    assert sent.status_code == 202, sent.text
    [document] = await process(UUID(sent.json()["id"]))
    assert document["status"] == "completed"
    agent = await make_agent(
        http, member, model=LOCAL_MODEL, max_tokens=48, temperature=0,
        system_prompt="You are the shop's assistant. Answer in one sentence from the sources.",
    )  # fmt: skip
    key = await public_key(http, member, agent["id"])
    # The local model: SmolLM2 run by llama.cpp (no endpoint configured).
    models = ChatModels.from_settings(app.state.settings.model_copy(update={"llm_base_url": None}))
    worker = ReplyWorker(
        app.state.stores.postgres, app.state.settings, app.state.conversations,
        app.state.kb, models, cache=app.state.cache, events=app.state.publisher,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.ensure_future(answering(worker, stop))
    try:
        page = await browser.new_page(viewport={"width": 375, "height": 700})
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(f"{events_url}/widget-demo?key={key}")
        await page.get_by_role("button", name="Chat with us").click()
        await expect(page.locator("[data-live=true]")).to_be_attached()
        started = time.monotonic()
        await page.get_by_label("Your message").fill("How long does delivery to Norway take?")
        await page.get_by_role("button", name="Send").click()
        # The answer as the visitor sees it, read every few milliseconds while it grows.
        states: list[str] = []
        sources = page.locator(".msg.agent .sources")
        growing = page.locator(".msg.agent[data-growing=true]")  # inside the shadow root
        while await sources.count() == 0:
            assert time.monotonic() - started < 120, f"no stored answer; saw {states}"
            text = ""
            with contextlib.suppress(Exception):  # it may be stored between the two calls
                if await growing.count():
                    text = await growing.first.text_content(timeout=200) or ""
            if text and (not states or text != states[-1]):
                states.append(text)
            await asyncio.sleep(0.01)
        assert len(states) >= 2, f"the answer did not grow in pieces: {states}"
        assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(states))
        await expect(sources).to_have_text("Sources: shipping.md")
        answer = page.locator(".msg.agent").last
        assert (await answer.text_content() or "").startswith(states[-1].strip()[:10])
        assert problems == []
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await loop
