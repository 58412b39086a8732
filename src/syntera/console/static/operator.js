// The operator's pages: database health as the seed lists it (pools, connection errors
// and timeouts, slow statements with their plans, index use, sizes and growth), the work
// queues, purges and the backups on disk. Figures about the platform and companies only.

import { api } from "./api.js";
import { bars, busy, bytes, fill, h, lineChart, notice, number, table, when } from "./ui.js";

export async function render(main) {
  const body = h("div", { class: "operator" });
  const status = notice();
  const refresh = h("button", { type: "button" }, "Refresh");
  refresh.addEventListener("click", () => busy(refresh, status, () => draw(body), "Refreshing…"));
  fill(main, h("h1", {}, "Operator"), h("p", {}, refresh), status, body);
  await draw(body);
}

async function draw(body) {
  fill(body, h("p", { role: "status" }, "Reading the stores' statistics…"));
  const [db, queues, purges, backups, sizes] = await Promise.all([
    api("GET", "/v1/admin/db"), api("GET", "/v1/admin/queues"), api("GET", "/v1/admin/purges"),
    api("GET", "/v1/admin/backups"), api("GET", "/v1/admin/sizes"),
  ]);
  const { postgres, mongodb } = db;
  const pool = postgres.pool;
  fill(body,
    h("section", { class: "card", "aria-labelledby": "pools" }, h("h2", { id: "pools" }, "Connections"),
      h("dl", { class: "figures pool" },
        h("dt", {}, "PostgreSQL pool in use"), h("dd", {}, `${pool.in_use} of ${pool.max}`),
        h("dt", {}, "Idle"), h("dd", {}, number(pool.idle)),
        h("dt", {}, "Waiting"), h("dd", {}, number(pool.waiting)),
        h("dt", {}, "Timeouts"), h("dd", {}, number(pool.timeouts)),
        h("dt", {}, "Connection errors"), h("dd", {}, number(pool.connection_errors)),
        h("dt", {}, "Connections lost"), h("dd", {}, number(pool.connections_lost)),
        h("dt", {}, "MongoDB pool in use"), h("dd", {}, `${mongodb.pool.in_use} of ${mongodb.pool.max} (${mongodb.pool.open} open)`),
        h("dt", {}, "MongoDB check-out failures"), h("dd", {}, number(mongodb.pool.check_out_failures)),
        h("dt", {}, "PostgreSQL server connections"), h("dd", {}, `${postgres.connections.reduce((s, c) => s + c.total, 0)} of ${postgres.max_connections}`)),
      h("p", {}, "Pool figures are this API process's."),
      table([["Application", (c) => c.application], ["Active", (c) => c.active], ["Idle", (c) => c.idle],
        ["Idle in transaction", (c) => c.idle_in_transaction], ["Total", (c) => c.total]],
      postgres.connections, { caption: "PostgreSQL connections by application" })),
    h("section", { class: "card", "aria-labelledby": "slow" }, h("h2", { id: "slow" }, `Slow statements (${number(postgres.slow_threshold_ms)} ms or more)`),
      postgres.slow_statements.length
        ? h("ol", { class: "slow", "aria-label": "Slow statements" }, postgres.slow_statements.map((s) => h("li", {},
          h("code", {}, s.query), h("p", {}, `${number(s.calls)} calls · mean ${number(s.mean_ms, 1)} ms · max ${number(s.max_ms, 1)} ms`),
          h("details", {}, h("summary", {}, "Plan"), h("pre", {}, s.plan || "No plan: not a plannable statement.")))))
        : h("p", { class: "empty" }, postgres.slowest_statements_unavailable || "No statement has been that slow.")),
    h("section", { class: "card", "aria-labelledby": "queues" }, h("h2", { id: "queues" }, "Queues"),
      table([["Queue", (q) => q.queue], ["State", (q) => q.state], ["Jobs", (q) => number(q.jobs)],
        ["Oldest waiting", (q) => when(q.oldest_waiting)]], queues.data, { caption: "Jobs per state", empty: "No jobs." })),
    h("section", { class: "card", "aria-labelledby": "sizes" }, h("h2", { id: "sizes" }, "Sizes and growth"),
      sizeChart(sizes),
      bars(postgres.tables.slice(0, 12), { title: "Largest PostgreSQL tables", label: (t) => `${t.schema}.${t.table}`, value: (t) => t.total_bytes, format: bytes }),
      table([["Table", (t) => t.name], ["Size", (t) => bytes(t.bytes)], ["Rows (estimate)", (t) => number(t.rows_estimate)],
        ["Growth", (t) => (t.bytes_then === null ? "—" : `${t.bytes >= t.bytes_then ? "+" : ""}${bytes(t.bytes - t.bytes_then)} since ${when(t.since)}`)]],
      sizes.tables, { caption: "PostgreSQL tables" }),
      table([["Collection", (c) => c.collection], ["Documents", (c) => number(c.documents)], ["Data", (c) => bytes(c.bytes)],
        ["Storage", (c) => bytes(c.storage_bytes)], ["Indexes", (c) => bytes(c.index_bytes)]],
      mongodb.collections, { caption: "MongoDB collections" })),
    h("section", { class: "card", "aria-labelledby": "indexes" }, h("h2", { id: "indexes" }, "Index usage"),
      table([["Index", (i) => `${i.schema}.${i.index}`], ["Table", (i) => i.table], ["Scans", (i) => number(i.scans)],
        ["Size", (i) => bytes(i.bytes)], ["", (i) => (i.never_used ? h("span", { class: "flag" }, "unused") : "")]],
      postgres.indexes, { caption: "PostgreSQL indexes, least used first" })),
    h("section", { class: "card", "aria-labelledby": "purges" }, h("h2", { id: "purges" }, "Purges"),
      table([["Kind", (p) => p.kind], ["Company", (p) => p.company_id], ["State", (p) => p.status],
        ["Stores done", (p) => Object.keys(p.steps || {}).join(", ") || "—"], ["Attempts", (p) => p.attempts],
        ["Asked", (p) => when(p.created_at)], ["Finished", (p) => when(p.finished_at)], ["Last error", (p) => p.last_error || ""]],
      purges.data, { caption: "Latest purges", empty: "No purges yet." })),
    h("section", { class: "card", "aria-labelledby": "backups" }, h("h2", { id: "backups" }, "Backups"),
      h("p", {}, `In ${backups.folder}`),
      table([["Archive", (b) => b.name], ["Size", (b) => bytes(b.bytes)], ["Made", (b) => when(b.modified_at)]],
        backups.data, { empty: "No backups in this folder: `syntera backup --schedule --output FOLDER` makes them." })));
}

function sizeChart(sizes) {
  const stores = ["postgres", "mongodb"];
  const at = [...new Set(sizes.totals.map((row) => row.at))].sort();
  const value = (store, time) => {
    const row = sizes.totals.find((r) => r.store === store && r.at === time);
    return row ? Number(row.bytes) / 1048576 : null;
  };
  return lineChart(`Store sizes (MiB), sampled every ${number(sizes.sample_every_s / 60)} min`,
    at.map((time) => Date.parse(time) / 1000),
    stores.map((store) => ({ label: store, values: at.map((time) => value(store, time)) })));
}
