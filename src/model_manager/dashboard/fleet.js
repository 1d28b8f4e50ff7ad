// Fleet: every model with its production, canary and shadow versions, health (reasons on hover),
// requests and errors of the last hour and day, p99, what is loaded, memory and storage; totals
// on top. Sortable by any column, filterable by name and by state.
//
// Reads GET /api/report (the governance report: versions, routes, state, sizes, health) and
// GET /api/usage/recent (this server's last hour and day).

import { api } from "./api.js";
import {
  HEALTH_ORDER,
  badge,
  bytes,
  count,
  el,
  fill,
  meter,
  modelLink,
  ms,
  redraw,
  versionReasons,
  worst,
} from "./dom.js";

const FILTERS = {
  all: ["All models", () => true],
  attention: ["Unhealthy or degraded", (row) => row.health === "unhealthy" || row.health === "degraded"],
  loaded: ["Loaded", (row) => row.loaded > 0],
  unused: ["No requests in 24 h", (row) => !row.day || row.day.requests === 0],
};

const COLUMNS = [
  { key: "name", label: "Model", value: (r) => r.name, cell: (r) => modelLink(r.name) },
  {
    key: "production",
    label: "Production",
    value: (r) => r.production ?? -1,
    cell: (r) => version(r.production),
  },
  { key: "staged", label: "Canary · shadow", value: (r) => r.canary.length + r.shadows.length, cell: staged },
  {
    key: "health",
    label: "Health",
    value: (r) => -HEALTH_ORDER.indexOf(r.health),
    cell: (r) => badge(r.health, r.reasons),
  },
  {
    key: "hourRequests",
    label: "Requests 1 h",
    numeric: true,
    value: (r) => r.hour?.requests ?? 0,
    cell: (r) => count(r.hour?.requests ?? 0),
  },
  {
    key: "hourErrors",
    label: "Errors 1 h",
    numeric: true,
    value: (r) => r.hour?.errors ?? 0,
    cell: (r) => errors(r.hour),
  },
  {
    key: "dayRequests",
    label: "Requests 24 h",
    numeric: true,
    value: (r) => r.day?.requests ?? 0,
    cell: (r) => count(r.day?.requests ?? 0),
  },
  {
    key: "dayErrors",
    label: "Errors 24 h",
    numeric: true,
    value: (r) => r.day?.errors ?? 0,
    cell: (r) => errors(r.day),
  },
  {
    key: "p99",
    label: "p99 1 h",
    numeric: true,
    value: (r) => r.hour?.p99_ms ?? -1,
    cell: (r) => ms(r.hour?.p99_ms),
  },
  {
    key: "loaded",
    label: "Loaded",
    numeric: true,
    value: (r) => r.loaded,
    cell: (r) => `${r.loaded} of ${r.versions}`,
  },
  {
    key: "memory",
    label: "Memory",
    numeric: true,
    value: (r) => r.memory,
    cell: (r) => (r.loaded ? bytes(r.memory) : "—"),
  },
  {
    key: "storage",
    label: "Artifacts",
    numeric: true,
    value: (r) => r.storage,
    cell: (r) => bytes(r.storage),
  },
];

export function mount(root) {
  const state = { sort: "name", descending: false, text: "", filter: "all", rows: [] };
  const totals = el("section", { class: "totals", "aria-label": "Totals" });
  const table = el("table", { class: "data fleet" });
  const search = el("input", {
    type: "search",
    placeholder: "Filter by name",
    "aria-label": "Filter models by name",
    oninput: () => {
      state.text = search.value.trim().toLowerCase();
      drawTable(table, state);
    },
  });
  const which = el(
    "select",
    {
      "aria-label": "Show",
      onchange: () => {
        state.filter = which.value;
        drawTable(table, state);
      },
    },
    Object.entries(FILTERS).map(([key, [label]]) => el("option", { value: key }, label)),
  );
  fill(root, el("h1", {}, "Fleet"), totals, el("div", { class: "controls" }, search, which), table);

  async function refresh() {
    const [report, recent] = await Promise.all([api("GET", "/api/report"), api("GET", "/api/usage/recent")]);
    state.rows = rowsOf(report, recent);
    redraw(totals, [report.totals, recent.models], () => drawTotals(totals, report.totals, recent));
    redraw(table, state.rows, () => drawTable(table, state));
  }
  return { refresh };
}

function rowsOf(report, recent) {
  const usage = new Map(recent.models.map((m) => [m.model, m]));
  return report.models.map((model) => {
    const live = model.versions.filter((v) => !v.archived);
    const health = worst(live.map((v) => v.health.status));
    const blobs = new Map(model.versions.map((v) => [v.sha256, v.size]));
    return {
      name: model.name,
      production: model.production,
      canary: model.canary,
      shadows: model.shadows,
      health,
      reasons: live
        .filter((v) => v.health.status === health)
        .flatMap((v) => versionReasons(v.version, v.health.reasons)),
      hour: usage.get(model.name)?.hour,
      day: usage.get(model.name)?.day,
      versions: live.length,
      loaded: live.filter((v) => v.state === "READY").length,
      memory: live.reduce((sum, v) => sum + (v.loaded_bytes || 0), 0),
      storage: [...blobs.values()].reduce((sum, size) => sum + size, 0),
    };
  });
}

function drawTotals(box, totals, recent) {
  const dayRequests = recent.models.reduce((sum, m) => sum + m.day.requests, 0);
  fill(
    box,
    total("models", "Models", count(totals.models)),
    total(
      "versions",
      "Versions in use",
      `${count(totals.versions_in_use)} of ${count(totals.versions)}`,
      "with requests in the report window",
    ),
    total(
      "memory",
      "Memory used",
      bytes(totals.loaded_bytes),
      `of ${bytes(totals.memory_budget_bytes)} · ${count(totals.loaded_versions)} versions loaded`,
      meter(totals.loaded_bytes, totals.memory_budget_bytes),
    ),
    total("storage", "Storage", bytes(totals.storage_bytes), "artifacts in the store"),
    total(
      "reclaimable",
      "Reclaimable",
      bytes(totals.reclaimable_bytes),
      el("a", { href: "#/findings" }, "see findings"),
    ),
    total("requests", "Requests 24 h", count(dayRequests), "served by this server"),
  );
}

function total(name, label, value, note, extra) {
  return el(
    "div",
    { class: "total", dataset: { total: name } },
    el("div", { class: "total-label" }, label),
    el("div", { class: "total-value" }, value),
    extra || null,
    note ? el("div", { class: "total-note" }, note) : null,
  );
}

function drawTable(table, state) {
  const [, keep] = FILTERS[state.filter];
  const column = COLUMNS.find((c) => c.key === state.sort);
  const rows = state.rows.filter((r) => r.name.includes(state.text) && keep(r));
  rows.sort(
    (a, b) =>
      compare(column.value(a), column.value(b)) * (state.descending ? -1 : 1) || compare(a.name, b.name),
  );
  const head = el(
    "tr",
    {},
    COLUMNS.map((c) =>
      el(
        "th",
        {
          class: c.numeric ? "numeric" : null,
          "aria-sort": c.key === state.sort ? (state.descending ? "descending" : "ascending") : null,
        },
        el(
          "button",
          {
            type: "button",
            class: "sort",
            onclick: () => {
              state.descending = c.key === state.sort ? !state.descending : c.numeric;
              state.sort = c.key;
              drawTable(table, state);
            },
          },
          c.label,
        ),
      ),
    ),
  );
  const body = rows.map((r) =>
    el(
      "tr",
      { dataset: { model: r.name } },
      COLUMNS.map((c) =>
        el("td", { class: c.numeric ? "numeric" : null, dataset: { column: c.key } }, c.cell(r)),
      ),
    ),
  );
  const empty = rows.length
    ? null
    : el(
        "tr",
        {},
        el(
          "td",
          { colspan: COLUMNS.length, class: "empty" },
          state.rows.length
            ? "No model matches the filter."
            : "No models yet: push one with `model-manager push`.",
        ),
      );
  fill(table, el("thead", {}, head), el("tbody", {}, body, empty));
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function version(number) {
  return number === null || number === undefined ? "—" : `v${number}`;
}

function staged(row) {
  const parts = [...row.canary.map((v) => `canary v${v}`), ...row.shadows.map((v) => `shadow v${v}`)];
  return parts.length ? parts.join(" · ") : "—";
}

function errors(summary) {
  if (!summary || !summary.errors) {
    return "0";
  }
  const kinds = Object.entries(summary.errors_by_kind)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${kind}: ${n}`);
  return el("span", { class: "errors", title: kinds.join("\n") }, count(summary.errors));
}
