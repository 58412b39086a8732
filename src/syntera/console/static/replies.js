// Saved replies: the team's canned answers, inserted in the inbox's reply box by typing
// "/" and their shortcut (/v1/saved-replies).

import { api, ApiError } from "./api.js";
import { busy, field, fill, h, notice, pagedList } from "./ui.js";

export async function render(main) {
  const status = notice();
  const list = pagedList(
    (cursor) => api("GET", "/v1/saved-replies", { query: { limit: 50, cursor } }),
    (saved) => {
      const remove = h("button", { type: "button", class: "link", "aria-label": `Delete /${saved.shortcut}` }, "Delete");
      const row = h("li", { dataset: { id: saved.id } }, h("strong", {}, `/${saved.shortcut}`), " ",
        h("span", { class: "saved-content" }, saved.content), " ", remove);
      remove.addEventListener("click", () => busy(remove, status, async () => {
        await api("DELETE", `/v1/saved-replies/${saved.id}`);
        row.remove();
        status.ok(`Deleted /${saved.shortcut}.`);
      }));
      return row;
    },
    { label: "Saved replies", empty: "No saved reply yet." },
  );
  const shortcut = h("input", { required: true, maxlength: 32, pattern: "[a-z0-9_\\-]{1,32}", placeholder: "thanks" });
  const content = h("textarea", { required: true, rows: 3, maxlength: 10000 });
  const add = h("button", { type: "submit" }, "Save reply");
  const form = h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(add, status, async () => {
      const saved = await api("POST", "/v1/saved-replies", { json: { shortcut: shortcut.value, content: content.value } });
      list.prepend(saved);
      form.reset();
      status.ok(`Saved /${saved.shortcut}.`);
    });
  } }, h("h2", {}, "New saved reply"),
  field("Shortcut", shortcut, "Lower-case letters, digits, - and _ (up to 32): type /shortcut in a reply."),
  field("Text", content), add);
  fill(main, h("h1", {}, "Saved replies"), status, list.element, form);
  try {
    await api("GET", "/v1/saved-replies", { query: { limit: 1 } });
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      fill(main, h("h1", {}, "Saved replies"), h("p", { class: "notice error", role: "alert" }, "Saved replies are not available on this server."));
      return;
    }
    throw error;
  }
  await list.reload();
}
