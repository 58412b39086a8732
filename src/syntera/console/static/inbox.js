// The inbox: who is talking and what they last said, newest activity first, with unread
// counts, who answers (the agent or people) and who is assigned; filters; search over
// every message; one conversation with its private notes, assignment and hand-off; all
// live through the company's event stream (/v1/events) and driven from the keyboard
// (j/k, r, a, h, /, ? — listed on the help overlay).

import { api, ApiError, follow } from "./api.js";
import { field, fill, h, instant, notice, select, when } from "./ui.js";
import { conversationView, contactLabel, mergeEvent, optional, personName, senderLabel } from "./conversation.js";

const VIEWS = [["", "All"], ["mine", "Mine"], ["unassigned", "Unassigned"], ["needs_person", "Needs a person"]];
const STATUSES = [["", "Any status"], ["active", "Active"], ["ended", "Ended"], ["archived", "Archived"]];
const CHANNELS = [["", "Any channel"], ["chat", "Chat"], ["voice", "Voice"], ["email", "Email"]];
const PAGE_SIZE = 25;
const PRESENCE_EVERY_MS = 30_000;

export const SHORTCUTS = [
  ["j", "Next conversation"],
  ["k", "Previous conversation"],
  ["r", "Reply (focus the reply box)"],
  ["a", "Assign the conversation to me"],
  ["h", "Hand the conversation back to the agent"],
  ["t", "Take the conversation over from the agent"],
  ["n", "Write a private note"],
  ["/", "Search messages"],
  ["?", "Show this help"],
  ["Esc", "Leave the reply box or close this help"],
];

const clock = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** A list's time: the hour today, else the day. */
function shortWhen(text) {
  if (!text) return "";
  const at = new Date(text);
  return at.toDateString() === new Date().toDateString() ? clock.format(at) : day.format(at);
}

const activity = (conversation) => conversation.last_activity_at || conversation.updated_at || conversation.started_at;

/** The inbox page; it routes inside itself (``#/inbox/<id>[/<message id>]``). */
export async function render(main, context, [openId, atMessage]) {
  const agentList = await api("GET", "/v1/agents", { query: { limit: 100 } });
  const people = new Map(); // user id → {name, email, online, open_conversations}
  const directory = {
    agentName: new Map(agentList.data.map((agent) => [agent.id, agent.name])),
    people,
    me: context.user.id,
  };
  const conversations = new Map(); // id → conversation, as listed
  let order = []; // ids, newest activity first
  let cursor = null;
  let generation = 0;
  let currentId = openId || null;
  let view = null; // the open conversation's view

  // ---- filters, search and the list ----
  const viewSelect = select(VIEWS, "");
  const status = select(STATUSES, "");
  const channel = select(CHANNELS, "");
  const agent = select([["", "Any agent"], ...agentList.data.map((a) => [a.id, a.name])], "");
  const tag = h("input", { type: "search", maxlength: 50, placeholder: "vip" });
  const search = h("input", { type: "search", maxlength: 500, placeholder: "Search every message (/)", "aria-keyshortcuts": "/" });
  const live = h("span", { class: "live", role: "status" }, "connecting…");
  const items = h("ul", { class: "list conversation-list", "aria-label": "Conversations" });
  const listStatus = notice();
  const more = h("button", { type: "button", class: "more", hidden: true }, "Load more");
  const results = h("section", { class: "search-results", "aria-label": "Search results", hidden: true });
  const presence = h("ul", { class: "presence", "aria-label": "Team presence" });
  const presenceBox = h("details", { class: "presence-box", hidden: true },
    h("summary", {}, "Who is online"), presence);
  const pane = h("section", { class: "conversation", "aria-label": "Conversation", tabindex: "-1" },
    h("p", { class: "empty" }, "Choose a conversation (j and k move between them; ? lists the keys)."));
  const help = helpDialog();

  const filters = () => ({
    view: viewSelect.value, status: status.value, channel: channel.value,
    agent_id: agent.value, tag: tag.value.trim(),
    include_archived: status.value === "archived" ? "true" : null,
  });
  const matches = (conversation) => {
    const wanted = filters();
    const assignee = conversation.assignee_id || null;
    return (!wanted.status || conversation.status === wanted.status)
      && (wanted.status === "archived" || conversation.status !== "archived")
      && (!wanted.channel || conversation.channel === wanted.channel)
      && (!wanted.agent_id || conversation.agent_id === wanted.agent_id)
      && (!wanted.tag || (conversation.tags || []).includes(wanted.tag))
      && (wanted.view !== "mine" || assignee === context.user.id)
      && (wanted.view !== "unassigned" || assignee === null)
      && (wanted.view !== "needs_person" || (conversation.handled_by === "human" && assignee === null));
  };

  function row(conversation) {
    const last = conversation.last_message || null;
    const unread = conversation.id === currentId ? 0 : Number(conversation.unread_count || 0);
    const assignee = conversation.assignee_id ? directory.people.get(conversation.assignee_id) : null;
    const name = contactLabel(conversation);
    const link = h("a", {
      href: `#/inbox/${conversation.id}`,
      class: "row-link",
      "aria-current": conversation.id === currentId ? "true" : null,
      "aria-label": `${name}${unread ? `, ${unread} unread` : ""}${last ? `: ${last.content_preview}` : ""}`,
    },
    h("span", { class: "row-top" },
      h("strong", { class: "contact-name" }, name),
      unread ? h("span", { class: "unread", title: `${unread} unread` }, String(unread)) : null,
      h("time", { class: "row-time", datetime: activity(conversation), title: when(activity(conversation)) }, shortWhen(activity(conversation)))),
    h("span", { class: "preview" },
      last ? [h("span", { class: "preview-sender" }, `${senderLabel(last, conversation, directory)}: `), last.content_preview]
        : h("span", { class: "empty" }, "No message yet")),
    h("span", { class: "row-meta" },
      h("span", { class: `handled ${conversation.handled_by || "agent"}` },
        conversation.handled_by === "human" ? "People answer" : `${directory.agentName.get(conversation.agent_id) || "Agent"} answers`),
      ` · ${conversation.channel} · ${conversation.status}`,
      assignee || conversation.assignee_id ? ` · assigned to ${conversation.assignee_id === context.user.id ? "me" : personName(assignee)}` : "",
      (conversation.tags || []).map((t) => h("span", { class: "tag" }, t))));
    return h("li", { dataset: { id: conversation.id }, class: conversation.id === currentId ? "current" : null }, link);
  }

  function paint() {
    const focused = document.activeElement && document.activeElement.closest
      ? document.activeElement.closest(".conversation-list li") : null;
    const focusedId = focused ? focused.dataset.id : null;
    order.sort((a, b) => instant(activity(conversations.get(b))) - instant(activity(conversations.get(a))));
    items.replaceChildren(...order.map((id) => row(conversations.get(id))));
    if (!order.length) items.append(h("li", { class: "empty" }, "No conversation matches."));
    if (focusedId) {
      const again = items.querySelector(`li[data-id="${CSS.escape(focusedId)}"] a`);
      if (again) again.focus({ preventScroll: true });
    }
  }

  function remember(conversation) {
    if (!conversations.has(conversation.id)) order.push(conversation.id);
    conversations.set(conversation.id, conversation);
  }

  async function load(first) {
    const mine = (generation += first ? 1 : 0);
    more.disabled = true;
    listStatus.clear();
    try {
      const answer = await api("GET", "/v1/conversations", {
        query: { ...filters(), limit: PAGE_SIZE, cursor: first ? null : cursor },
      });
      if (mine !== generation) return;
      if (first) { conversations.clear(); order = []; }
      for (const conversation of answer.data) remember(conversation);
      cursor = answer.next_cursor;
      more.hidden = !cursor;
      paint();
    } catch (error) {
      if (error instanceof ApiError && error.status === 422 && viewSelect.value) {
        // A server without the views: say so rather than show an unfiltered list.
        listStatus.error(`This server cannot filter by “${viewSelect.selectedOptions[0].text}”.`);
        return;
      }
      listStatus.error(error);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => load(false));
  for (const control of [viewSelect, status, channel, agent]) control.addEventListener("change", () => load(true));
  tag.addEventListener("change", () => load(true));

  // ---- presence: who is online (polled: presence changes carry no event) ----
  async function loadPresence() {
    const answer = await optional(api("GET", "/v1/team/presence"));
    if (answer === undefined) {
      // No presence here: names still come from the team list.
      const team = await optional(api("GET", "/v1/team", { query: { limit: 100 } }));
      for (const member of (team && team.data) || []) {
        people.set(member.id, { name: member.name || member.email, email: member.email, online: null });
      }
      return false;
    }
    const members = Array.isArray(answer) ? answer : answer.data || [];
    for (const member of members) people.set(member.user_id, { ...member, name: member.name || member.email });
    fill(presence, members.map((member) => h("li", {},
      h("span", { class: `dot ${member.online ? "online" : "offline"}`, "aria-hidden": "true" }),
      `${member.name || member.email}${member.user_id === context.user.id ? " (you)" : ""}`,
      h("span", { class: "visually-hidden" }, member.online ? " online" : " offline"),
      h("small", {}, ` · ${member.open_conversations} open`))));
    presenceBox.hidden = false;
    return true;
  }
  const hasPresence = await loadPresence().catch(() => false);
  const presenceTimer = hasPresence ? setInterval(() => loadPresence().catch(() => undefined), PRESENCE_EVERY_MS) : null;

  // ---- search ----
  async function runSearch() {
    const q = search.value.trim();
    if (!q) { results.hidden = true; items.hidden = false; return; }
    fill(results, h("p", { role: "status" }, "Searching…"));
    results.hidden = false;
    items.hidden = true;
    const query = { q, limit: 20, agent_id: agent.value, channel: channel.value };
    const hitRow = (hit) => h("li", {},
      h("a", { href: `#/inbox/${hit.conversation_id}/${hit.message_id}` },
        h("strong", {}, hit.contact_name || "Visitor"), " · ", when(hit.created_at)),
      h("p", { class: "fragment" }, highlighted(hit.fragment)));
    try {
      const answer = await api("GET", "/v1/conversations/search", { query });
      const list = h("ol", { class: "list hits-list" }, answer.items.map(hitRow));
      const next = h("button", { type: "button", class: "more", hidden: !answer.next_cursor }, "More results");
      let cursorOfHits = answer.next_cursor;
      next.addEventListener("click", async () => {
        next.disabled = true;
        try {
          const page = await api("GET", "/v1/conversations/search", { query: { ...query, cursor: cursorOfHits } });
          list.append(...page.items.map(hitRow));
          cursorOfHits = page.next_cursor;
          next.hidden = !cursorOfHits;
        } finally {
          next.disabled = false;
        }
      });
      fill(results,
        h("div", { class: "results-head" }, h("strong", {}, `Messages matching “${q}”`), " ",
          h("button", { type: "button", class: "link", onclick: closeSearch }, "Back to the conversations")),
        answer.items.length ? [list, next] : h("p", { class: "empty" }, "No message matches."));
    } catch (error) {
      const words = error instanceof ApiError && error.status === 404
        ? "Search is not available on this server." : error.message;
      fill(results, h("p", { class: "notice error", role: "alert" }, words),
        h("button", { type: "button", class: "link", onclick: closeSearch }, "Back to the conversations"));
    }
  }
  function closeSearch() {
    search.value = "";
    results.hidden = true;
    items.hidden = false;
    focusCurrentRow();
  }
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { event.preventDefault(); runSearch(); }
    if (event.key === "Escape") { event.preventDefault(); closeSearch(); }
    if (event.key === "ArrowDown" && !results.hidden) {
      const first = results.querySelector(".hits-list a");
      if (first) { event.preventDefault(); first.focus(); }
    }
  });
  // Arrows move between the hits too.
  results.addEventListener("keydown", (event) => {
    if (!["ArrowDown", "ArrowUp"].includes(event.key) || !event.target.closest(".hits-list")) return;
    const links = [...results.querySelectorAll(".hits-list a")];
    const at = links.indexOf(event.target);
    const next = links[at + (event.key === "ArrowDown" ? 1 : -1)];
    event.preventDefault();
    if (next) next.focus(); else if (event.key === "ArrowUp") search.focus();
  });
  search.addEventListener("search", runSearch);

  // ---- the open conversation ----
  async function openConversation(id, messageId) {
    if (view) { view.close(); view = null; }
    currentId = id;
    const listed = conversations.get(id);
    if (listed) listed.unread_count = 0;
    paint();
    if (!id) {
      fill(pane, h("p", { class: "empty" }, "Choose a conversation."));
      return;
    }
    try {
      view = await conversationView(pane, id, context, directory, {
        atMessage: messageId || null,
        changed: (conversation) => { if (conversations.has(conversation.id)) { remember({ ...conversations.get(conversation.id), ...conversation, unread_count: 0 }); paint(); } },
      });
    } catch (error) {
      fill(pane, h("p", { class: "notice error", role: "alert" }, error.message));
    }
  }

  function focusCurrentRow() {
    const link = currentId ? items.querySelector(`li[data-id="${CSS.escape(currentId)}"] a`) : items.querySelector("li a");
    if (link) link.focus();
  }

  function move(step) {
    if (!order.length) return;
    const at = order.indexOf(currentId);
    const next = at === -1 ? 0 : Math.min(order.length - 1, Math.max(0, at + step));
    if (order[next] === currentId && at !== -1) { focusCurrentRow(); return; }
    location.hash = `#/inbox/${order[next]}`; // the app calls navigate(), which opens it
  }

  // ---- the keyboard ----
  function onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target instanceof HTMLElement
      && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
    if (help.open) return; // the dialog handles its own keys (Esc closes it)
    if (typing) {
      if (event.key === "Escape" && target.tagName === "TEXTAREA") { target.blur(); focusCurrentRow(); }
      return;
    }
    const actions = {
      j: () => move(1),
      k: () => move(-1),
      r: () => view && view.focusReply(),
      a: () => view && view.assignToMe(),
      h: () => view && view.handBack(),
      t: () => view && view.takeOver(),
      n: () => view && view.focusNote(),
      "/": () => search.focus(),
      "?": () => help.show(),
    };
    const action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }
  document.addEventListener("keydown", onKey);

  fill(main,
    h("div", { class: "inbox-head" },
      h("h1", {}, "Inbox ", live),
      h("button", { type: "button", class: "link", "aria-keyshortcuts": "?", onclick: () => help.show() }, "Keyboard shortcuts (?)")),
    h("div", { class: "inbox" },
      h("aside", { class: "conversations", "aria-label": "Conversation list" },
        field("Search messages", search),
        h("div", { class: "filters" }, field("Show", viewSelect), field("Status", status), field("Channel", channel),
          field("Agent", agent), field("Tag", tag)),
        presenceBox, results, items, listStatus, more),
      pane),
    help.element);
  await load(true);

  // ---- live ----
  const stop = follow("/v1/events", {}, async (event) => {
    const data = event.data || {};
    if (event.type.startsWith("conversation.") && data.id) {
      const known = conversations.get(data.id);
      const merged = mergeEvent(known, data);
      // Events are the company's: the unread count in them is nobody's in particular.
      merged.unread_count = known ? known.unread_count : (data.id === currentId ? 0 : Number(data.unread_count || 0));
      if (known && !matches(merged)) {
        conversations.delete(data.id);
        order = order.filter((id) => id !== data.id);
      } else if (known || matches(merged)) {
        remember(merged);
      }
      paint();
    } else if (event.type === "message.created" && data.conversation_id) {
      let known = conversations.get(data.conversation_id);
      if (!known) {
        const fetched = await optional(api("GET", `/v1/conversations/${data.conversation_id}`));
        if (!fetched || !matches(fetched)) { if (view && view.id === data.conversation_id) view.onEvent(event); return; }
        remember(fetched);
        known = fetched;
      } else {
        const fromMe = data.sender_id === context.user.id;
        known.last_message = {
          id: data.id, content_preview: data.content.slice(0, 140), sender_type: data.sender_type,
          sender_id: data.sender_id || null, sender_name: data.sender_name || null,
          created_at: data.created_at, ai: Boolean(data.ai_metadata),
        };
        known.last_activity_at = data.created_at;
        if (data.conversation_id !== currentId && !fromMe) known.unread_count = Number(known.unread_count || 0) + 1;
      }
      paint();
    }
    if (view && event.conversation_id === view.id) view.onEvent(event);
  }, (state) => {
    live.textContent = state === "open" ? "live" : state;
    // Once this stream is open, this member counts as online.
    if (state === "open" && hasPresence) loadPresence().catch(() => undefined);
  });

  if (openId) await openConversation(openId, atMessage);

  return {
    stop() {
      stop();
      document.removeEventListener("keydown", onKey);
      clearInterval(presenceTimer);
      if (view) view.close();
    },
    navigate([id, messageId]) {
      openConversation(id || null, messageId).then(() => {
        if (!messageId) focusCurrentRow();
      });
    },
  };
}

/** A search fragment: HTML-escaped text with the matches in <mark>…</mark>. Parsed into an
 * inert document and rebuilt from its text and marks only, so nothing else becomes markup. */
export function highlighted(fragment) {
  const parsed = new DOMParser().parseFromString(`<body>${fragment || ""}</body>`, "text/html");
  return [...parsed.body.childNodes].map((node) => (node.nodeName === "MARK"
    ? h("mark", {}, node.textContent) : node.textContent));
}

function helpDialog() {
  const close = h("button", { type: "button" }, "Close");
  const element = h("dialog", { class: "help", "aria-labelledby": "shortcuts-title" },
    h("h2", { id: "shortcuts-title" }, "Keyboard shortcuts"),
    h("dl", { class: "keys" }, SHORTCUTS.map(([key, what]) => [h("dt", {}, h("kbd", {}, key)), h("dd", {}, what)])),
    h("p", {}, "In the reply box, type / and a saved reply's shortcut, then Enter or Tab to insert it."),
    close);
  let before = null;
  close.addEventListener("click", () => element.close());
  element.addEventListener("close", () => { if (before && before.isConnected) before.focus(); });
  return {
    element,
    get open() { return element.open; },
    show() {
      before = document.activeElement;
      element.showModal();
      close.focus();
    },
  };
}
