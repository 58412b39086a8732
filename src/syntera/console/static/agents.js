// Agents: create and edit; try the agent on a test question (its answer, the sources it
// was given, tokens, timings, cost, and which model really answered); the widget key, the
// embed snippet and a live preview of the widget (the API's own demo page, in a frame).

import { api } from "./api.js";
import { busy, field, fill, h, notice } from "./ui.js";

export async function render(main, context, [agentId]) {
  const agents = (await api("GET", "/v1/agents", { query: { limit: 100 } })).data;
  const chosen = agents.find((agent) => agent.id === agentId) || null;
  fill(main, h("h1", {}, "Agents"),
    h("ul", { class: "list", "aria-label": "Agents" }, agents.length
      ? agents.map((agent) => h("li", {}, h("a", { href: `#/agents/${agent.id}`, "aria-current": agent.id === agentId ? "true" : null }, agent.name),
        ` · ${agent.model}${agent.enabled ? "" : " · disabled"}`))
      : h("li", { class: "empty" }, "No agents yet.")),
    h("p", {}, h("a", { href: "#/agents" }, "New agent")),
    agentForm(chosen),
    chosen ? tryPanel(chosen) : null,
    chosen ? widgetPanel(chosen) : null);
}

function agentForm(agent) {
  const name = h("input", { required: true, maxlength: 200, value: agent ? agent.name : "" });
  const description = h("input", { maxlength: 5000, value: agent && agent.description ? agent.description : "" });
  const prompt = h("textarea", { required: true, rows: 5, maxlength: 50000 });
  prompt.value = agent ? agent.system_prompt : "";
  const model = h("input", { required: true, maxlength: 100, value: agent ? agent.model : "gpt-4o-mini" });
  const temperature = h("input", { type: "number", min: 0, max: 2, step: "0.1", value: agent ? String(agent.temperature) : "0.7" });
  const maxTokens = h("input", { type: "number", min: 1, value: agent && agent.max_tokens ? String(agent.max_tokens) : "" });
  const enabled = h("input", { type: "checkbox", checked: agent ? agent.enabled : true });
  const status = notice();
  const save = h("button", { type: "submit" }, agent ? "Save agent" : "Create agent");
  return h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(save, status, async () => {
      const body = {
        name: name.value, description: description.value || null, system_prompt: prompt.value,
        model: model.value, temperature: temperature.value,
        max_tokens: maxTokens.value ? Number(maxTokens.value) : null, enabled: enabled.checked,
      };
      const saved = agent
        ? await api("PATCH", `/v1/agents/${agent.id}`, { json: body })
        : await api("POST", "/v1/agents", { json: body });
      status.ok(agent ? "Saved." : "Created.");
      if (!agent) location.hash = `#/agents/${saved.id}`;
    });
  } }, h("h2", {}, agent ? `Edit ${agent.name}` : "New agent"), field("Name", name),
  field("Description", description), field("System prompt", prompt), field("Model", model),
  field("Temperature", temperature), field("Max tokens", maxTokens), field("Enabled", enabled),
  save, status);
}

function tryPanel(agent) {
  const question = h("textarea", { required: true, rows: 2, maxlength: 20000 });
  const status = notice();
  const output = h("div", { class: "try-answer", "aria-live": "polite" });
  const ask = h("button", { type: "submit" }, "Ask");
  return h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(ask, status, async () => {
      fill(output);
      const answer = await api("POST", `/v1/agents/${agent.id}/preview`, { json: { question: question.value } });
      const { tokens } = answer;
      const figures = [
        `${answer.model}`,
        `${tokens.prompt} + ${tokens.completion} = ${tokens.total} tokens${tokens.counted ? " (counted here)" : ""}`,
        answer.time_to_first_token_ms === null ? null : `first token ${Math.round(answer.time_to_first_token_ms)} ms`,
        `answered in ${Math.round(answer.response_time_ms)} ms`,
        answer.cost === null ? "no price set" : `$${answer.cost}`,
      ].filter(Boolean).join(" · ");
      fill(output,
        answer.note ? h("p", { class: "notice error", role: "note" }, answer.note) : null,
        h("div", { class: "content answer" }, answer.answer || "(an empty answer)"),
        h("p", { class: "meta" }, figures),
        h("h3", {}, "Sources given to the model"),
        h("ol", { class: "hits", "aria-label": "Sources" }, answer.sources.length
          ? answer.sources.map((source) => h("li", {},
            h("div", { class: "meta" }, `[${source.number}] ${source.document_name} · score ${source.score.toFixed(3)}`),
            h("div", { class: "content" }, source.content)))
          : h("li", { class: "empty" }, "No document matched the question.")));
    }, "Asking…");
  } }, h("h2", {}, "Try it"),
  h("p", {}, "Ask a test question: the agent answers from your knowledge base, as it would a visitor (a disabled agent too)."),
  field("Question", question), ask, status, output);
}

function widgetPanel(agent) {
  const status = notice();
  const output = h("div", { class: "widget-key" });
  const create = h("button", { type: "button" }, "Create a widget key");
  create.addEventListener("click", () => busy(create, status, async () => {
    const { public_key: key } = await api("POST", `/v1/agents/${agent.id}/public-key`);
    const snippet = `<script src="${location.origin}/widget.js" data-key="${key}"></script>`;
    const code = h("textarea", { readonly: true, rows: 2 });
    code.value = snippet;
    fill(output,
      h("p", {}, "The key is shown only now; creating another replaces it."),
      field("Widget key", h("input", { readonly: true, value: key })),
      field("Embed snippet", code),
      h("h3", {}, "Preview"),
      h("iframe", { src: `/widget-demo?key=${encodeURIComponent(key)}`, title: "Widget preview", class: "preview" }));
  }, "Creating…"));
  return h("section", { class: "card" }, h("h2", {}, "Chat widget"),
    h("p", {}, "Put the widget on a website: create its key, paste the snippet."), create, status, output);
}
