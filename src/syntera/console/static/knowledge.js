// The knowledge base: upload (with the upload's progress), each document's processing
// progress as the worker reports it, failures with their reason, and a search tester.

import { api, upload } from "./api.js";
import { busy, bytes, field, fill, h, notice, number, pagedList, select } from "./ui.js";

const WATCH_EVERY_MS = 1000;

/** Why processing failed, as the worker recorded it (``metadata.error.message``). */
function failure(document) {
  const error = document.metadata && document.metadata.error;
  return error && typeof error === "object" ? error.message : error;
}

export async function render(main) {
  const agents = (await api("GET", "/v1/agents", { query: { limit: 100 } })).data;
  const agentOptions = [["", "Shared by every agent"], ...agents.map((a) => [a.id, a.name])];
  const watched = new Map(); // document id → row element, while pending or processing
  let timer = null;

  const list = pagedList(
    (cursor) => api("GET", "/v1/kb/documents", { query: { limit: 20, cursor } }),
    (document) => documentRow(document),
    { label: "Documents", empty: "No documents yet: upload one." },
  );

  function documentRow(document) {
    const progress = document.metadata && document.metadata.progress;
    const done = progress && progress.chunks_total ? progress.chunks_done / progress.chunks_total : null;
    const bar = h("progress", { max: 1, "aria-label": `Processing ${document.name}` });
    if (done !== null) bar.value = done;
    const remove = h("button", { type: "button", class: "link" }, "Delete");
    const retry = h("button", { type: "button", class: "link" }, "Process again");
    const status = notice();
    const row = h("li", { class: `document ${document.status}`, dataset: { id: document.id } },
      h("strong", {}, document.name), ` · ${bytes(document.size_bytes)} · `,
      h("span", { class: "state" }, document.status),
      document.status === "completed" ? ` · ${number(document.chunk_count)} chunks` : "",
      ["pending", "processing"].includes(document.status) ? [" ", bar,
        progress && progress.chunks_total ? ` ${progress.chunks_done} of ${progress.chunks_total} chunks` : ""] : "",
      document.status === "failed" ? h("p", { class: "notice error" },
        `Failed: ${failure(document) || "no reason recorded"}`) : "",
      " ", document.status === "failed" ? retry : null, " ", remove, status);
    remove.addEventListener("click", () => busy(remove, status, async () => {
      await api("DELETE", `/v1/kb/documents/${document.id}`);
      watched.delete(document.id);
      row.remove();
    }));
    retry.addEventListener("click", () => busy(retry, status, async () => {
      const again = await api("POST", `/v1/kb/documents/${document.id}/reprocess`);
      replace(again);
    }));
    if (["pending", "processing"].includes(document.status)) watched.set(document.id, row);
    else watched.delete(document.id);
    return row;
  }

  function replace(document) {
    const row = list.items.querySelector(`li[data-id="${CSS.escape(document.id)}"]`);
    if (row) row.replaceWith(documentRow(document)); else list.prepend(document);
  }

  // Progress is what the worker writes to the document (metadata.progress): read again
  // every second while a document is being processed.
  async function watch() {
    for (const id of [...watched.keys()]) {
      try {
        replace(await api("GET", `/v1/kb/documents/${id}`));
      } catch {
        watched.delete(id);
      }
    }
    timer = setTimeout(watch, WATCH_EVERY_MS);
  }

  const file = h("input", { type: "file", required: true, accept: ".txt,.md,.markdown,.html,.htm,.pdf,.docx" });
  const name = h("input", { maxlength: 200 });
  const agent = select(agentOptions, "");
  const sent = h("progress", { max: 1, value: 0, hidden: true, "aria-label": "Upload" });
  const uploadStatus = notice();
  const send = h("button", { type: "submit" }, "Upload");
  const form = h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(send, uploadStatus, async () => {
      const body = new FormData();
      body.append("file", file.files[0]);
      if (name.value) body.append("name", name.value);
      if (agent.value) body.append("agent_id", agent.value);
      sent.hidden = false;
      const document = await upload("/v1/kb/documents", body, (share) => { sent.value = share; })
        .finally(() => { sent.hidden = true; });
      list.prepend(document);
      documentRow(document);
      form.reset();
      uploadStatus.ok(`Uploaded ${document.name}; processing.`);
    }, "Uploading…");
  } }, h("h2", {}, "Upload a document"), field("File (text, Markdown, HTML, PDF, DOCX)", file),
  field("Name (defaults to the file's)", name), field("Agent", agent), send, sent, uploadStatus);

  const query = h("input", { type: "search", required: true, maxlength: 2000 });
  const topK = h("input", { type: "number", min: 1, max: 50, value: "5" });
  const mode = select([["vector", "Vector"], ["hybrid", "Hybrid (vector and full text)"]], "vector");
  const searchAgent = select(agentOptions, "");
  const results = h("ol", { class: "hits", "aria-label": "Chunks found" });
  const searchStatus = notice();
  const search = h("button", { type: "submit" }, "Search");
  const tester = h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(search, searchStatus, async () => {
      const answer = await api("POST", "/v1/kb/search", { json: {
        query: query.value, top_k: Number(topK.value), mode: mode.value, agent_id: searchAgent.value || null,
      } });
      fill(results, answer.data.length ? answer.data.map((hit) => h("li", {},
        h("div", { class: "meta" }, `${hit.document_name} · chunk ${hit.chunk_index} · score ${hit.score.toFixed(3)}`),
        h("div", { class: "content" }, hit.content))) : h("li", { class: "empty" }, "No chunk found."));
    }, "Searching…");
  } }, h("h2", {}, "Search tester"), field("Question", query), field("Chunks", topK),
  field("Mode", mode), field("Agent", searchAgent), search, searchStatus, results);

  fill(main, h("h1", {}, "Knowledge base"), form, h("h2", {}, "Documents"), list.element, tester);
  await list.reload();
  watch();
  return () => clearTimeout(timer);
}


