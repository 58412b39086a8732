"""The widget asks the visitor for a rating (1 to 5 and a comment) when the chat ends, in a
real browser; the rating is stored with the conversation."""

from __future__ import annotations

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


async def test_visitor_rates_the_chat_when_it_ends(
    browser: object,
    events_url: str,
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    expect.set_options(timeout=30_000)
    member = auth(tenant.member)
    key = await public_key(http, member, tenant.rows["agent_configs"])
    page = await browser.new_page(viewport={"width": 375, "height": 700})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(f"{events_url}/widget-demo?key={key}")
    await page.get_by_role("button", name="Chat with us").click()
    await page.get_by_label("Your message").fill("Thanks for the help")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator(".msg.user", has_text="Thanks for the help")).to_be_visible()
    await expect(page.locator("[data-live=true]")).to_be_attached()
    prompt = page.get_by_role("group", name="How was this chat?")
    await expect(prompt).to_be_hidden()  # not while the chat goes on

    listed = await http.get("/v1/conversations", headers=member, params={"limit": 1})
    conversation = listed.json()["data"][0]["id"]
    ended = await http.post(f"/v1/conversations/{conversation}/end", headers=member)
    assert ended.status_code == 200, ended.text
    await expect(prompt).to_be_visible()

    # From the keyboard: the first star, then the arrows to the fourth.
    await page.get_by_label("1 out of 5").focus()
    for _ in range(3):
        await page.keyboard.press("ArrowRight")
    await expect(page.get_by_label("4 out of 5")).to_be_checked()
    await page.get_by_label("Comment (optional)").fill("Quick and kind.")
    await page.get_by_role("button", name="Send rating").click()
    await expect(page.get_by_text("Thank you for your rating.")).to_be_visible()
    await expect(prompt).to_be_hidden()

    stored = (await http.get(f"/v1/conversations/{conversation}", headers=member)).json()
    assert stored["rating"]["score"] == 4
    assert stored["rating"]["comment"] == "Quick and kind."
    assert problems == []


async def test_a_visitor_who_reloads_before_rating_is_asked_again(
    browser: object,
    events_url: str,
    http: httpx.AsyncClient,
    auth: AuthHeaders,
    tenant: SeededCompany,
) -> None:
    from playwright.async_api import Browser, expect

    assert isinstance(browser, Browser)
    expect.set_options(timeout=30_000)
    member = auth(tenant.member)
    key = await public_key(http, member, tenant.rows["agent_configs"])
    page = await browser.new_page(viewport={"width": 375, "height": 700})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    await page.goto(f"{events_url}/widget-demo?key={key}")
    bubble = page.get_by_role("button", name="Chat with us")
    await bubble.click()
    await page.get_by_label("Your message").fill("One question, then I go")
    await page.get_by_role("button", name="Send").click()
    await expect(page.locator("[data-live=true]")).to_be_attached()
    listed = await http.get("/v1/conversations", headers=member, params={"limit": 1})
    conversation = listed.json()["data"][0]["id"]
    ended = await http.post(f"/v1/conversations/{conversation}/end", headers=member)
    assert ended.status_code == 200, ended.text
    prompt = page.get_by_role("group", name="How was this chat?")
    await expect(prompt).to_be_visible()

    # Reloaded without rating: asked again, beside a new chat that works.
    await page.reload()
    await bubble.click()
    await expect(prompt).to_be_visible()
    await expect(page.get_by_label("Your message")).to_be_enabled()
    await page.get_by_label("2 out of 5").check()
    await page.get_by_role("button", name="Send rating").click()
    await expect(page.get_by_text("Thank you for your rating.")).to_be_visible()
    stored = (await http.get(f"/v1/conversations/{conversation}", headers=member)).json()
    assert stored["rating"]["score"] == 2

    # Rated: not asked again after another reload.
    await page.reload()
    await bubble.click()
    await expect(page.locator("[data-live=true]")).to_be_attached()
    await expect(prompt).to_be_hidden()
    assert problems == []
