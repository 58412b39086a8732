// Saved replies: the team's canned answers, inserted in the inbox's reply box by typing
// "/" and their shortcut (/v1/saved-replies).

import { api, ApiError } from "./api.js";
import { busy, field, fill, h, notice, pagedList } from "./ui.js";

export async function render(main) {
  const status = notice();
  const list = pagedList(
    (cursor) => api("GET", "/v1/saved-replies", { query: { limit: 50, cursor } }),
    (saved) => {
      const row = h("li", { dataset: { id: saved.id } });
      const show = () => {
        const edit = h("button", { type: "button", class: "link", "aria-label": `Edit /${saved.shortcut}` }, "Edit");
        const remove = h("button", { type: "button", class: "link", "aria-label": `Delete /${saved.shortcut}` }, "Delete");
        row.replaceChildren(h("strong", {}, `/${saved.shortcut}`), " ",
          h("span", { class: "saved-content" }, saved.content), " ", edit, " ", remove);
        edit.addEventListener("click", editing);
        remove.addEventListener("click", () => busy(remove, status, async () => {
          await api("DELETE", `/v1/saved-replies/${saved.id}`);
          row.remove();
          status.ok(`Deleted /${saved.shortcut}.`);
        }));
      };
      // Edited in place: the shortcut and the text, saved with PATCH (a taken shortcut: 409).
      const editing = () => {
        const newShortcut = h("input", { required: true, maxlength: 32, pattern: "[a-z0-9_\\-]{1,32}", value: saved.shortcut });
        const newContent = h("textarea", { required: true, rows: 3, maxlength: 10000 });
        newContent.value = saved.content;
        const save = h("button", { type: "submit" }, "Save changes");
        const cancel = h("button", { type: "button", class: "link" }, "Cancel");
        const form = h("form", { class: "saved-edit", onsubmit: (event) => {
          event.preventDefault();
          busy(save, status, async () => {
            Object.assign(saved, await api("PATCH", `/v1/saved-replies/${saved.id}`,
              { json: { shortcut: newShortcut.value, content: newContent.value } }));
            show();
            status.ok(`Saved /${saved.shortcut}.`);
          });
        } }, field("Shortcut", newShortcut), field("Text", newContent), save, " ", cancel);
        cancel.addEventListener("click", show);
        row.replaceChildren(form);
        newContent.focus();
      };
      show();
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
