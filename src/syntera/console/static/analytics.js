// Analytics: conversations per day and per channel, average duration, response times
// and tokens per model, over a period (/v1/analytics/conversations).

import { api } from "./api.js";
import { fill, h, bars, field, lineChart, number, select, table } from "./ui.js";

export async function render(main) {
  const period = select([["7", "Last 7 days"], ["30", "Last 30 days"], ["90", "Last 90 days"]], "30");
  const body = h("div", { class: "analytics" });
  async function draw() {
    const since = new Date(Date.now() - Number(period.value) * 86_400_000).toISOString();
    fill(body, h("p", { role: "status" }, "Loading…"));
    const [byDay, byChannel] = await Promise.all([
      api("GET", "/v1/analytics/conversations", { query: { since, group_by: "day" } }),
      api("GET", "/v1/analytics/conversations", { query: { since, group_by: "channel" } }),
    ]);
    const days = [...byDay.groups].sort((a, b) => a.key.localeCompare(b.key));
    const times = days.map((day) => Date.parse(`${day.key}T00:00:00Z`) / 1000);
    const total = byChannel.groups.reduce((sum, group) => sum + group.conversations, 0);
    const ended = byChannel.groups.filter((group) => group.average_duration_s !== null);
    const weighted = ended.reduce((sum, g) => sum + g.average_duration_s * g.conversations, 0);
    const endedCount = ended.reduce((sum, g) => sum + g.conversations, 0);
    const ai = byDay.messages.find((sender) => sender.sender_type === "agent");
    fill(body,
      h("dl", { class: "figures" },
        h("dt", {}, "Conversations"), h("dd", {}, number(total)),
        h("dt", {}, "Average duration"), h("dd", {}, endedCount ? `${number(weighted / endedCount, 1)} s` : "—"),
        h("dt", {}, "Average AI response time"), h("dd", {}, ai && ai.average_response_time_ms !== null ? `${number(ai.average_response_time_ms)} ms` : "—")),
      lineChart("Conversations per day", times, [{ label: "conversations", values: days.map((d) => d.conversations) }]),
      bars(byChannel.groups, { title: "Conversations per channel", label: (g) => g.key, value: (g) => g.conversations }),
      bars(byDay.models, { title: "Tokens per model", label: (m) => m.model, value: (m) => m.tokens_used }),
      table([
        ["Sender", (s) => s.sender_type], ["Messages", (s) => number(s.messages)],
        ["Average response time", (s) => (s.average_response_time_ms === null ? "—" : `${number(s.average_response_time_ms)} ms`)],
      ], byDay.messages, { caption: "Messages per sender" }),
      table([
        ["Model", (m) => m.model], ["Messages", (m) => number(m.messages)], ["Tokens", (m) => number(m.tokens_used)],
        ["Average response time", (m) => (m.average_response_time_ms === null ? "—" : `${number(m.average_response_time_ms)} ms`)],
      ], byDay.models, { caption: "Models" }));
  }
  period.addEventListener("change", () => draw().catch((error) => fill(body, h("p", { class: "notice error", role: "alert" }, error.message))));
  fill(main, h("h1", {}, "Analytics"), field("Period", period), body);
  await draw();
}
