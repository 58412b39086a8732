"""The embeddable widget in a real browser: a visitor chats, the team's reply and typing
arrive live through the event stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api_fixtures import AuthHeaders
from tests.browser import launch_browser, needs_chromium
from tests.factories import SeededCompany
from tests.widget.helpers import public_key

pytestmark = needs_chromium


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async for launched in launch_browser():
        yield launched


async def test_visitor_chats_in_the_browser_and_sees_the_reply_live(
    browser: object,
    events_url: str,
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
) -> None:
    from playwright.async_api import Browser, Route, expect

    assert isinstance(browser, Browser)
    # A loaded machine (CI) can take longer than Playwright's 5 s to paint a change; each
    # expectation still returns as soon as it holds.
    expect.set_options(timeout=30_000)
    member = auth(tenant.member)
    key = await public_key(http, member, tenant.rows["agent_configs"])
    page = await browser.new_page(viewport={"width": 375, "height": 700})
    outside: list[str] = []
    page.on(
        "request",
        lambda request: None if request.url.startswith(events_url) else outside.append(request.url),
    )
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(f"{events_url}/widget-demo?key={key}")

    async def start_slowly(route: Route) -> None:
        await asyncio.sleep(1.5)  # as a loaded server would: the visitor types meanwhile
        await route.continue_()

    await page.route(f"{events_url}/v1/public/conversations", start_slowly)
    await page.get_by_role("button", name="Chat with us").click()
    await page.get_by_label("Your message").fill("Do you ship to Oslo?")
    await page.get_by_role("button", name="Send").click()
    mine = page.locator(".msg.user", has_text="Do you ship to Oslo?")
    await expect(mine).to_be_visible()
    # Typing is ephemeral (never replayed): it reaches only a stream that is already open.
    await expect(page.locator("[data-live=true]")).to_be_attached()

    listed = await http.get("/v1/conversations", headers=member, params={"limit": 1})
    conversation = listed.json()["data"][0]["id"]
    service = {**auth(tenant.member.service()), "X-Company-Id": str(tenant.company_id)}
    typing = await http.post(
        f"/v1/conversations/{conversation}/typing", headers=service, json={"state": "start"}
    )
    assert typing.status_code == 204
    await expect(page.get_by_text("Typing…")).to_be_visible()
    reply = await http.post(
        f"/v1/conversations/{conversation}/messages",
        headers=service,
        json={"sender_type": "agent", "content": "Yes, we ship to Oslo in 2 days."},
    )
    assert reply.status_code == 201
    await expect(page.locator(".msg.agent", has_text="we ship to Oslo")).to_be_visible()
    await expect(page.get_by_text("Typing…")).to_be_hidden()
    # Only one copy of the visitor's own message (from the POST and from the stream).
    assert await mine.count() == 1

    await http.post(f"/v1/conversations/{conversation}/end", headers=member)
    await expect(page.get_by_text("This chat has ended.")).to_be_visible()
    await expect(page.get_by_label("Your message")).to_be_disabled()
    assert problems == []
    assert outside == []  # nothing fetched from anywhere but the API


async def test_demo_page_refuses_what_is_not_a_key(http: httpx.AsyncClient) -> None:
    for key in ("", "sk_live_1", 'pub_key_"><script>alert(1)</script>'):
        response = await http.get("/widget-demo", params={"key": key})
        assert response.status_code == 422
        assert "key" in response.text
    script = await http.get("/widget.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text
