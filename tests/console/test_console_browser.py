"""The console in a real browser (Debian's chromium, driven by Playwright): a member works
the inbox live, moves a deal, uploads a document; another company sees none of it; a
plain user sees no team or operator page; the operator sees the pool and a slow
statement. A screenshot of every page goes to test-output/console/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.browser import launch_browser, needs_chromium
from tests.console.conftest import SCREENSHOTS, Account, make_account, sign_in
from tests.console.test_operator_api import syntera_admin
from tests.events_helpers import subscribe
from tests.widget.helpers import public_key, start_chat

pytestmark = needs_chromium

GUIDE = """# Returns

Items can be returned within 30 days of delivery for a full refund.
Refunds go back to the card used, within five working days.

# Shipping

We ship to Norway and Sweden in two days, and to the rest of Europe in four.
"""


UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((c) => c.type !== 'hidden' && !c.hidden && c.offsetParent !== null)
    .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                   && !c.getAttribute('title')
                   && !(c.textContent || '').trim())
    .map((c) => c.outerHTML.slice(0, 80))"""


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async for launched in launch_browser():
        yield launched


@dataclass
class Console:
    """A signed-in console tab, with what it fetched from elsewhere and the errors it hit."""

    page: Any
    base: str
    outside: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def go(self, route: str) -> None:
        await self.page.goto(f"{self.base}/console#/{route}")

    async def shot(self, name: str) -> None:
        """Save a screenshot of the page, after checking that every control on it has a
        name a screen reader can say (a label, an aria-label or its text)."""
        unnamed = await self.page.evaluate(UNNAMED_CONTROLS)
        assert unnamed == [], f"controls without a label on {name}: {unnamed}"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    def clean(self) -> None:
        assert self.outside == [], f"fetched from outside the API: {self.outside}"
        assert self.problems == [], f"errors in the page: {self.problems}"


async def open_console(browser: Any, base: str, account: Account, width: int = 1280) -> Console:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    console = Console(page, base)
    page.on("request", lambda r: None if r.url.startswith(base) else console.outside.append(r.url))
    page.on("pageerror", lambda error: console.problems.append(str(error)))
    await page.goto(f"{base}/console")
    await page.get_by_label("Email").fill(account.email)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Sign out").wait_for()
    return console


async def first_agent(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    agents = (await http.get("/v1/agents", headers=headers)).json()["data"]
    agent_id: str = agents[0]["id"]
    return agent_id


async def test_member_works_the_console_live(
    browser: Any,
    console_url: str,
    http: httpx.AsyncClient,
    demo: Account,
    tmp_path: Path,
    owner_url: str,
) -> None:
    from playwright.async_api import expect

    headers = await sign_in(http, demo)
    agent_id = await first_agent(http, headers)
    console = await open_console(browser, console_url, demo)
    page = console.page
    await expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    await expect(page.locator(".live")).to_have_text("live")

    # A visitor starts a chat in the widget: it appears in the open inbox.
    key = await public_key(http, headers, agent_id)
    chat = await start_chat(http, key)
    conversation_id = chat["conversation"]["id"]
    widget = {"X-Api-Key": key, "X-Widget-Session": chat["session_token"]}
    chat_url = f"/v1/public/conversations/{conversation_id}"
    row = page.locator(f'.conversations li[data-id="{conversation_id}"]')
    await expect(row).to_be_visible()
    await row.get_by_role("link").click()
    await expect(page.get_by_label("Reply as a teammate")).to_be_visible()

    # Their message and their typing appear without a reload.
    posted = await http.post(f"{chat_url}/messages", headers=widget,
                             json={"content": "Do you ship to Oslo?"})  # fmt: skip
    assert posted.status_code == 201, posted.text
    await expect(page.locator(".message.user", has_text="Do you ship to Oslo?")).to_be_visible()
    typing = await http.post(f"{chat_url}/typing", headers=widget, json={"state": "start"})
    assert typing.status_code == 204
    await expect(page.locator(".typing")).to_contain_text("is typing…")

    # A reply typed in the console reaches the widget's event stream.
    async with subscribe(http, f"{chat_url}/events", headers=widget) as stream:
        await page.get_by_label("Reply as a teammate").fill("Yes, in two days.")
        await page.get_by_role("button", name="Send").click()
        async with asyncio.timeout(10):
            while True:
                received = await stream.next(within=10)
                if received.event == "message.created":
                    break
        assert received.data["data"]["content"] == "Yes, in two days."
        assert received.data["data"]["sender_type"] == "agent"
    await expect(page.locator(".message.agent", has_text="Yes, in two days.")).to_have_count(1)
    visitor_message = page.locator(".message.user", has_text="Do you ship to Oslo?")
    await visitor_message.get_by_role("button", name="React 👍").click()
    await expect(visitor_message.get_by_text("👍 1")).to_be_visible()
    await console.shot("inbox")

    # An AI answer with its model and tokens, for the analytics page.
    answered = await http.post(
        f"/v1/conversations/{conversation_id}/messages", headers=headers,
        json={"sender_type": "agent", "content": "Anything else?",
              "ai_metadata": {"model": "gpt-4o-mini", "tokens_used": 321,
                              "response_time_ms": 850}},
    )  # fmt: skip
    assert answered.status_code == 201, answered.text

    # A workflow that tags new contacts, for the workflows page.
    greeting = {
        "name": "Greet new contacts", "trigger_type": "contact_created",
        "nodes": [{"id": "start", "type": "trigger", "config": {}},
                  {"id": "tag", "type": "add_tag", "config": {"tag": "greeted"}}],
        "edges": [{"source": "start", "target": "tag"}],
    }  # fmt: skip
    made = await http.post("/v1/workflows", headers=headers, json=greeting)
    assert made.status_code == 201, made.text
    workflow_id = made.json()["id"]

    # Contacts: one added in the console, search, a contact's timeline across the stores.
    await console.go("contacts")
    await page.get_by_label("Email").fill("linus@example.com")
    await page.get_by_label("First name").fill("Linus")
    await page.get_by_label("Tags (comma-separated)").fill("lead, beta")
    await page.get_by_role("button", name="Add contact").click()
    await expect(page.get_by_text("Added Linus.")).to_be_visible()
    await page.get_by_label("Search").fill("ada")
    await page.get_by_role("link", name="Ada Lovelace").click()
    await expect(page.get_by_role("heading", name="Ada Lovelace")).to_be_visible()
    await expect(page.get_by_label("Timeline").get_by_text("Ada's renewal")).to_be_visible()
    await console.shot("contact-timeline")
    await console.go("contacts")
    await expect(page.get_by_role("link", name="Grace Hopper")).to_be_visible()
    await console.shot("contacts")

    # Deals: a card dragged to another stage is stored there.
    await console.go("deals")
    card = page.locator("li.deal", has_text="Ada's renewal")
    await expect(card).to_be_visible()
    deal_id = await card.get_attribute("data-id")
    await card.drag_to(page.locator('section.stage[data-stage="proposal"]'))
    await expect(page.get_by_text("Moved “Ada's renewal” to proposal.")).to_be_visible()
    stored = (await http.get(f"/v1/deals/{deal_id}", headers=headers)).json()
    assert stored["stage"] == "proposal"
    # Without a mouse: each card's stage is a labelled control.
    grace = page.locator("li.deal", has_text="Grace's renewal")
    grace_id = await grace.get_attribute("data-id")
    await page.get_by_label("Stage of Grace's renewal").select_option("negotiation")
    await expect(page.get_by_text("Moved “Grace's renewal” to negotiation.")).to_be_visible()
    await expect(page.locator('section.stage[data-stage="negotiation"] li.deal')).to_contain_text(
        "Grace's renewal"
    )
    moved = (await http.get(f"/v1/deals/{grace_id}", headers=headers)).json()
    assert moved["stage"] == "negotiation"
    negotiation = page.locator('section.stage[data-stage="negotiation"]')
    await expect(negotiation.get_by_text("No deals.")).to_have_count(0)
    await console.shot("deals")

    # Knowledge base: an upload shows its progress, completes, and can be searched.
    await console.go("knowledge")
    await expect(page.get_by_role("heading", name="Documents")).to_be_visible()
    await page.evaluate("""() => {
        window.seenStates = [];
        new MutationObserver(() => {
            for (const state of document.querySelectorAll('.document .state'))
                window.seenStates.push(state.textContent);
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")
    guide = tmp_path / "returns-guide.md"
    guide.write_text(GUIDE)
    await page.get_by_label("File (text, Markdown, HTML, PDF, DOCX)").set_input_files(guide)
    await page.get_by_role("button", name="Upload").click()
    document = page.locator("li.document", has_text="returns-guide.md")
    await expect(document.locator(".state")).to_have_text("completed", timeout=90_000)
    seen = await page.evaluate("window.seenStates")
    assert {"pending", "processing"} & set(seen), seen  # progress was shown on the way
    await page.get_by_label("Question").fill("How long do refunds take?")
    await page.get_by_role("button", name="Search").click()
    hit = page.get_by_label("Chunks found").locator("li").first
    await expect(hit).to_contain_text("score")
    await expect(hit).to_contain_text("Refunds")
    # A file without text is refused, in words; a failed document says why.
    blank = tmp_path / "blank.md"
    blank.write_text(" \n\n   \n")
    await page.get_by_label("File (text, Markdown, HTML, PDF, DOCX)").set_input_files(blank)
    await page.get_by_role("button", name="Upload").click()
    refusal = page.locator("form", has_text="Upload a document").get_by_role("alert")
    await expect(refusal).to_contain_text("text")
    with psycopg.connect(owner_url) as conn:
        conn.execute(
            "INSERT INTO public.knowledge_base_documents (company_id, name, file_path, status,"
            " metadata) VALUES (%s, 'scan.pdf', 'kb/scan.pdf', 'failed', %s)",
            (demo.company_id, Jsonb({"error": {"message": "the PDF cannot be read: no EOF"}})),
        )
    await page.reload()
    failed = page.locator("li.document", has_text="scan.pdf")
    await expect(failed).to_contain_text("Failed: the PDF cannot be read: no EOF")
    await expect(failed.get_by_role("button", name="Process again")).to_be_visible()
    await console.shot("knowledge")

    # Agents: the widget key, its snippet and a live preview of the widget.
    await console.go(f"agents/{agent_id}")
    await page.get_by_role("button", name="Create a widget key").click()
    snippet = await page.get_by_label("Embed snippet").input_value()
    assert "/widget.js" in snippet
    assert 'data-key="pub_key_' in snippet
    preview = page.frame_locator('iframe[title="Widget preview"]')
    await expect(preview.get_by_role("button", name="Chat with us")).to_be_visible()
    # Try it: the agent answers a test question from the guide uploaded above; with no
    # model endpoint configured the local model answers, and the panel says so.
    await page.get_by_label("Question").fill("How long do refunds take?")
    await page.get_by_role("button", name="Ask").click()
    tried = page.locator(".try-answer")
    await expect(tried).to_contain_text("SmolLM2-135M-Instruct", timeout=60_000)
    await expect(tried).to_contain_text("is not served here")
    await expect(tried.get_by_label("Sources").locator("li").first).to_contain_text(
        "returns-guide.md"
    )
    await console.shot("agents")

    # Agents: created and edited in the console.
    await console.go("agents")
    await page.get_by_label("Name").fill("Sales")
    await page.get_by_label("System prompt").fill("Sell kindly.")
    await page.get_by_role("button", name="Create agent").click()
    await expect(page.get_by_role("heading", name="Edit Sales")).to_be_visible()
    await page.get_by_label("Name").fill("Sales desk")
    await page.get_by_label("Temperature").fill("0.2")
    await page.get_by_role("button", name="Save agent").click()
    await expect(page.get_by_text("Saved.")).to_be_visible()
    sales_id = page.url.rsplit("/", 1)[1]
    sales = (await http.get(f"/v1/agents/{sales_id}", headers=headers)).json()
    assert (sales["name"], sales["temperature"], sales["system_prompt"]) == (
        "Sales desk",
        "0.20",
        "Sell kindly.",
    )

    # Workflows: the contact added above ran one, each step's result shown; disable it.
    await console.go(f"workflows/{workflow_id}")
    execution = page.get_by_label("Executions").locator("li").first
    for _ in range(50):  # the workflow worker runs it within a few polls
        if "success" in (await execution.text_content() or ""):
            break
        await page.wait_for_timeout(200)
        await console.go(f"workflows/{workflow_id}")
    await expect(execution).to_contain_text("success")
    step = execution.locator("tbody tr", has_text="add_tag")
    await expect(step).to_contain_text("greeted")
    workflow = page.get_by_label("Workflows").locator("li", has_text="Greet new contacts")
    await workflow.get_by_role("button", name="Disable").click()
    await expect(page.get_by_text("Greet new contacts is disabled.")).to_be_visible()
    assert not (await http.get(f"/v1/workflows/{workflow_id}", headers=headers)).json()["enabled"]
    await expect(
        page.get_by_role("heading", name="Executions of Greet new contacts")
    ).to_be_visible()
    await console.shot("workflows")

    # Analytics: charts of conversations and tokens per model.
    await console.go("analytics")
    await expect(page.get_by_text("Tokens per model")).to_be_visible()
    await expect(page.get_by_role("img", name="gpt-4o-mini: 321")).to_be_visible()
    await expect(page.locator(".chart canvas")).to_be_visible()  # drawn by uPlot
    await console.shot("analytics")

    # Owners see the team and the settings.
    await console.go("team")
    await page.get_by_label("Email").fill("new.teammate@example.com")
    await page.get_by_role("button", name="Invite").click()
    await expect(
        page.get_by_label("Invitations").get_by_text("new.teammate@example.com")
    ).to_be_visible()
    await console.shot("team")
    await console.go("settings")
    await expect(page.get_by_label("Company name")).to_have_value("Demo Company")
    await console.shot("settings")

    # Errors are words: an unknown conversation.
    await console.go("inbox/000000000000000000000000")
    await expect(page.get_by_role("alert")).to_contain_text("not found")

    # /docs renders from the package.
    await page.goto(f"{console_url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Syntera")
    await console.shot("docs")

    # Readable at 375 px: nothing wider than the screen.
    await page.set_viewport_size({"width": 375, "height": 800})
    await console.go(f"inbox/{conversation_id}")
    await expect(page.get_by_label("Reply as a teammate")).to_be_visible()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width
    await console.shot("inbox-375px")
    for route in ("contacts", "deals", "knowledge", f"agents/{agent_id}", "workflows",
                  "analytics", "reports", "replies", "team", "settings"):  # fmt: skip
        await console.go(route)
        await expect(page.locator("main h1")).to_be_visible()
        await page.wait_for_load_state("networkidle")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (route, width)
    console.clean()


async def test_another_company_sees_nothing_of_the_demo_company(
    browser: Any, console_url: str, http: httpx.AsyncClient, demo: Account, owner_url: str
) -> None:
    from playwright.async_api import expect

    headers = await sign_in(http, demo)
    agent_id = await first_agent(http, headers)
    started = await http.post("/v1/conversations", headers=headers, json={"agent_id": agent_id})
    conversation_id = started.json()["id"]
    other = make_account(owner_url, company="Other Company")
    console = await open_console(browser, console_url, other)
    page = console.page
    await expect(page.get_by_text("No conversation matches.")).to_be_visible()
    await expect(page.locator(".live")).to_have_text("live")
    # Nothing of the demo company arrives live either.
    await http.post("/v1/conversations", headers=headers, json={"agent_id": agent_id})
    private = {"sender_type": "agent", "content": "Private to the demo company"}
    await http.post(f"/v1/conversations/{conversation_id}/messages", headers=headers, json=private)
    await page.wait_for_timeout(1500)
    assert await page.locator(".conversations li[data-id]").count() == 0
    await console.go(f"inbox/{conversation_id}")
    await expect(page.get_by_role("alert")).to_contain_text("not found")
    await expect(page.get_by_text("Private to the demo company")).to_have_count(0)
    await console.go("contacts")
    await expect(page.get_by_text("No contact matches.")).to_be_visible()
    await console.go("deals")
    await expect(page.locator("li.deal")).to_have_count(0)
    await console.go("knowledge")
    await expect(page.get_by_text("No documents yet: upload one.")).to_be_visible()
    await console.go("agents")
    await expect(page.get_by_text("No agents yet.")).to_be_visible()
    await console.shot("other-company")
    console.clean()


async def test_plain_user_sees_no_team_settings_or_operator_page(
    browser: Any, console_url: str, demo: Account, owner_url: str
) -> None:
    from playwright.async_api import expect

    assert demo.company_id is not None
    user = make_account(owner_url, join=demo.company_id)
    console = await open_console(browser, console_url, user)
    page = console.page
    navigation = page.get_by_role("navigation", name="Sections")
    await expect(navigation.get_by_role("link", name="Inbox")).to_be_visible()
    for hidden in ("Team", "Settings", "Operator"):
        await expect(navigation.get_by_role("link", name=hidden)).to_have_count(0)
    for route in ("team", "settings", "operator"):
        await console.go(route)
        await expect(page.get_by_role("heading", name="Not for you")).to_be_visible()
    # Any member names themselves (Supabase Auth's user_metadata.full_name), from the header.
    await page.get_by_role("button", name=user.email).click()
    await page.get_by_label("Your name").fill("Ada Byron")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.get_by_role("button", name="Ada Byron")).to_be_visible()
    await console.shot("plain-user")
    console.clean()


async def test_operator_sees_the_pool_and_a_slow_statement(
    browser: Any, console_url: str, owner_url: str
) -> None:
    from playwright.async_api import expect

    operator = make_account(owner_url)
    assert syntera_admin(owner_url, "grant", operator.email).returncode == 0
    with psycopg.connect(owner_url) as conn:
        conn.execute("SELECT pg_sleep(0.2), count(*) FROM public.deals")
    console = await open_console(browser, console_url, operator)
    page = console.page
    await expect(page.get_by_role("heading", name="Operator")).to_be_visible()
    await expect(page.get_by_text("PostgreSQL pool in use")).to_be_visible()
    slow = page.get_by_label("Slow statements").locator("li", has_text="pg_sleep")
    await expect(slow).to_be_visible()
    await slow.get_by_text("Plan").click()
    await expect(slow.locator("pre")).to_contain_text("deals")
    await expect(page.get_by_role("heading", name="Queues")).to_be_visible()
    index_usage = page.get_by_role("region", name="Index usage")
    await expect(index_usage.locator("tbody tr")).to_have_count(20)  # a page at a time
    await index_usage.get_by_role("button", name="Show 20 more").click()
    await expect(index_usage.locator("tbody tr")).to_have_count(40)
    navigation = page.get_by_role("navigation", name="Sections")
    await expect(navigation.get_by_role("link", name="Inbox")).to_have_count(0)
    await console.shot("operator")
    console.clean()
