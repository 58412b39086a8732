// The inbox: conversations newest first, filtered; one conversation's messages with
// threads, reactions and read receipts; replies as a teammate; typing; all live through
// the company's event stream (/v1/events).

import { api, follow } from "./api.js";
import { busy, field, fill, h, notice, pagedList, select, when } from "./ui.js";

const STATUSES = [["", "Any status"], ["active", "Active"], ["ended", "Ended"], ["archived", "Archived"]];
const CHANNELS = [["", "Any channel"], ["chat", "Chat"], ["voice", "Voice"], ["email", "Email"]];
const REACTIONS = ["👍", "❤️", "✅"];
const TYPING_SHOWN_MS = 6000;

export async function render(main, context, [openId]) {
  const agentList = await api("GET", "/v1/agents", { query: { limit: 100 } });
  const agentName = new Map(agentList.data.map((agent) => [agent.id, agent.name]));
  const status = select(STATUSES, "");
  const channel = select(CHANNELS, "");
  const agent = select([["", "Any agent"], ...agentList.data.map((a) => [a.id, a.name])], "");
  const tag = h("input", { type: "search", maxlength: 50, placeholder: "vip" });
  const live = h("span", { class: "live", role: "status" }, "connecting…");
  const pane = h("section", { class: "conversation", "aria-label": "Conversation" },
    h("p", { class: "empty" }, "Choose a conversation."));
  let open = null; // the conversation shown: {id, view}

  const filters = () => ({
    status: status.value, channel: channel.value, agent_id: agent.value, tag: tag.value.trim(),
    include_archived: status.value === "archived" ? "true" : null,
  });
  const matches = (conversation) => {
    const wanted = filters();
    return (!wanted.status || conversation.status === wanted.status)
      && (wanted.status === "archived" || conversation.status !== "archived")
      && (!wanted.channel || conversation.channel === wanted.channel)
      && (!wanted.agent_id || conversation.agent_id === wanted.agent_id)
      && (!wanted.tag || conversation.tags.includes(wanted.tag));
  };
  const row = (conversation) => h("li", { dataset: { id: conversation.id } },
    h("a", { href: `#/inbox/${conversation.id}`, class: conversation.id === openId ? "current" : null },
      h("strong", {}, agentName.get(conversation.agent_id) || "Agent"),
      ` · ${conversation.channel} · ${conversation.status}`,
      h("br"), h("small", {}, when(conversation.started_at),
        conversation.tags.length ? ` · ${conversation.tags.join(", ")}` : "")));
  const list = pagedList(
    (cursor) => api("GET", "/v1/conversations", { query: { ...filters(), limit: 20, cursor } }),
    row, { label: "Conversations", empty: "No conversation matches." },
  );
  for (const control of [status, channel, agent]) control.addEventListener("change", list.reload);
  tag.addEventListener("change", list.reload);

  fill(main, h("h1", {}, "Inbox ", live), h("div", { class: "inbox" },
    h("aside", { class: "conversations" },
      h("div", { class: "filters" }, field("Status", status), field("Channel", channel),
        field("Agent", agent), field("Tag", tag)),
      list.element),
    pane));
  list.reload();

  const stop = follow("/v1/events", {}, (event) => {
    const conversation = event.data && event.type.startsWith("conversation.") ? event.data : null;
    if (conversation) {
      const shown = list.items.querySelector(`li[data-id="${CSS.escape(conversation.id)}"]`);
      if (shown) {
        if (matches(conversation)) shown.replaceWith(row(conversation)); else shown.remove();
      } else if (event.type === "conversation.started" && matches(conversation)) {
        list.prepend(conversation);
      }
    }
    if (open && event.conversation_id === open.id) open.view.onEvent(event);
  }, (state) => { live.textContent = state === "open" ? "live" : state; });

  if (openId) {
    open = { id: openId, view: await conversationView(pane, openId, context, agentName) };
  }
  return () => {
    stop();
    if (open) open.view.close();
  };
}

async function conversationView(pane, id, context, agentName) {
  const conversation = await api("GET", `/v1/conversations/${id}`);
  const messages = h("ol", { class: "messages", "aria-label": "Messages", "aria-live": "polite" });
  const typing = h("p", { class: "typing", "aria-live": "polite" });
  const thread = select([["", "Main thread"], ...conversation.threads.map((t) => [t.id, t.title])], "");
  const reply = h("textarea", { rows: 3, maxlength: 10000, required: true });
  const status = notice();
  const send = h("button", { type: "submit" }, "Send");
  const older = h("button", { type: "button", class: "more", hidden: true }, "Load older messages");
  const shown = new Map(); // message id → element
  let cursor = null;
  let typingTimer = null;
  let typingSent = false;
  let typingStop = null;

  const place = (message, atStart = false) => {
    const element = messageView(message, id, context, status);
    const before = shown.get(message.id);
    shown.set(message.id, element);
    if (before) before.replaceWith(element);
    else if (atStart) messages.prepend(element);
    else messages.append(element);
  };
  async function loadPage(first) {
    const answer = await api("GET", `/v1/conversations/${id}/messages`, {
      query: { limit: 30, cursor: first ? null : cursor, thread_id: thread.value || null },
    });
    if (first) { messages.replaceChildren(); shown.clear(); }
    for (const message of answer.data) place(message, true); // newest first: each goes on top
    cursor = answer.next_cursor;
    older.hidden = !cursor;
    if (first && answer.data.length) {
      const latest = answer.data[0];
      if (!latest.read_by.some((receipt) => receipt.user_id === context.user.id)) {
        api("POST", `/v1/conversations/${id}/messages/${latest.id}/read`).catch(() => undefined);
      }
    }
  }
  older.addEventListener("click", () => busy(older, status, () => loadPage(false)));
  thread.addEventListener("change", () => loadPage(true).catch((error) => status.error(error)));

  // Typing: "start" once while typing, "stop" after 3 s without a key or when sent.
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

  const form = h("form", { class: "reply", onsubmit: (event) => {
    event.preventDefault();
    busy(send, status, async () => {
      const message = await api("POST", `/v1/conversations/${id}/messages`, {
        json: { sender_type: "agent", content: reply.value, thread_id: thread.value || null },
      });
      clearTimeout(typingStop);
      stopTyping();
      reply.value = "";
      place(message);
    }, "Sending…");
  } }, field("Reply as a teammate", reply), send, status);

  const header = h("header", {},
    h("h2", {}, `${agentName.get(conversation.agent_id) || "Agent"} · ${conversation.channel}`),
    h("p", {}, `Status: ${conversation.status} · started ${when(conversation.started_at)}`,
      conversation.tags.length ? ` · tags: ${conversation.tags.join(", ")}` : "",
      conversation.contact_id ? [" · ", h("a", { href: `#/contacts/${conversation.contact_id}` }, "contact")] : ""));
  fill(pane, header, conversation.threads.length ? field("Thread", thread) : null,
    older, messages, typing, conversation.status === "active" ? form : h("p", {}, "This conversation has ended."));
  await loadPage(true);

  return {
    onEvent(event) {
      if (event.type === "message.created" || event.type === "message.reaction" || event.type === "message.read") {
        const message = event.data;
        if ((thread.value || null) === (message.thread_id || null) || shown.has(message.id)) place(message);
        if (event.type === "message.created") typing.textContent = "";
      } else if (event.type === "typing") {
        const by = event.data && event.data.by;
        if (event.data && event.data.user_id === context.user.id) return;
        clearTimeout(typingTimer);
        if (event.data && event.data.state === "stop") { typing.textContent = ""; return; }
        typing.textContent = `${by === "visitor" ? "The visitor" : by === "agent" ? "The agent" : "A teammate"} is typing…`;
        typingTimer = setTimeout(() => { typing.textContent = ""; }, TYPING_SHOWN_MS);
      } else if (event.type === "conversation.ended" || event.type === "conversation.archived") {
        form.replaceWith(h("p", {}, "This conversation has ended."));
      }
    },
    close() {
      clearTimeout(typingTimer);
      clearTimeout(typingStop);
      stopTyping();
    },
  };
}

function messageView(message, conversationId, context, status) {
  const reactions = message.metadata.reactions || [];
  const counts = new Map();
  for (const reaction of reactions) counts.set(reaction.emoji, (counts.get(reaction.emoji) || 0) + 1);
  const readers = message.read_by.length;
  return h("li", { class: `message ${message.sender_type}`, dataset: { id: message.id } },
    h("div", { class: "meta" }, `${message.sender_type}${message.ai_metadata ? ` (${message.ai_metadata.model})` : ""} · ${when(message.created_at)}`),
    h("div", { class: "content" }, message.content),
    h("div", { class: "extras" },
      [...counts].map(([emoji, count]) => h("span", { class: "reaction" }, `${emoji} ${count}`)),
      h("span", { class: "receipts" }, readers ? `Read by ${readers}` : "Unread"),
      REACTIONS.map((emoji) => h("button", {
        type: "button", class: "react", "aria-label": `React ${emoji}`,
        onclick: () => api("POST", `/v1/conversations/${conversationId}/messages/${message.id}/reactions`, { json: { emoji } })
          .catch((error) => status.error(error)),
      }, emoji))));
}
