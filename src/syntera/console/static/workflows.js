// Workflows: the list, enabling and disabling, and each execution's steps.

import { api } from "./api.js";
import { busy, fill, h, notice, pagedList, table, when } from "./ui.js";

export async function render(main, context, [workflowId]) {
  const status = notice();
  const list = pagedList(
    (cursor) => api("GET", "/v1/workflows", { query: { limit: 20, cursor } }),
    (workflow) => workflowRow(workflow, status),
    { label: "Workflows", empty: "No workflows yet (create them through /v1/workflows)." },
  );
  fill(main, h("h1", {}, "Workflows"), status, list.element);
  await list.reload();
  if (workflowId) main.append(await executions(workflowId));
}

function workflowRow(workflow, status) {
  const toggle = h("button", { type: "button" }, workflow.enabled ? "Disable" : "Enable");
  const row = h("li", {}, h("a", { href: `#/workflows/${workflow.id}` }, workflow.name),
    ` · on ${workflow.trigger_type} · `, h("span", { class: "state" }, workflow.enabled ? "enabled" : "disabled"), " ", toggle);
  toggle.addEventListener("click", () => busy(toggle, status, async () => {
    const saved = await api("POST", `/v1/workflows/${workflow.id}/${workflow.enabled ? "disable" : "enable"}`);
    row.replaceWith(workflowRow(saved, status));
    status.ok(`${saved.name} is ${saved.enabled ? "enabled" : "disabled"}.`);
  }));
  return row;
}

async function executions(workflowId) {
  const workflow = await api("GET", `/v1/workflows/${workflowId}`);
  const list = pagedList(
    (cursor) => api("GET", `/v1/workflows/${workflowId}/executions`, { query: { limit: 20, cursor } }),
    (execution) => h("li", { class: `execution ${execution.status}` },
      h("strong", {}, execution.status), ` · ${execution.triggered_by} · ${when(execution.started_at || execution.created_at)}`,
      execution.error ? h("p", { class: "notice error" }, `Error: ${execution.error}`) : null,
      table([
        ["Step", (step) => step.node_id],
        ["Type", (step) => step.type],
        ["Result", (step) => step.status],
        ["Details", (step) => (step.result === undefined ? "" : JSON.stringify(step.result))],
        ["Time", (step) => (step.ms === undefined ? "" : `${step.ms} ms`)],
      ], execution.steps, { caption: "Steps", empty: "No step ran yet." })),
    { label: "Executions", empty: "Not run yet." },
  );
  const section = h("section", { class: "card" }, h("h2", {}, `Executions of ${workflow.name}`), list.element);
  await list.reload();
  return section;
}
