// Contacts (search, tags, a timeline across stores) and deals as a pipeline board.

import { api } from "./api.js";
import { busy, field, fill, h, instant, notice, number, pagedList, select, when } from "./ui.js";

const STAGES = ["lead", "qualified", "proposal", "negotiation", "closed-won", "closed-lost"];

function contactName(contact) {
  const name = [contact.first_name, contact.last_name].filter(Boolean).join(" ");
  return name || contact.email || contact.phone || "Unnamed contact";
}

function tagList(text) {
  return text.split(",").map((tag) => tag.trim()).filter(Boolean);
}

export async function renderContacts(main, context, [contactId]) {
  if (contactId) return renderTimeline(main, contactId);
  const search = h("input", { type: "search", maxlength: 100, placeholder: "Email, name or phone" });
  const tag = h("input", { type: "search", maxlength: 50 });
  const list = pagedList(
    (cursor) => api("GET", "/v1/contacts", { query: { q: search.value.trim(), tag: tag.value.trim(), limit: 20, cursor } }),
    (contact) => h("li", {}, h("a", { href: `#/contacts/${contact.id}` }, contactName(contact)),
      contact.email ? ` · ${contact.email}` : "",
      contact.tags.map((name) => h("span", { class: "tag" }, name))),
    { label: "Contacts", empty: "No contact matches." },
  );
  let searching = null;
  search.addEventListener("input", () => { clearTimeout(searching); searching = setTimeout(list.reload, 250); });
  tag.addEventListener("change", list.reload);

  const email = h("input", { type: "email", maxlength: 320 });
  const first = h("input", { maxlength: 200 });
  const last = h("input", { maxlength: 200 });
  const tags = h("input", { maxlength: 500, placeholder: "lead, vip" });
  const status = notice();
  const add = h("button", { type: "submit" }, "Add contact");
  const form = h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(add, status, async () => {
      const contact = await api("POST", "/v1/contacts", { json: {
        email: email.value || null, first_name: first.value || null,
        last_name: last.value || null, tags: tagList(tags.value),
      } });
      form.reset();
      status.ok(`Added ${contactName(contact)}.`);
      list.reload();
    });
  } }, h("h2", {}, "New contact"), field("Email", email), field("First name", first),
  field("Last name", last), field("Tags (comma-separated)", tags), add, status);

  fill(main, h("h1", {}, "Contacts"),
    h("div", { class: "filters" }, field("Search", search), field("Tag", tag)),
    list.element, form);
  list.reload();
}

async function renderTimeline(main, contactId) {
  const contact = await api("GET", `/v1/contacts/${contactId}`);
  const tags = h("input", { value: contact.tags.join(", "), maxlength: 500 });
  const status = notice();
  const save = h("button", { type: "submit" }, "Save tags");
  const query = { contact_id: contactId, limit: 50 };
  const [conversations, deals, events, calls] = await Promise.all([
    api("GET", "/v1/conversations", { query: { ...query, include_archived: "true" } }),
    api("GET", "/v1/deals", { query }),
    api("GET", "/v1/analytics/events", { query }),
    api("GET", "/v1/calls/history", { query }),
  ]);
  // One timeline across the stores: conversations (MongoDB), deals, events and calls
  // (PostgreSQL), newest first.
  const entries = [
    ...conversations.data.map((c) => [c.started_at, "Conversation",
      h("a", { href: `#/inbox/${c.id}` }, `${c.channel}, ${c.status}`)]),
    ...deals.data.map((d) => [d.created_at, "Deal", `${d.title} · ${d.stage} · ${number(d.value, 2)}`]),
    ...events.data.map((e) => [e.created_at, "Event", e.event_type]),
    ...calls.data.map((c) => [c.started_at, "Call",
      `${c.direction}, ${c.status}${c.duration_seconds ? `, ${c.duration_seconds} s` : ""}`]),
  ].sort((a, b) => instant(b[0]) - instant(a[0]));
  const more = [conversations, deals, events, calls].some((page) => page.next_cursor);

  fill(main, h("p", {}, h("a", { href: "#/contacts" }, "← Contacts")),
    h("h1", {}, contactName(contact)),
    h("p", {}, [contact.email, contact.phone].filter(Boolean).join(" · ")),
    h("form", { class: "inline", onsubmit: (event) => {
      event.preventDefault();
      busy(save, status, async () => {
        await api("PATCH", `/v1/contacts/${contactId}`, { json: { tags: tagList(tags.value) } });
        status.ok("Tags saved.");
      });
    } }, field("Tags (comma-separated)", tags), save, status),
    h("h2", {}, "Timeline"),
    h("ol", { class: "timeline", "aria-label": "Timeline" }, entries.length
      ? entries.map(([at, kind, text]) => h("li", {}, h("time", { datetime: at }, when(at)), " ",
        h("strong", {}, kind), " ", text))
      : h("li", { class: "empty" }, "Nothing recorded about this contact yet.")),
    more ? h("p", {}, "Showing the latest 50 of each kind.") : null);
}

export async function renderDeals(main) {
  const status = notice();
  const totals = h("p", { class: "totals" });
  const board = h("div", { class: "board" });
  const columns = new Map();

  async function refreshTotals() {
    const pipeline = await api("GET", "/v1/deals/pipeline");
    fill(totals, pipeline.stages.map((stage) =>
      h("span", {}, `${stage.stage}: ${stage.count} (${number(stage.value, 2)})`)));
  }

  // A card into a column: the column's "No deals." goes, the one it left may get it.
  function place(stage, card) {
    const from = card.parentElement;
    const into = columns.get(stage).list;
    const placeholder = into.querySelector(".empty");
    if (placeholder) placeholder.remove();
    into.prepend(card);
    if (from && from !== into && !from.querySelector("li.deal")) {
      from.append(h("li", { class: "empty" }, "No deals."));
    }
  }

  async function move(deal, stage, card) {
    if (deal.stage === stage) return;
    const from = deal.stage;
    place(stage, card);
    try {
      const saved = await api("PATCH", `/v1/deals/${deal.id}`, { json: { stage } });
      Object.assign(deal, saved);
      card.querySelector("select").value = stage;
      status.ok(`Moved “${deal.title}” to ${stage}.`);
      refreshTotals().catch(() => undefined);
    } catch (error) {
      place(from, card);
      card.querySelector("select").value = from;
      status.error(error);
    }
  }

  function card(deal) {
    const stage = select(STAGES.map((s) => [s, s]), deal.stage, { "aria-label": `Stage of ${deal.title}` });
    const element = h("li", { class: "deal", draggable: "true", dataset: { id: deal.id } },
      h("strong", {}, deal.title), h("br"), number(deal.value, 2), " ", stage);
    stage.addEventListener("change", () => move(deal, stage.value, element));
    element.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("text/plain", deal.id);
      event.dataTransfer.effectAllowed = "move";
    });
    element.deal = deal;
    return element;
  }

  for (const stage of STAGES) {
    const column = pagedList(
      (cursor) => api("GET", "/v1/deals", { query: { stage, limit: 20, cursor } }),
      card, { label: `Deals in ${stage}`, empty: "No deals." },
    );
    const section = h("section", { class: "stage", dataset: { stage }, "aria-label": stage },
      h("h2", {}, stage), column.element);
    section.addEventListener("dragover", (event) => { event.preventDefault(); section.classList.add("over"); });
    section.addEventListener("dragleave", () => section.classList.remove("over"));
    section.addEventListener("drop", (event) => {
      event.preventDefault();
      section.classList.remove("over");
      const id = event.dataTransfer.getData("text/plain");
      const dragged = board.querySelector(`li.deal[data-id="${CSS.escape(id)}"]`);
      if (dragged) move(dragged.deal, stage, dragged);
    });
    columns.set(stage, { list: column.items, reload: column.reload });
    board.append(section);
  }

  const title = h("input", { required: true, maxlength: 200 });
  const value = h("input", { type: "number", min: 0, step: "0.01" });
  const add = h("button", { type: "submit" }, "Add deal");
  const addStatus = notice();
  const form = h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(add, addStatus, async () => {
      const deal = await api("POST", "/v1/deals", { json: { title: title.value, value: value.value || null } });
      place(deal.stage, card(deal));
      form.reset();
      refreshTotals().catch(() => undefined);
    });
  } }, h("h2", {}, "New deal"), field("Title", title), field("Value", value), add, addStatus);

  fill(main, h("h1", {}, "Deals"), h("p", {}, "Drag a deal to another stage, or choose its stage."),
    totals, status, board, form);
  await Promise.all([...columns.values()].map((column) => column.reload()));
  refreshTotals().catch((error) => status.error(error));
}
