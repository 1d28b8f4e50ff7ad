// Memory: the model cache as a picture. The budget with each loaded version's share (and, when
// models run on a GPU, the device budget with theirs), the loaded versions by size (pinned, last
// used, serving now), and loads and evictions over the last hour.
// Each part is drawn again only when what it shows changed, so a tooltip being read stays.
//
// Reads GET /api/cache: its per-minute counts for the chart, its latest events for the list; and
// GET /api/replicas: every server sharing the registry, what each holds of its budget.

import { api } from "./api.js";
import { MINUTE, PALETTE, barChart } from "./chart.js";
import { ago, bytes, count, el, empty, fill, modelLink, percent, redraw, svg, table, when } from "./dom.js";

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
  const fleet = el("section", { class: "panel" });
  fill(root, el("h1", {}, "Memory"), budget, loaded, history, fleet);

  async function refresh() {
    const [cache, replicas] = await Promise.all([api("GET", "/api/cache"), api("GET", "/api/replicas")]);
    const held = replicas.map((r) => [r.id, r.used_bytes, r.budget_bytes, r.versions.length]);
    redraw(fleet, held, () => drawReplicas(fleet, replicas));
    const shares = cache.loaded.map((e) => [e.model, e.version, e.bytes, e.device_bytes, e.pinned]);
    redraw(budget, [cache.budget_bytes, cache.used_bytes, shares, cache.device], () => drawBudget(budget, cache));
    const rows = cache.loaded.map((entry) => ({ ...entry, ago: ago(entry.last_used, cache.until) }));
    redraw(loaded, rows, () => drawLoaded(loaded, rows));
    const hour = lastHour(cache);
    redraw(history, hour, () => drawHistory(history, hour));
  }
  return { refresh };
}

function label(entry) {
  return `${entry.model} v${entry.version}`;
}

function drawBudget(box, cache) {
  const device = cache.device;
  fill(
    box,
    el("h2", {}, "Budget"),
    meter("used", "memory budget", cache.loaded, (e) => e.bytes, cache.used_bytes, cache.budget_bytes),
    device
      ? [
          el("h2", {}, `Device memory: ${device.device} (${device.name})`),
          meter(
            "device",
            "device memory budget",
            cache.loaded.filter((e) => e.device_bytes > 0),
            (e) => e.device_bytes,
            device.used_bytes,
            device.budget_bytes,
          ),
          el(
            "p",
            { class: "hint", dataset: { memory: "device-process" } },
            `The process holds ${bytes(device.process_bytes)} on the device: the models' share, ` +
              `the server's own ${bytes(device.context_bytes)} (CUDA context, frameworks' first use) ` +
              "and what frameworks keep cached.",
          ),
        ]
      : [],
  );
}

// One budget as a bar: each entry's share (sizeOf) of it, and a legend.
function meter(name, what, entries, sizeOf, used, budget) {
  const width = 1000;
  let x = 0;
  const segments = entries.map((entry, i) => {
    const w = Math.max(2, (sizeOf(entry) / Math.max(budget, 1)) * width);
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
      svg("title", {}, `${label(entry)}: ${bytes(sizeOf(entry))}${entry.pinned ? " (pinned)" : ""}`),
    );
    x += w;
    return segment;
  });
  return [
    el(
      "p",
      { class: "big", dataset: { memory: name } },
      `${bytes(used)} of ${bytes(budget)} used (${percent(used / budget)})`,
      ` · ${count(entries.length)} versions loaded`,
    ),
    svg(
      "svg",
      {
        class: "budget",
        viewBox: `0 0 ${width} 36`,
        preserveAspectRatio: "none",
        role: "img",
        "aria-label": `${what} and the loaded versions' shares`,
      },
      svg("rect", { x: 0, y: 0, width, height: 36, class: "meter-track" }),
      segments,
    ),
    el(
      "ul",
      { class: "legend" },
      entries.map((entry, i) =>
        el(
          "li",
          {},
          svg(
            "svg",
            { width: 12, height: 12, "aria-hidden": "true" },
            svg("rect", { width: 12, height: 12, fill: PALETTE[i % PALETTE.length] }),
          ),
          `${label(entry)} ${bytes(sizeOf(entry))}${entry.pinned ? " · pinned" : ""}`,
        ),
      ),
    ),
  ];
}

// Every replica sharing the registry: its address, its share of its budget, the versions it holds.
function drawReplicas(box, replicas) {
  fill(
    box,
    el("h2", {}, "Replicas"),
    table(
      "replicas",
      ["Replica", "Address", "Holds", "Of its budget", "Versions"],
      replicas.map((r) =>
        el(
          "tr",
          { dataset: { replica: r.id } },
          el("td", {}, r.this ? `${r.id} (this one)` : r.id),
          el("td", {}, r.address),
          el("td", { class: "numeric" }, `${bytes(r.used_bytes)} of ${bytes(r.budget_bytes)}`),
          el("td", { class: "numeric" }, percent(r.used_bytes / Math.max(r.budget_bytes, 1))),
          el(
            "td",
            {},
            r.versions.length
              ? r.versions.map((v) => modelLink(v.model, `${v.model} v${v.version} `))
              : "—",
          ),
        ),
      ),
    ),
  );
}

// rows: the loaded versions, each with how long ago it was last used.
function drawLoaded(box, rows) {
  const largest = Math.max(1, ...rows.map((e) => e.bytes));
  const heading = el("h2", {}, "Loaded versions by size");
  if (!rows.length) {
    fill(
      box,
      heading,
      empty("Nothing is loaded: a version loads on its first request."),
    );
    return;
  }
  fill(
    box,
    heading,
    table(
      "loaded",
      ["Version", "Size", "", "On the device", "Pinned", "Last used", "Loaded", "Serving now"],
      rows.map((entry, i) =>
        el(
          "tr",
          { dataset: { model: entry.model, version: entry.version } },
          el("td", {}, modelLink(entry.model, label(entry))),
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
          el("td", { class: "numeric", dataset: { column: "device" } }, entry.device_bytes ? bytes(entry.device_bytes) : "—"),
          el("td", {}, entry.pinned ? el("span", { class: "chip" }, "pinned") : "—"),
          el("td", { title: when(entry.last_used) }, entry.ago),
          el("td", {}, when(entry.loaded_at)),
          el("td", { class: "numeric" }, count(entry.in_flight)),
        ),
      ),
    ),
  );
}

// The chart's hour (the current minute and the 59 before it) with the server's count of each kind
// in each minute, and the latest events for the list.
function lastHour(cache) {
  const x0 = Math.floor(Date.parse(cache.until) / MINUTE) * MINUTE - 59 * MINUTE;
  const series = KINDS.map(([kind, name, color]) => ({
    label: name,
    color,
    points: cache.per_minute.filter((m) => m[kind] > 0).map((m) => [Date.parse(m.start), m[kind]]),
  }));
  return { x0, series, latest: cache.events.slice(-20).reverse() };
}

function drawHistory(box, { x0, series, latest }) {
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
        x1: x0 + 60 * MINUTE,
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
        : empty("No loads or unloads since the server started."),
    ),
  );
}
