// Building blocks of the pages. Text from the server is always set as text, never as
// HTML: a customer's message cannot become markup.

let nextId = 0;

/** An element: ``h("button", {class: "x", onclick: f}, "Save")``. Attributes starting with
 * ``on`` become listeners; ``null`` and ``false`` children are skipped. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "style") {
      Object.assign(element.style, value); // CSSOM: the page's CSP refuses style attributes
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name in element && typeof value !== "string") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : value);
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A labelled control: the label names it for screen readers and tests alike. */
export function field(label, control, hint) {
  const id = control.id || `f${(nextId += 1)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("small", {}, hint) : null);
}

export function select(options, value, attributes = {}) {
  return h("select", attributes, options.map(([optionValue, text]) =>
    h("option", { value: optionValue, selected: optionValue === value }, text)));
}

/** A region that says what went wrong (or right), in words, to everyone. */
export function notice() {
  const element = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  element.error = (error) => {
    element.className = "notice error";
    element.setAttribute("role", "alert");
    element.textContent = error instanceof Error ? error.message : String(error);
  };
  element.ok = (text) => {
    element.className = "notice ok";
    element.setAttribute("role", "status");
    element.textContent = text;
  };
  element.clear = () => { element.className = "notice"; element.textContent = ""; };
  return element;
}

/** Run ``work`` with ``button`` disabled and showing ``busy``; errors go to ``status``. */
export async function busy(button, status, work, busyText = "Working…") {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = busyText;
  status.clear();
  try {
    return await work();
  } catch (error) {
    status.error(error);
    return undefined;
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

/** A paged list: ``load(cursor)`` gives ``{data, next_cursor}``; ``render(row)`` an element.
 * Returns ``{element, reload, prepend, items}``. */
export function pagedList(load, render, { empty = "Nothing here yet.", label, tag = "ul" } = {}) {
  const items = h(tag, { class: "list", "aria-label": label });
  const status = notice();
  const more = h("button", { class: "more", type: "button", hidden: true }, "Load more");
  let cursor = null;
  let generation = 0;

  async function page(first) {
    const mine = (generation += first ? 1 : 0);
    more.disabled = true;
    status.clear();
    try {
      const answer = await load(first ? null : cursor);
      if (mine !== generation) return;
      if (first) items.replaceChildren();
      for (const row of answer.data) items.append(render(row));
      cursor = answer.next_cursor;
      more.hidden = !cursor;
      if (first && answer.data.length === 0) items.append(h("li", { class: "empty" }, empty));
    } catch (error) {
      status.error(error);
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener("click", () => page(false));
  const element = h("div", { class: "paged" }, items, status, more);
  return {
    element,
    items,
    reload: () => page(true),
    prepend(row) {
      const emptyRow = items.querySelector(".empty");
      if (emptyRow) emptyRow.remove();
      items.prepend(render(row));
    },
  };
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/**
 * A timestamp's instant in milliseconds, for ordering: the API writes a whole second
 * without its fraction ("…:17Z" beside "…:17.250Z"), so the texts do not sort as times.
 */
export function instant(text) {
  const time = Date.parse(text);
  return Number.isNaN(time) ? 0 : time;
}

export function when(text) {
  return text ? dateTime.format(new Date(text)) : "—";
}

export function bytes(count) {
  if (count === null || count === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(count);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export function number(value, digits = 0) {
  if (value === null || value === undefined) return "—";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

/** A table from rows: ``columns`` is ``[[heading, row => cell], …]``; ``pageSize`` rows at a
 * time, with a button for the next ones. */
export function table(columns, rows, { caption, empty = "None.", pageSize = 20 } = {}) {
  const body = h("tbody");
  const more = h("button", { type: "button", class: "more", hidden: true });
  let shown = 0;
  const showMore = () => {
    for (const row of rows.slice(shown, shown + pageSize)) {
      body.append(h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))));
    }
    shown = Math.min(rows.length, shown + pageSize);
    more.hidden = shown >= rows.length;
    more.textContent = `Show ${Math.min(pageSize, rows.length - shown)} more of ${rows.length - shown}`;
  };
  more.addEventListener("click", showMore);
  if (rows.length) showMore();
  else body.append(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty)));
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", { scope: "col" }, heading)))),
    body), more);
}

/** Horizontal bars for a few categories (a chart where a number alone reads worse). */
export function bars(rows, { label, value, format = number, title }) {
  const largest = Math.max(1, ...rows.map((row) => Number(value(row)) || 0));
  return h("figure", { class: "bars" }, title ? h("figcaption", {}, title) : null,
    rows.length ? rows.map((row) => {
      const amount = Number(value(row)) || 0;
      return h("div", { class: "bar-row" },
        h("span", { class: "bar-label" }, label(row)),
        h("span", { class: "bar", role: "img", "aria-label": `${label(row)}: ${format(amount)}` },
          h("span", { class: "bar-fill", style: { width: `${(100 * amount) / largest}%` } })),
        h("span", { class: "bar-value" }, format(amount)));
    }) : h("p", { class: "empty" }, "No data in this period."));
}

/** A time series drawn by uPlot (vendored: static/vendor/uplot). */
export function lineChart(title, times, series, { height = 220 } = {}) {
  const holder = h("figure", { class: "chart" }, h("figcaption", {}, title));
  const plot = h("div", { class: "plot", role: "img", "aria-label": title });
  holder.append(plot);
  if (!times.length) {
    plot.append(h("p", { class: "empty" }, "No data in this period."));
    return holder;
  }
  const colours = ["#2563eb", "#16a34a", "#dc2626", "#9333ea"];
  requestAnimationFrame(() => {
    const width = Math.max(280, Math.min(plot.clientWidth || 600, 900));
    // eslint-disable-next-line no-undef
    new uPlot({
      width,
      height,
      series: [{}, ...series.map((line, index) => ({
        label: line.label, stroke: colours[index % colours.length], width: 2,
        points: { show: times.length < 40 },
      }))],
      axes: [{}, { size: 60 }],
    }, [times, ...series.map((line) => line.values)], plot);
  });
  return holder;
}
