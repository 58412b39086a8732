// Reports on the agents' work (GET /v1/reports/agents): per day and per agent —
// conversations, first response and resolution times (median and p90), hand-off rate, the
// share resolved by the agent alone, tokens and cost per conversation, sentiment at the
// start and the end, and the visitors' ratings. Charts are inline SVG (svg.js).

import { api, ApiError } from "./api.js";
import { field, fill, h, number, select, table } from "./ui.js";
import { barChart, lineChart } from "./svg.js";

const DAY_MS = 86_400_000;
const dayName = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
const shortDay = (day) => dayName.format(new Date(`${day}T00:00:00Z`));

const seconds = (ms) => {
  if (ms === null || ms === undefined) return "—";
  return Number(ms) < 1000 ? `${number(ms)} ms` : `${number(Number(ms) / 1000, 1)} s`;
};
const percent = (share) => (share === null || share === undefined ? "—" : `${number(Number(share) * 100, 0)}%`);
const money = (dollars) => (dollars === null || dollars === undefined ? "—" : `$${number(dollars, 4)}`);
const score = (value) => {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") { // {average|score, label} by some servers
    const inner = value.average ?? value.score ?? null;
    return [inner === null ? null : number(inner, 2), value.label].filter(Boolean).join(" ") || "—";
  }
  return number(value, 2);
};
const pick = (object, key) => (object && object[key] !== undefined ? object[key] : null);

/** Conversations-weighted mean of ``value(row)`` over ``rows`` (null when none has one). */
function weighted(rows, value) {
  let total = 0;
  let weight = 0;
  for (const row of rows) {
    const amount = value(row);
    if (amount === null || amount === undefined) continue;
    total += Number(amount) * (row.conversations || 0);
    weight += row.conversations || 0;
  }
  return weight ? total / weight : null;
}

/** The days from ``first`` to ``last`` (YYYY-MM-DD, UTC), or those of the rows when the
 * answer does not say. */
function everyDay(first, last, rows) {
  if (!first || !last) return [...new Set(rows.map((row) => row.day))].sort();
  const days = [];
  for (let at = Date.parse(`${first}T00:00:00Z`); at <= Date.parse(`${last}T00:00:00Z`) && days.length < 400; at += DAY_MS) {
    days.push(new Date(at).toISOString().slice(0, 10));
  }
  return days;
}

export async function render(main) {
  const period = select([["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"]], "30");
  const agents = await api("GET", "/v1/agents", { query: { limit: 100 } });
  const agent = select([["", "Every agent"], ...agents.data.map((a) => [a.id, a.name])], "");
  const body = h("div", { class: "reports", "aria-live": "polite" });

  async function draw() {
    const to = new Date();
    const from = new Date(to.getTime() - Number(period.value) * DAY_MS);
    fill(body, h("p", { role: "status" }, "Loading…"));
    let answer;
    try {
      answer = await api("GET", "/v1/reports/agents", {
        query: { from: from.toISOString().slice(0, 10), to: to.toISOString().slice(0, 10), agent_id: agent.value },
      });
    } catch (error) {
      const words = error instanceof ApiError && error.status === 404
        ? "Reports on the agents are not available on this server." : error.message;
      fill(body, h("p", { class: "notice error", role: "alert" }, words));
      return;
    }
    const rows = answer.rows || [];
    const days = everyDay(answer.from_day, answer.to_day, rows);
    const names = new Map(rows.map((row) => [row.agent_id, row.agent_name || "Agent"]));
    const byAgent = [...names.keys()];
    // A day without a row had no conversation: 0 conversations, no other figure.
    const perDay = (value, none = null) => byAgent.map((id) => ({
      label: names.get(id),
      values: days.map((day) => {
        const row = rows.find((r) => r.day === day && r.agent_id === id);
        return row ? value(row) : none;
      }),
    }));
    const total = rows.reduce((sum, row) => sum + (row.conversations || 0), 0);
    const ratings = rows.reduce((sum, row) => sum + (pick(row.satisfaction, "count") || 0), 0);
    const ratingMean = ratings
      ? rows.reduce((sum, row) => sum + (pick(row.satisfaction, "average") || 0) * (pick(row.satisfaction, "count") || 0), 0) / ratings
      : null;
    const agentTotals = byAgent.map((id) => {
      const mine = rows.filter((row) => row.agent_id === id);
      return {
        label: names.get(id),
        conversations: mine.reduce((sum, row) => sum + (row.conversations || 0), 0),
        resolved: weighted(mine, (row) => row.resolved_by_agent_rate),
      };
    });
    const definitions = answer.definitions || {};
    fill(body,
      h("dl", { class: "figures" },
        h("dt", {}, "Conversations"), h("dd", {}, number(total)),
        h("dt", {}, "Hand-off rate"), h("dd", {}, percent(weighted(rows, (row) => row.handoff_rate))),
        h("dt", {}, "Resolved by the agent alone"), h("dd", {}, percent(weighted(rows, (row) => row.resolved_by_agent_rate))),
        h("dt", {}, "Satisfaction"), h("dd", {}, ratings ? `${number(ratingMean, 2)} / 5 (${number(ratings)} ratings)` : "No rating yet")),
      h("div", { class: "chart-grid" },
        lineChart("Conversations per day", days, perDay((row) => row.conversations, 0), { format: (v) => number(v), integer: true, tick: shortDay }),
        lineChart("First response time, median", days, perDay((row) => pick(row.first_response_ms, "p50")), { format: seconds, tick: shortDay }),
        lineChart("Resolution time, median", days, perDay((row) => pick(row.resolution_ms, "p50")), { format: seconds, tick: shortDay }),
        lineChart("Hand-off rate", days, perDay((row) => row.handoff_rate), { format: percent, tick: shortDay }),
        lineChart("Satisfaction (average rating)", days, perDay((row) => pick(row.satisfaction, "average")), { format: score, integer: true, tick: shortDay }),
        lineChart("Visitors' sentiment, start and end (−1 to 1)", days, ["start", "end"].map((end) => ({
          label: `at the ${end}`,
          values: days.map((day) => weighted(rows.filter((row) => row.day === day), (row) => row[`sentiment_${end}`])),
        })), { format: score, tick: shortDay }),
        barChart("Conversations per agent", agentTotals.map((a) => ({ label: a.label, value: a.conversations })), { format: (v) => number(v) })),
      table([
        ["Day", (row) => row.day], ["Agent", (row) => row.agent_name || "Agent"],
        ["Conversations", (row) => number(row.conversations)],
        ["First response p50 / p90", (row) => `${seconds(pick(row.first_response_ms, "p50"))} / ${seconds(pick(row.first_response_ms, "p90"))}`],
        ["Resolution p50 / p90", (row) => `${seconds(pick(row.resolution_ms, "p50"))} / ${seconds(pick(row.resolution_ms, "p90"))}`],
        ["Hand-off rate", (row) => percent(row.handoff_rate)],
        ["Resolved by the agent", (row) => percent(row.resolved_by_agent_rate)],
        ["Tokens / conversation", (row) => number(row.tokens_per_conversation)],
        ["Cost / conversation", (row) => money(row.cost_per_conversation)],
        ["Sentiment start → end", (row) => `${score(row.sentiment_start)} → ${score(row.sentiment_end)}`],
        ["Rating", (row) => (pick(row.satisfaction, "count") ? `${score(row.satisfaction.average)} (${row.satisfaction.count})` : "—")],
      ], [...rows].sort((a, b) => b.day.localeCompare(a.day)), { caption: "Per day and agent", empty: "No conversation in this period." }),
      Object.keys(definitions).length ? h("section", { class: "definitions" }, h("h2", {}, "How each figure is measured"),
        h("dl", {}, Object.entries(definitions).map(([name, text]) => [h("dt", {}, name), h("dd", {}, typeof text === "string" ? text : JSON.stringify(text))]))) : null);
  }
  const redraw = () => draw().catch((error) => fill(body, h("p", { class: "notice error", role: "alert" }, error.message)));
  period.addEventListener("change", redraw);
  agent.addEventListener("change", redraw);
  fill(main, h("h1", {}, "Reports"), h("div", { class: "filters" }, field("Period", period), field("Agent", agent)), body);
  await draw();
}
