// Memory: the model cache as a picture. The budget with each loaded version's share, the loaded
// versions by size (pinned, last used, serving now), and loads and evictions over the last hour.
//
// Reads GET /api/cache.

import { api } from "./api.js";
import { PALETTE, barChart } from "./chart.js";
import { ago, bytes, count, el, fill, percent, svg, table, when } from "./dom.js";

const MINUTE = 60e3;
const KINDS = [
  ["load", "loads", PALETTE[0]],
  ["evict", "evictions", PALETTE[4]],
  ["unload", "unloads (idle or asked)", "#64748b"],
  ["load_failed", "failed loads", PALETTE[1]],
];

export function mount(root) {
  const budget = el("section", { class: "panel" });
  const loaded = el("section", { class: "panel" });
  const history = el("section", { class: "panel" });
  fill(root, el("h1", {}, "Memory"), budget, loaded, history);

  async function refresh() {
    const cache = await api("GET", "/api/cache");
    drawBudget(budget, cache);
    drawLoaded(loaded, cache);
    drawHistory(history, cache);
  }
  return { refresh };
}

function label(entry) {
  return `${entry.model} v${entry.version}`;
}

function drawBudget(box, cache) {
  const width = 1000;
  let x = 0;
  const segments = cache.loaded.map((entry, i) => {
    const w = Math.max(2, (entry.bytes / Math.max(cache.budget_bytes, 1)) * width);
    const segment = svg(
      "rect",
      {
        x,
        y: 0,
        width: w,
        height: 36,
        fill: PALETTE[i % PALETTE.length],
        class: entry.pinned ? "segment pinned" : "segment",
      },
      svg("title", {}, `${label(entry)}: ${bytes(entry.bytes)}${entry.pinned ? " (pinned)" : ""}`),
    );
    x += w;
    return segment;
  });
  fill(
    box,
    el("h2", {}, "Budget"),
    el(
      "p",
      { class: "big", dataset: { memory: "used" } },
      `${bytes(cache.used_bytes)} of ${bytes(cache.budget_bytes)} used (${percent(cache.used_bytes / cache.budget_bytes)})`,
      ` · ${count(cache.loaded.length)} versions loaded`,
    ),
    svg(
      "svg",
      {
        class: "budget",
        viewBox: `0 0 ${width} 36`,
        preserveAspectRatio: "none",
        role: "img",
        "aria-label": "memory budget and the loaded versions' shares",
      },
      svg("rect", { x: 0, y: 0, width, height: 36, class: "meter-track" }),
      segments,
    ),
    el(
      "ul",
      { class: "legend" },
      cache.loaded.map((entry, i) =>
        el(
          "li",
          {},
          svg(
            "svg",
            { width: 12, height: 12, "aria-hidden": "true" },
            svg("rect", { width: 12, height: 12, fill: PALETTE[i % PALETTE.length] }),
          ),
          `${label(entry)} ${bytes(entry.bytes)}${entry.pinned ? " · pinned" : ""}`,
        ),
      ),
    ),
  );
}

function drawLoaded(box, cache) {
  const largest = Math.max(1, ...cache.loaded.map((e) => e.bytes));
  const heading = el("h2", {}, "Loaded versions by size");
  if (!cache.loaded.length) {
    fill(
      box,
      heading,
      el("p", { class: "empty" }, "Nothing is loaded: a version loads on its first request."),
    );
    return;
  }
  fill(
    box,
    heading,
    table(
      "loaded",
      ["Version", "Size", "", "Pinned", "Last used", "Loaded", "Serving now"],
      cache.loaded.map((entry, i) =>
        el(
          "tr",
          { dataset: { model: entry.model, version: entry.version } },
          el("td", {}, el("a", { href: `#/model/${encodeURIComponent(entry.model)}` }, label(entry))),
          el("td", { class: "numeric" }, bytes(entry.bytes)),
          el(
            "td",
            { class: "bar-cell" },
            svg(
              "svg",
              { class: "size-bar", viewBox: "0 0 200 12", preserveAspectRatio: "none" },
              svg("rect", {
                x: 0,
                y: 0,
                height: 12,
                width: Math.max(1, (entry.bytes / largest) * 200),
                fill: PALETTE[i % PALETTE.length],
              }),
            ),
          ),
          el("td", {}, entry.pinned ? el("span", { class: "chip" }, "pinned") : "—"),
          el("td", { title: when(entry.last_used) }, ago(entry.last_used, cache.until)),
          el("td", {}, when(entry.loaded_at)),
          el("td", { class: "numeric" }, count(entry.in_flight)),
        ),
      ),
    ),
  );
}

function drawHistory(box, cache) {
  const x1 = Date.parse(cache.until);
  const x0 = Math.floor(x1 / MINUTE) * MINUTE - 59 * MINUTE;
  const series = KINDS.map(([kind, name, color]) => {
    const perMinute = new Map();
    for (const event of cache.events.filter((e) => e.event === kind)) {
      const t = Math.floor(Date.parse(event.at) / MINUTE) * MINUTE;
      perMinute.set(t, (perMinute.get(t) || 0) + 1);
    }
    return { label: name, color, points: [...perMinute.entries()] };
  });
  const latest = cache.events.slice(-20).reverse();
  fill(
    box,
    el("h2", {}, "Loads and evictions"),
    el(
      "div",
      { class: "charts" },
      barChart({
        id: "cache-events",
        title: "Per minute, last hour",
        x0,
        x1,
        step: MINUTE,
        format: count,
        integer: true,
        series,
        empty: "no loads or unloads in the last hour",
      }),
      latest.length
        ? table(
            "compact events",
            ["When", "Event", "Version", "Detail"],
            latest.map((e) =>
              el(
                "tr",
                { dataset: { event: e.event } },
                el("td", {}, when(e.at)),
                el("td", {}, e.event),
                el("td", {}, label(e)),
                el("td", {}, e.event === "load" ? `${bytes(e.bytes)} in ${e.seconds} s` : e.reason || ""),
              ),
            ),
          )
        : el("p", { class: "empty" }, "No loads or unloads since the server started."),
    ),
  );
}
