// Small charts drawn as inline SVG (no chart library): a line chart over days and a bar
// chart over categories. Every chart has a title, a text alternative (a table of its
// numbers a screen reader can read) and says so when there is nothing to draw.

const NS = "http://www.w3.org/2000/svg";
const COLOURS = ["#1d4ed8", "#15803d", "#b91c1c", "#7e22ce", "#c2410c", "#0f766e"];

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** Round ``top`` up to a readable axis maximum (1, 2, 5 × 10ⁿ). */
export function niceMax(top) {
  if (!(top > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(top));
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= top);
}

function figure(title, description, chart, legend, table) {
  const holder = document.createElement("figure");
  holder.className = "svg-chart";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  holder.append(caption, chart);
  if (legend) holder.append(legend);
  if (description) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "The numbers";
    details.append(summary, table);
    holder.append(details);
  }
  return holder;
}

function numbersTable(headings, rows) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const heading of headings) {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = heading;
    head.append(cell);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const line = body.insertRow();
    for (const value of row) line.insertCell().textContent = value;
  }
  return table;
}

function legendOf(series) {
  if (series.length < 2) return null;
  const list = document.createElement("ul");
  list.className = "legend";
  series.forEach((line, index) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch c${index % COLOURS.length}`;
    swatch.setAttribute("aria-hidden", "true");
    item.append(swatch, line.label);
    list.append(item);
  });
  return list;
}

/** Lines over ``labels`` (days): ``series`` is ``[{label, values}]`` (null = no value). */
export function lineChart(title, labels, series, { format = String, width = 480, height = 220, integer = false, tick = String } = {}) {
  const empty = !labels.length || series.every((line) => line.values.every((v) => v === null || v === undefined));
  if (empty) {
    const none = document.createElement("p");
    none.className = "empty";
    none.textContent = "No data in this period.";
    return figure(title, null, none, null, null);
  }
  const left = 56;
  const right = 12;
  const top = 12;
  const bottom = 28;
  const plotWidth = width - left - right;
  const plotHeight = height - top - bottom;
  const known = series.flatMap((line) => line.values.filter((v) => v !== null && v !== undefined).map(Number));
  // Below zero only when a value is (sentiment runs from -1 to 1).
  const lowest = Math.min(0, ...known);
  const max = lowest < 0 ? Math.max(niceMax(Math.max(...known, 0)), niceMax(-lowest)) : niceMax(Math.max(...known));
  const min = lowest < 0 ? -max : 0;
  const x = (index) => left + (labels.length === 1 ? plotWidth / 2 : (plotWidth * index) / (labels.length - 1));
  const y = (value) => top + (plotHeight * (max - value)) / (max - min);
  // Whole numbers (counts, ratings) get whole ticks: 0..max in 1 to 5 even steps.
  const steps = !integer ? 4 : max <= 5 ? max : max % 4 === 0 ? 4 : 5;
  const grid = Array.from({ length: steps + 1 }, (_, at) => min + ((max - min) * at) / steps).map((value) => [
    svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid" }),
    svg("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end", class: "tick" }, format(value)),
  ]);
  const every = Math.max(1, Math.ceil(labels.length / 4));
  const last = labels.length - 1;
  const ticks = labels.map((label, index) => ((index % every === 0 && last - index >= every / 2) || index === last
    ? svg("text", {
      x: x(index), y: height - 8, class: "tick",
      "text-anchor": labels.length > 1 && index === 0 ? "start" : labels.length > 1 && index === labels.length - 1 ? "end" : "middle",
    }, tick(label)) : null));
  const lines = series.map((line, index) => {
    const points = line.values.map((value, at) => (value === null || value === undefined ? null : [x(at), y(Number(value)), value, at]))
      .filter(Boolean);
    const path = points.map(([px, py], at) => `${at ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
    return svg("g", { class: `series c${index % COLOURS.length}` },
      svg("path", { d: path, fill: "none", stroke: COLOURS[index % COLOURS.length], "stroke-width": 2 }),
      points.map(([px, py, value, at]) => svg("circle", { cx: px, cy: py, r: 3, fill: COLOURS[index % COLOURS.length] },
        svg("title", {}, `${line.label}, ${labels[at]}: ${format(value)}`))));
  });
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart-svg", preserveAspectRatio: "xMidYMid meet" },
    svg("title", {}, title), grid, ticks, lines);
  const rows = labels.map((label, at) => [label, ...series.map((line) => {
    const value = line.values[at];
    return value === null || value === undefined ? "—" : format(value);
  })]);
  return figure(title, true, chart, legendOf(series), numbersTable(["Day", ...series.map((line) => line.label)], rows));
}

/** Horizontal bars: ``rows`` is ``[{label, value}]``. */
export function barChart(title, rows, { format = String, width = 480 } = {}) {
  const shown = rows.filter((row) => row.value !== null && row.value !== undefined);
  if (!shown.length) {
    const none = document.createElement("p");
    none.className = "empty";
    none.textContent = "No data in this period.";
    return figure(title, null, none, null, null);
  }
  const band = 26;
  const labelWidth = 130;
  const valueWidth = 70;
  const height = band * shown.length + 8;
  const max = niceMax(Math.max(...shown.map((row) => Number(row.value))));
  const barWidth = width - labelWidth - valueWidth;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart-svg" },
    svg("title", {}, title),
    shown.map((row, index) => {
      const length = Math.max(1, (barWidth * Number(row.value)) / max);
      const middle = index * band + band / 2 + 4;
      return svg("g", {},
        svg("text", { x: labelWidth - 8, y: middle + 4, "text-anchor": "end", class: "tick" }, String(row.label).slice(0, 24)),
        svg("rect", { x: labelWidth, y: middle - 8, width: length, height: 16, rx: 3, fill: COLOURS[0] },
          svg("title", {}, `${row.label}: ${format(row.value)}`)),
        svg("text", { x: labelWidth + length + 6, y: middle + 4, class: "tick" }, format(row.value)));
    }));
  return figure(title, true, chart, null, numbersTable(["", "Value"], shown.map((row) => [row.label, format(row.value)])));
}
