"""The inbox in a real browser (Debian's chromium, driven by Playwright): the list says who
and what (names, previews, unread counts), a member works it with the keyboard only
(move, reply, saved reply, note, assign to me, take over, hand back, search, help), and an
agent's answer grows live from ``message.delta`` until the stored reply replaces it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psycopg
import pytest

from syntera.app import create_app
from syntera.config import Settings
from syntera.embedded import StackUrls
from tests.agents.standin import StandIn
from tests.api_fixtures import serving
from tests.browser import launch_browser, needs_chromium
from tests.console.conftest import Account, make_account, sign_in
from tests.console.test_console_browser import open_console
from tests.widget.helpers import open_chat

pytestmark = needs_chromium


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    async for launched in launch_browser():
        yield launched


@pytest.fixture(scope="module")
def standin_url() -> Iterator[tuple[StandIn, str]]:
    standin = StandIn()
    with serving(standin.app) as url:
        yield standin, f"{url}/v1"


@pytest.fixture(scope="module")
def agent_url(
    settings: Settings, api_urls: StackUrls, standin_url: tuple[StandIn, str]
) -> Iterator[str]:
    """The API with its reply workers on, its model the stand-in endpoint."""
    with psycopg.connect(api_urls.database_url) as conn:  # other tests' leftover turns
        conn.execute("DELETE FROM syntera.agent_replies")
    served = settings.model_copy(update={
        "reply_worker_enabled": True, "llm_base_url": standin_url[1], "llm_api_key": "sk-test",
        "rate_limits_enabled": False, "events_heartbeat_s": 1.0, "reply_delta_interval_s": 0.0,
    })  # fmt: skip
    with serving(create_app(served, api_urls)) as url:
        yield url


async def post(http: httpx.AsyncClient, path: str, headers: dict[str, str], body: Any) -> Any:
    response = await http.post(path, headers=headers, json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def conversation_with(
    http: httpx.AsyncClient, visitor: dict[str, str], agent_id: str, contact: str | None,
    said: list[str],
) -> str:  # fmt: skip
    """A conversation (with ``contact``, or anonymous) in which the visitor said ``said``
    (posted by a teammate, so the signed-in member has read none of it)."""
    started = await post(http, "/v1/conversations", visitor,
                         {"agent_id": agent_id, "contact_id": contact})  # fmt: skip
    for text in said:
        await post(http, f"/v1/conversations/{started['id']}/messages", visitor,
                   {"sender_type": "user", "content": text})  # fmt: skip
        await asyncio.sleep(0.01)  # distinct times: the list's order is by last activity
    conversation_id: str = started["id"]
    return conversation_id


async def test_inbox_driven_by_the_keyboard_only(
    browser: Any, console_url: str, http: httpx.AsyncClient, owner_url: str
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=15_000)
    owner = make_account(owner_url, company=f"Keys {uuid.uuid4().hex[:6]}")
    mate = make_account(owner_url, join=owner.company_id)
    headers = await sign_in(http, owner)
    teammate = await sign_in(http, mate)
    quiet = {"name": "Concierge", "system_prompt": "Help.", "enabled": False}
    agent = await post(http, "/v1/agents", headers, quiet)
    ada = await post(http, "/v1/contacts", headers, {"first_name": "Ada", "last_name": "Byron"})
    grace = await post(http, "/v1/contacts", headers,
                       {"first_name": "Grace", "last_name": "Hopper"})  # fmt: skip
    await post(http, "/v1/saved-replies", headers,
               {"shortcut": "thanks", "content": "Thank you for waiting!"})  # fmt: skip
    oldest = await conversation_with(http, teammate, agent["id"], ada["id"], ["My parcel is late"])
    await conversation_with(http, teammate, agent["id"], None, ["Where is the zebra invoice?"])
    newest = await conversation_with(http, teammate, agent["id"], grace["id"],
                                     ["Hello", "Anyone there?"])  # fmt: skip

    console = await open_console(browser, console_url, owner)
    page = console.page
    await expect(page.locator(".live")).to_have_text("live")
    rows = page.locator(".conversation-list > li")
    # Who and what, newest activity first, with the unread counts.
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_contain_text("Grace Hopper")
    await expect(rows.nth(0)).to_contain_text("Anyone there?")
    await expect(rows.nth(0).locator(".unread")).to_have_text("2")
    await expect(rows.nth(1)).to_contain_text("Visitor")
    await expect(rows.nth(1)).to_contain_text("Where is the zebra invoice?")
    await expect(rows.nth(2)).to_contain_text("Ada Byron")
    await expect(rows.nth(2).locator(".preview")).to_contain_text("Ada Byron: My parcel is late")
    await expect(rows.nth(2).locator(".unread")).to_have_text("1")
    await expect(page.locator(".conversation-list")).not_to_contain_text("user")
    await console.shot("inbox-list")

    # j and k move between conversations; each opens, its unread count gone.
    keyboard = page.keyboard
    await keyboard.press("j")
    await expect(page.get_by_role("heading", name="Grace Hopper")).to_be_visible()
    await expect(rows.nth(0).locator(".unread")).to_have_count(0)
    await keyboard.press("j")
    await expect(page.locator(".conversation h2")).to_contain_text("Visitor")
    await keyboard.press("j")
    await expect(page.get_by_role("heading", name="Ada Byron")).to_be_visible()
    await keyboard.press("k")
    await expect(page.locator(".conversation h2")).to_contain_text("Visitor")
    await keyboard.press("j")
    await expect(page.get_by_role("heading", name="Ada Byron")).to_be_visible()
    assert page.url.endswith(f"#/inbox/{oldest}")
    await expect(page.locator(".message.contact .sender")).to_have_text("Ada Byron")

    # r: reply; a saved reply by "/" and its shortcut; Enter sends; Esc back to the list.
    await keyboard.press("r")
    reply = page.get_by_label("Reply as a teammate")
    await expect(reply).to_be_focused()
    await keyboard.type("/tha")
    await expect(page.get_by_role("option", name="/thanks")).to_be_visible()
    await keyboard.press("Enter")
    await expect(reply).to_have_value("Thank you for waiting!")
    await keyboard.press("Enter")
    await expect(
        page.locator(".message.teammate", has_text="Thank you for waiting!")
    ).to_be_visible()
    await expect(reply).to_have_value("")
    await keyboard.press("Escape")
    await expect(page.locator(f'.conversation-list li[data-id="{oldest}"] a')).to_be_focused()

    # a: assigned to me; t: taken over; h: handed back to the agent.
    url = f"/v1/conversations/{oldest}"
    await keyboard.press("a")
    await expect(page.get_by_text("Assigned to you.")).to_be_visible()
    stored = (await http.get(url, headers=headers)).json()
    assert stored["assignee_id"] == str(owner.user_id)
    await expect(page.get_by_label("Assignee")).to_have_value(str(owner.user_id))
    await expect(page.locator(f'.conversation-list li[data-id="{oldest}"]')).to_contain_text(
        "assigned to me"
    )
    await keyboard.press("t")
    await expect(page.locator(".conversation .handled")).to_contain_text("People answer")
    assert (await http.get(url, headers=headers)).json()["handled_by"] == "human"
    await keyboard.press("h")
    await expect(page.locator(".conversation .handled")).to_contain_text("Concierge answers")
    assert (await http.get(url, headers=headers)).json()["handled_by"] == "agent"

    # n: a private note, marked internal.
    await keyboard.press("n")
    await expect(page.get_by_label("Add a private note")).to_be_focused()
    await keyboard.type("Refund approved by Kim")
    await keyboard.press("Tab")
    await keyboard.press("Enter")
    notes = page.get_by_label("Private notes", exact=True)
    await expect(notes).to_contain_text("Refund approved by Kim")
    await expect(page.locator(".notes .internal")).to_have_text("internal")
    listed = (await http.get(f"{url}/notes", headers=headers)).json()
    listed = listed if isinstance(listed, list) else listed["data"]
    assert [note["body"] for note in listed] == ["Refund approved by Kim"]

    # Live: a new message in another conversation moves it up, counted unread.
    await keyboard.press("Escape")
    await post(http, f"/v1/conversations/{newest}/messages", teammate,
               {"sender_type": "user", "content": "Still waiting…"})  # fmt: skip
    await expect(rows.nth(0)).to_contain_text("Still waiting…")
    await expect(rows.nth(0).locator(".unread")).to_have_text("1")

    # ?: the help overlay lists the keys; Esc closes it.
    await page.locator("main").focus()
    await keyboard.press("?")
    help_overlay = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(help_overlay).to_be_visible()
    await expect(help_overlay).to_contain_text("Hand the conversation back to the agent")
    await console.shot("inbox-help")
    await keyboard.press("Escape")
    await expect(help_overlay).to_be_hidden()

    # Presence: with the inbox's stream open, the member is online.
    me = page.get_by_label("Team presence").locator("li", has_text="(you)")
    await expect(me).to_contain_text("online")
    await console.shot("inbox-conversation")
    console.clean()


async def test_search_opens_the_conversation_at_the_message(
    browser: Any, console_url: str, http: httpx.AsyncClient, owner_url: str
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=15_000)
    owner = make_account(owner_url, company=f"Search {uuid.uuid4().hex[:6]}")
    headers = await sign_in(http, owner)
    quiet = {"name": "Concierge", "system_prompt": "Help.", "enabled": False}
    agent = await post(http, "/v1/agents", headers, quiet)
    await conversation_with(http, headers, agent["id"], None, ["Nothing to see here"])
    # The word is said once, then 40 messages more: it is not on the first page.
    chatty = await conversation_with(
        http, headers, agent["id"], None,
        ["Where is the zebra invoice?", *(f"Line {n}" for n in range(40))],
    )  # fmt: skip

    console = await open_console(browser, console_url, owner)
    page = console.page
    await expect(page.locator(".conversation-list > li")).to_have_count(2)
    keyboard = page.keyboard
    await keyboard.press("/")
    await expect(page.get_by_label("Search messages")).to_be_focused()
    await keyboard.type("zebra")
    await keyboard.press("Enter")
    hits = page.locator(".hits-list li")
    await expect(hits).to_have_count(1)
    await expect(hits.first.locator("mark")).to_have_text("zebra")
    await expect(hits.first).to_contain_text("Where is the zebra invoice?")
    await console.shot("inbox-search")
    await keyboard.press("ArrowDown")
    await keyboard.press("Enter")
    found = page.locator(".message.found")
    await expect(found).to_contain_text("Where is the zebra invoice?")
    await expect(found).to_be_focused()
    assert f"#/inbox/{chatty}/" in page.url
    # Esc in the search box brings the list back.
    await keyboard.press("/")
    await keyboard.press("Escape")
    await expect(page.locator(".conversation-list")).to_be_visible()
    console.clean()


async def test_reports_page_draws_the_agents_figures(
    browser: Any, console_url: str, http: httpx.AsyncClient, owner_url: str
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=15_000)
    owner = make_account(owner_url, company=f"Reports {uuid.uuid4().hex[:6]}")
    headers = await sign_in(http, owner)
    # This server runs no reply worker: the teammate's answer below stands for the agent's.
    agent = await post(http, "/v1/agents", headers, {"name": "Concierge", "system_prompt": "Hi."})
    chat = await open_chat(http, headers, agent["id"])
    conversation_id = chat.url.rsplit("/", 1)[1]
    await post(http, f"{chat.url}/messages", chat.session, {"content": "Where is my parcel?"})
    usage = {"model": "gpt-4o-mini", "tokens_used": 120, "response_time_ms": 900}
    answer = {"sender_type": "agent", "content": "On its way.", "ai_metadata": usage}
    await post(http, f"/v1/conversations/{conversation_id}/messages", headers, answer)
    await post(http, f"/v1/conversations/{conversation_id}/end", headers, None)
    await post(http, f"{chat.url}/rating", chat.session, {"score": 5, "comment": "Fast"})

    console = await open_console(browser, console_url, owner)
    page = console.page
    await console.go("reports")
    await expect(page.get_by_role("heading", name="Reports")).to_be_visible()
    chart = page.get_by_role("img", name="Conversations per day")
    await expect(chart).to_be_visible()
    assert await chart.evaluate("node => node.tagName") == "svg"  # drawn here, inline
    await expect(chart.locator("circle")).not_to_have_count(0)
    await expect(page.locator(".figures")).to_contain_text("5 / 5 (1 ratings)")
    table = page.locator("table", has_text="Per day and agent")
    await expect(table).to_contain_text("Concierge")
    await expect(page.get_by_role("heading", name="How each figure is measured")).to_be_visible()
    await console.shot("reports")
    # The rating is shown with the conversation too.
    await console.go(f"inbox/{conversation_id}")
    await expect(page.locator(".conversation .rating")).to_have_text("Rated 5 / 5: “Fast”")
    console.clean()


async def test_agent_answer_grows_live_in_the_inbox(
    browser: Any,
    agent_url: str,
    standin_url: tuple[StandIn, str],
    owner_url: str,
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=20_000)
    standin, _ = standin_url
    # The first piece, then a pause (shorter than the model's timeout), then the rest.
    standin.reset(behaviour="stall", stall_s=2.0,
                  deltas=["Refunds ", "take ", "fourteen days."])  # fmt: skip
    owner: Account = make_account(owner_url, company=f"Deltas {uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(base_url=agent_url, timeout=15) as http:
        headers = await sign_in(http, owner)
        agent = await post(http, "/v1/agents", headers,
                           {"name": "Refundbot", "system_prompt": "Answer kindly."})  # fmt: skip
        chat = await open_chat(http, headers, agent["id"])
        conversation_id = chat.url.rsplit("/", 1)[1]

        console = await open_console(browser, agent_url, owner)
        page = console.page
        await console.go(f"inbox/{conversation_id}")
        await expect(page.get_by_label("Reply as a teammate")).to_be_visible()
        await expect(page.locator(".live")).to_have_text("live")
        await page.evaluate("""() => {
            window.grown = [];
            new MutationObserver(() => {
                for (const node of document.querySelectorAll('.message.growing .content'))
                    window.grown.push(node.textContent);
            }).observe(document.body, {subtree: true, childList: true, characterData: true});
        }""")
        sent = await http.post(f"{chat.url}/messages", headers=chat.session,
                               json={"content": "How long do refunds take?"})  # fmt: skip
        assert sent.status_code == 201, sent.text

        growing = page.locator(".message.growing")
        # The first answer waits for the knowledge base's embedding model to load.
        await expect(growing).to_contain_text("Refunds", timeout=120_000)
        await expect(growing.locator(".meta")).to_contain_text("Refundbot")
        await console.shot("inbox-growing-answer")
        stored = page.locator(".message.agent", has_text="Refunds take fourteen days.")
        await expect(stored).to_have_count(1)
        await expect(growing).to_have_count(0)
        await expect(stored.locator(".sender")).to_have_text("Refundbot")
        grown = await page.evaluate("window.grown")
        assert "Refunds " in grown, grown  # a part was shown before the whole answer
        console.clean()


async def test_saved_replies_are_edited_and_notes_paged_beyond_the_first_fifty(
    browser: Any, console_url: str, http: httpx.AsyncClient, owner_url: str
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=15_000)
    owner = make_account(owner_url, company=f"Edits {uuid.uuid4().hex[:6]}")
    other = make_account(owner_url, company=f"Other {uuid.uuid4().hex[:6]}")
    headers = await sign_in(http, owner)
    thanks = await post(http, "/v1/saved-replies", headers,
                        {"shortcut": "thanks", "content": "Thanks!"})  # fmt: skip
    taken = await post(http, "/v1/saved-replies", headers, {"shortcut": "bye", "content": "Bye."})
    agent = await post(http, "/v1/agents", headers,
                       {"name": "Concierge", "system_prompt": "Hi.", "enabled": False})  # fmt: skip
    started = await post(http, "/v1/conversations", headers, {"agent_id": agent["id"]})
    for n in range(1, 53):
        await post(http, f"/v1/conversations/{started['id']}/notes", headers,
                   {"body": f"note number {n}"})  # fmt: skip

    console = await open_console(browser, console_url, owner)
    page = console.page
    await console.go("replies")
    row = page.locator(f"li[data-id='{thanks['id']}']")
    await row.get_by_role("button", name="Edit /thanks").click()
    await row.get_by_label("Text").fill("Thank you for waiting!")
    await row.get_by_label("Shortcut").fill("bye")  # another reply's: refused, kept open
    await row.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("alert").first).to_be_visible()
    await expect(row.get_by_role("button", name="Save changes")).to_be_enabled()
    await row.get_by_label("Shortcut").fill("wait")
    await row.get_by_role("button", name="Save changes").click()
    await expect(row).to_contain_text("/wait Thank you for waiting!")
    await page.get_by_role("button", name="Delete /bye").click()
    await expect(page.locator("li", has_text="/bye")).to_have_count(0)
    listed = (await http.get("/v1/saved-replies", headers=headers)).json()["data"]
    assert [(r["shortcut"], r["content"]) for r in listed] == [("wait", "Thank you for waiting!")]
    # Another company's member can neither change nor delete the team's replies.
    stranger = await sign_in(http, other)
    [kept] = listed
    url = f"/v1/saved-replies/{kept['id']}"
    changed = await http.patch(url, headers=stranger, json={"content": "x"})
    assert changed.status_code == 404, changed.text
    assert (await http.delete(url, headers=stranger)).status_code == 404
    assert (await http.get(url, headers=headers)).json()["content"] == "Thank you for waiting!"
    assert (await http.get(f"/v1/saved-replies/{taken['id']}", headers=headers)).status_code == 404

    await console.go(f"inbox/{started['id']}")
    notes = page.locator(".notes-list > li")
    await expect(notes).to_have_count(50)
    await page.get_by_role("button", name="More notes").click()
    await expect(notes).to_have_count(52)
    await expect(notes.nth(51)).to_contain_text("note number 52")
    await expect(notes.nth(0)).to_contain_text("note number 1")
    await expect(page.get_by_role("button", name="More notes")).to_be_hidden()
    console.clean()
