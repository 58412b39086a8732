// One conversation in the inbox: its messages (the agent's answer growing live from
// message.delta until message.created replaces it), the reply box with saved replies
// (type / and a shortcut), assignment, hand-off and take-over, and the team's private
// notes. Controls whose endpoint this server lacks are left out.

import { api, ApiError } from "./api.js";
import { busy, field, fill, h, instant, notice, select, when } from "./ui.js";

const REACTIONS = ["👍", "❤️", "✅"];
const TYPING_SHOWN_MS = 6000;
const FIND_PAGES = 20; // pages of 100 looked through for a message opened from search

/** ``promise``'s value, or undefined when the server has no such endpoint or row (404,
 * 405): a control that needs it is then hidden rather than broken. */
export async function optional(promise) {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof ApiError && [404, 405].includes(error.status)) return undefined;
    throw error;
  }
}

/** The contact's name, or "Visitor" and a short id for an anonymous chat. */
export function contactLabel(conversation) {
  if (conversation.contact_name) return conversation.contact_name;
  return `Visitor ${String(conversation.id).slice(-6)}`;
}

/** Who said a message, in words: the contact, the agent (its name) or the teammate (their
 * name); never "user". */
export function senderLabel(message, conversation, directory) {
  if (message.sender_type === "user") return message.sender_name || contactLabel(conversation);
  if (message.sender_type === "system") return "System";
  const userId = teammateOf(message);
  if (userId) return userId === directory.me ? "You" : message.sender_name || personName(directory.people.get(userId));
  if (message.sender_name) return message.sender_name;
  if (isAgent(message)) return directory.agentName.get(conversation.agent_id) || "The agent";
  return "A teammate";
}

/** The teammate who wrote a message, if one did (``sender_id``). */
function teammateOf(message) {
  return message.sender_id || message.sender_user_id || null;
}

/** Whether the agent wrote ``message``: an agent message no teammate wrote (a server
 * without ``sender_id``: one with the model's ``ai_metadata``). */
function isAgent(message) {
  if (message.sender_type !== "agent" || teammateOf(message)) return false;
  return "sender_id" in message || Boolean(message.ai_metadata) || Boolean(message.ai);
}

export function personName(person) {
  return person ? person.name || person.email : "a teammate";
}

/** A conversation as an event tells it, over what the list knew: events may leave the
 * names out (null), which the list then keeps. */
export function mergeEvent(known, data) {
  const merged = { ...(known || {}), ...data };
  if (!known) return merged;
  if (!data.contact_name && known.contact_name) merged.contact_name = known.contact_name;
  const before = known.last_message;
  const after = data.last_message;
  if (after === undefined || (after === null && before)) merged.last_message = before;
  else if (after && before && after.id === before.id && !after.sender_name) merged.last_message = { ...after, sender_name: before.sender_name };
  if (!data.last_activity_at && known.last_activity_at) merged.last_activity_at = known.last_activity_at;
  return merged;
}

export async function conversationView(pane, id, context, directory, { atMessage, changed }) {
  let conversation = await api("GET", `/v1/conversations/${id}`);
  const messages = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const typing = h("p", { class: "typing", "aria-live": "polite" });
  const thread = select([["", "Main thread"], ...conversation.threads.map((t) => [t.id, t.title])], "");
  const status = notice();
  const older = h("button", { type: "button", class: "more", hidden: true }, "Load older messages");
  const shown = new Map(); // message id → element
  const growing = new Map(); // message id → element of an answer being written
  let cursor = null;
  let typingTimer = null;
  let typingSent = false;
  let typingStop = null;

  // ---- messages ----
  const place = (message, atStart = false) => {
    const element = messageView(message, conversation, directory, status);
    const before = shown.get(message.id) || growing.get(message.id);
    growing.delete(message.id);
    shown.set(message.id, element);
    if (before) before.replaceWith(element);
    else if (atStart) messages.prepend(element);
    else { messages.append(element); messages.scrollTop = messages.scrollHeight; }
  };
  function grow(delta) {
    if (shown.has(delta.message_id)) return; // the stored answer is already here
    let element = growing.get(delta.message_id);
    if (!element) {
      element = h("li", { class: "message agent growing", dataset: { id: delta.message_id }, "aria-busy": "true" },
        h("div", { class: "meta" }, `${directory.agentName.get(conversation.agent_id) || "The agent"} · writing…`),
        h("div", { class: "content" }));
      growing.set(delta.message_id, element);
      messages.append(element);
    }
    element.querySelector(".content").textContent += delta.delta;
    messages.scrollTop = messages.scrollHeight;
  }
  async function loadPage(first, limit = 30) {
    const answer = await api("GET", `/v1/conversations/${id}/messages`, {
      query: { limit, cursor: first ? null : cursor, thread_id: thread.value || null },
    });
    if (first) { messages.replaceChildren(); shown.clear(); }
    for (const message of answer.data) place(message, true); // newest first: each goes on top
    cursor = answer.next_cursor;
    older.hidden = !cursor;
    if (first && answer.data.length) markRead(answer.data[0]);
  }
  let readWhole = true; // POST …/read (every message); else the newest message's receipt
  async function markRead(latest) {
    if (latest.read_by.some((receipt) => receipt.user_id === context.user.id)) return;
    if (readWhole) {
      const done = await optional(api("POST", `/v1/conversations/${id}/read`)).catch(() => null);
      if (done !== undefined) return;
      readWhole = false;
    }
    api("POST", `/v1/conversations/${id}/messages/${latest.id}/read`).catch(() => undefined);
  }
  older.addEventListener("click", () => busy(older, status, () => loadPage(false)));
  thread.addEventListener("change", () => loadPage(true).catch((error) => status.error(error)));

  // ---- the reply box, with saved replies ----
  const reply = h("textarea", { rows: 3, maxlength: 10000, required: true, "aria-keyshortcuts": "r",
    "aria-autocomplete": "list", "aria-describedby": `saved-hint-${id}` });
  const send = h("button", { type: "submit" }, "Send");
  const saved = savedReplies(reply);
  const stopTyping = () => {
    if (typingSent) api("POST", `/v1/conversations/${id}/typing`, { json: { state: "stop" } }).catch(() => undefined);
    typingSent = false;
  };
  reply.addEventListener("input", () => {
    if (!typingSent) {
      typingSent = true;
      api("POST", `/v1/conversations/${id}/typing`, { json: { state: "start" } }).catch(() => undefined);
    }
    clearTimeout(typingStop);
    typingStop = setTimeout(stopTyping, 3000);
  });
  reply.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter starts a new line (unless a saved reply is being chosen).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.defaultPrevented) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  const form = h("form", { class: "reply", onsubmit: (event) => {
    event.preventDefault();
    if (!reply.value.trim()) return;
    busy(send, status, async () => {
      const message = await api("POST", `/v1/conversations/${id}/messages`, {
        json: { sender_type: "agent", content: reply.value, thread_id: thread.value || null },
      });
      clearTimeout(typingStop);
      stopTyping();
      reply.value = "";
      place(message);
      reply.focus();
    }, "Sending…");
  } }, field("Reply as a teammate", reply, saved.hint), saved.list, send, status);
  saved.hint.id = `saved-hint-${id}`;

  // ---- assignment and hand-off ----
  const controls = h("div", { class: "controls" });
  const assignee = select([["", "Nobody"]], "", { "aria-keyshortcuts": "a" });
  const takeOver = h("button", { type: "button", "aria-keyshortcuts": "t" }, "Take over");
  const handBack = h("button", { type: "button", "aria-keyshortcuts": "h" }, "Hand back to the agent");
  const canAssign = "assignee_id" in conversation;
  function fillAssignees() {
    const options = [["", "Nobody"], ...[...directory.people].map(([userId, person]) => [userId,
      `${userId === context.user.id ? "Me" : person.name || person.email}${person.online === true ? " (online)" : person.online === false ? " (offline)" : ""}`])];
    if (conversation.assignee_id && !directory.people.has(conversation.assignee_id)) options.push([conversation.assignee_id, "A former member"]);
    fill(assignee, options.map(([value, text]) => h("option", { value, selected: value === (conversation.assignee_id || "") }, text)));
  }
  async function assign(userId) {
    const updated = await api("POST", `/v1/conversations/${id}/assign`, { json: { assignee_id: userId || null } });
    update(updated);
    const person = userId ? directory.people.get(userId) : null;
    status.ok(userId ? `Assigned to ${userId === context.user.id ? "you" : person ? person.name || person.email : "them"}.` : "Unassigned.");
  }
  assignee.addEventListener("change", () => busy(send, status, () => assign(assignee.value)));
  async function handOff(to) {
    const updated = await api("POST", `/v1/conversations/${id}/handoff`, { json: { to } });
    update(updated);
    status.ok(to === "agent" ? "Handed back to the agent." : "You answer now: the agent stays quiet.");
  }
  takeOver.addEventListener("click", () => busy(takeOver, status, () => handOff("human")));
  handBack.addEventListener("click", () => busy(handBack, status, () => handOff("agent")));

  const header = h("header");
  function paintHeader() {
    const agentName = directory.agentName.get(conversation.agent_id) || "the agent";
    fill(header,
      h("h2", {}, contactLabel(conversation)),
      h("p", {}, `${conversation.channel} · ${conversation.status} · started ${when(conversation.started_at)}`,
        conversation.tags.length ? ` · tags: ${conversation.tags.join(", ")}` : "",
        conversation.contact_id ? [" · ", h("a", { href: `#/contacts/${conversation.contact_id}` }, "contact")] : ""),
      h("p", { class: `handled ${conversation.handled_by}`, role: "status" },
        conversation.handled_by === "human" ? `People answer (${agentName} is quiet).` : `${agentName} answers.`),
      conversation.summary ? h("p", { class: "summary" }, h("strong", {}, "Summary: "), conversation.summary) : null,
      conversation.rating ? h("p", { class: "rating" }, h("strong", {}, `Rated ${conversation.rating.score} / 5`),
        conversation.rating.comment ? `: “${conversation.rating.comment}”` : "") : null);
    takeOver.hidden = conversation.handled_by === "human" || conversation.status !== "active";
    handBack.hidden = conversation.handled_by !== "human" || conversation.status !== "active";
    if (canAssign) fillAssignees();
  }
  function update(next) {
    conversation = mergeEvent(conversation, next);
    paintHeader();
    changed(conversation);
  }
  fill(controls, canAssign ? field("Assignee", assignee) : null, h("div", { class: "buttons" }, takeOver, handBack));

  // ---- private notes ----
  const notes = await notesPanel(id, context);

  fill(pane, header, controls, conversation.threads.length ? field("Thread", thread) : null,
    older, messages, typing,
    conversation.status === "active" ? form : h("p", {}, "This conversation has ended."),
    notes ? notes.element : null);
  paintHeader();
  await loadPage(true);
  if (atMessage) await showMessage(atMessage);

  async function showMessage(messageId) {
    for (let page = 0; !shown.has(messageId) && cursor && page < FIND_PAGES; page += 1) {
      await loadPage(false, 100);
    }
    const element = shown.get(messageId);
    if (!element) { status.error("That message is no longer in this conversation."); return; }
    element.classList.add("found");
    element.tabIndex = -1;
    element.scrollIntoView({ block: "center" });
    element.focus();
  }

  return {
    id,
    onEvent(event) {
      if (event.type === "message.delta") {
        grow(event.data);
      } else if (["message.created", "message.updated", "message.reaction", "message.read"].includes(event.type)) {
        const message = event.data;
        if ((thread.value || null) === (message.thread_id || null) || shown.has(message.id)) place(message);
        if (event.type === "message.created") {
          typing.textContent = "";
          markRead(message);
        }
      } else if (event.type === "typing") {
        const by = event.data && event.data.by;
        if (event.data && event.data.user_id === context.user.id) return;
        clearTimeout(typingTimer);
        if (event.data && event.data.state === "stop") { typing.textContent = ""; return; }
        typing.textContent = `${by === "visitor" ? contactLabel(conversation) : by === "agent" ? directory.agentName.get(conversation.agent_id) || "The agent" : "A teammate"} is typing…`;
        typingTimer = setTimeout(() => { typing.textContent = ""; }, TYPING_SHOWN_MS);
      } else if (event.type.startsWith("note.") && notes) {
        notes.onEvent(event);
      } else if (event.type.startsWith("conversation.")) {
        conversation = mergeEvent(conversation, event.data);
        paintHeader();
        if (event.type === "conversation.ended" || event.type === "conversation.archived") {
          if (form.isConnected) form.replaceWith(h("p", {}, "This conversation has ended."));
        }
      }
    },
    close() {
      clearTimeout(typingTimer);
      clearTimeout(typingStop);
      stopTyping();
    },
    focusReply() {
      if (form.isConnected) reply.focus(); else status.error("This conversation has ended: there is nothing to reply to.");
    },
    focusNote() {
      if (notes) notes.focus();
    },
    assignToMe() {
      if (!canAssign) { status.error("Assignment is not available on this server."); return; }
      busy(send, status, () => assign(context.user.id));
    },
    handBack() {
      if (conversation.handled_by === "agent") { status.ok("The agent already answers."); return; }
      busy(handBack, status, () => handOff("agent"));
    },
    takeOver() {
      if (conversation.handled_by === "human") { status.ok("People already answer."); return; }
      busy(takeOver, status, () => handOff("human"));
    },
  };
}

function messageView(message, conversation, directory, status) {
  const reactions = message.metadata.reactions || [];
  const counts = new Map();
  for (const reaction of reactions) counts.set(reaction.emoji, (counts.get(reaction.emoji) || 0) + 1);
  const readers = message.read_by.length;
  const sender = senderLabel(message, conversation, directory);
  const kind = message.sender_type === "user" ? "contact" : message.sender_type === "system" ? "system"
    : isAgent(message) ? "agent" : "teammate";
  const intent = message.metadata.intent;
  const sentiment = message.metadata.sentiment;
  const citations = message.metadata.citations || [];
  return h("li", { class: `message ${message.sender_type} ${kind}`, dataset: { id: message.id } },
    h("div", { class: "meta" }, h("span", { class: "sender" }, sender),
      message.ai_metadata ? ` (${message.ai_metadata.model})` : "", ` · ${when(message.created_at)}`,
      intent && intent.name ? h("span", { class: "tag" }, `intent: ${intent.name}`) : null,
      sentiment && sentiment.label ? h("span", { class: `tag sentiment ${sentiment.label}` }, sentiment.label) : null),
    h("div", { class: "content" }, message.content),
    citations.length ? h("p", { class: "citations" }, "Sources: ", citations.map((c) => c.document_name).join(", ")) : null,
    h("div", { class: "extras" },
      [...counts].map(([emoji, count]) => h("span", { class: "reaction" }, `${emoji} ${count}`)),
      h("span", { class: "receipts" }, readers ? `Read by ${readers}` : "Unread"),
      REACTIONS.map((emoji) => h("button", {
        type: "button", class: "react", "aria-label": `React ${emoji}`,
        onclick: () => api("POST", `/v1/conversations/${message.conversation_id}/messages/${message.id}/reactions`, { json: { emoji } })
          .catch((error) => status.error(error)),
      }, emoji))));
}

/** Saved replies in the reply box: "/" and the start of a shortcut lists the matches;
 * arrows choose, Enter or Tab inserts, Escape closes. */
function savedReplies(reply) {
  let all = null; // loaded on first use; [] when the server has none or no such endpoint
  let matches = [];
  let chosen = 0;
  const listId = `saved-${Math.random().toString(36).slice(2)}`;
  const list = h("ul", { class: "saved-list", role: "listbox", id: listId, "aria-label": "Saved replies", hidden: true });
  const hint = h("small", {}, "Type / and a saved reply's shortcut to insert it. Enter sends, Shift+Enter starts a new line.");
  reply.setAttribute("aria-controls", listId);

  const token = () => {
    const before = reply.value.slice(0, reply.selectionStart);
    const found = /(^|\s)\/([a-z0-9_-]{0,32})$/.exec(before);
    return found ? { start: before.length - found[2].length - 1, text: found[2] } : null;
  };
  function hide() {
    list.hidden = true;
    reply.setAttribute("aria-expanded", "false");
    reply.removeAttribute("aria-activedescendant");
  }
  function paint() {
    fill(list, matches.map((saved, index) => h("li", {
      id: `${listId}-${index}`, role: "option", "aria-selected": index === chosen ? "true" : "false",
      onmousedown: (event) => { event.preventDefault(); chosen = index; insert(); },
    }, h("strong", {}, `/${saved.shortcut}`), " ", saved.content.slice(0, 80))));
    list.hidden = !matches.length;
    reply.setAttribute("aria-expanded", matches.length ? "true" : "false");
    if (matches.length) reply.setAttribute("aria-activedescendant", `${listId}-${chosen}`);
  }
  function insert() {
    const at = token();
    const saved = matches[chosen];
    if (!at || !saved) return;
    const end = reply.selectionStart;
    reply.value = reply.value.slice(0, at.start) + saved.content + reply.value.slice(end);
    const caret = at.start + saved.content.length;
    reply.setSelectionRange(caret, caret);
    hide();
    reply.dispatchEvent(new Event("input"));
  }
  reply.addEventListener("input", async () => {
    const at = token();
    if (!at) { hide(); return; }
    if (all === null) {
      all = [];
      const answer = await optional(api("GET", "/v1/saved-replies", { query: { limit: 100 } })).catch(() => undefined);
      all = answer ? (Array.isArray(answer) ? answer : answer.data || []) : [];
    }
    const now = token();
    if (!now) { hide(); return; }
    matches = all.filter((saved) => saved.shortcut.startsWith(now.text)).slice(0, 8);
    chosen = 0;
    paint();
  });
  reply.addEventListener("keydown", (event) => {
    if (list.hidden) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      chosen = (chosen + (event.key === "ArrowDown" ? 1 : matches.length - 1)) % matches.length;
      paint();
    } else if (event.key === "Enter" || event.key === "Tab") {
      event.preventDefault();
      insert();
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      hide();
    }
  });
  reply.addEventListener("blur", () => setTimeout(hide, 150));
  return { list, hint };
}

/** The team's private notes on a conversation: never shown to the visitor or the agent. */
async function notesPanel(id, context) {
  const answer = await optional(api("GET", `/v1/conversations/${id}/notes`));
  if (answer === undefined) return null; // no notes on this server
  const list = h("ol", { class: "notes-list", "aria-label": "Private notes" });
  const body = h("textarea", { rows: 2, maxlength: 10000, required: true, "aria-keyshortcuts": "n" });
  const add = h("button", { type: "submit" }, "Add note");
  const status = notice();
  const shown = new Map();
  const place = (note) => {
    if (shown.has(note.id)) return;
    const remove = note.author_id === context.user.id
      ? h("button", { type: "button", class: "link", "aria-label": "Delete this note" }, "Delete") : null;
    const element = h("li", { class: "note", dataset: { id: note.id } },
      h("div", { class: "meta" }, `${note.author_id === context.user.id ? "You" : note.author_name || "A teammate"} · ${when(note.created_at)}`),
      h("div", { class: "content" }, note.body), remove);
    if (remove) {
      remove.addEventListener("click", () => busy(remove, status, async () => {
        await api("DELETE", `/v1/conversations/${id}/notes/${note.id}`);
        element.remove();
        shown.delete(note.id);
      }));
    }
    element.dataset.at = String(note.created_at);
    shown.set(note.id, element);
    // Oldest first: a page loaded after a live note still lands in time order. Notes of
    // one millisecond keep the order they came in.
    const at = instant(note.created_at);
    const later = [...list.children].find((other) => instant(other.dataset.at) > at);
    list.insertBefore(element, later || null);
  };
  const byTime = (page) => [...page].sort((a, b) => instant(a.created_at) - instant(b.created_at));
  // The notes come 50 a page, oldest first: the newer ones follow on demand.
  let cursor = Array.isArray(answer) ? null : answer.next_cursor || null;
  const more = h("button", { type: "button", class: "link" }, "More notes");
  more.hidden = !cursor;
  more.addEventListener("click", () => busy(more, status, async () => {
    const page = await api("GET", `/v1/conversations/${id}/notes`, { query: { cursor } });
    byTime(page.data || []).forEach(place);
    cursor = page.next_cursor || null;
    more.hidden = !cursor;
  }, "Loading…"));
  byTime(Array.isArray(answer) ? answer : answer.data || []).forEach(place);
  const form = h("form", { onsubmit: (event) => {
    event.preventDefault();
    if (!body.value.trim()) return;
    busy(add, status, async () => {
      place(await api("POST", `/v1/conversations/${id}/notes`, { json: { body: body.value } }));
      body.value = "";
    }, "Adding…");
  } }, field("Add a private note", body), add, status);
  body.addEventListener("keydown", (event) => {
    if (event.key === "Escape") body.blur();
  });
  const element = h("section", { class: "notes", "aria-label": "Private notes (internal)" },
    h("h3", {}, "Private notes ", h("span", { class: "internal" }, "internal")),
    h("p", { class: "hint" }, "Only your team sees these: never the visitor, never the agent."),
    list, more, form);
  return {
    element,
    focus: () => body.focus(),
    onEvent(event) {
      if (event.type === "note.created" && event.data) place(event.data);
      if (event.type === "note.deleted" && event.data && shown.has(event.data.id)) {
        shown.get(event.data.id).remove();
        shown.delete(event.data.id);
      }
    },
  };
}
