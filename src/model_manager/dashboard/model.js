// One model: each version's state, health, golden probe, metadata and signature; the charts,
// shadow comparisons and live accuracy (usage.js); the audit trail (audit.js); and the safe
// actions (set an alias, promote, roll back, pin), each confirmed first.

import { act, api } from "./api.js";
import { drawAudit } from "./audit.js";
import { drawDrift } from "./drift.js";
import { drawOwners } from "./owners.js";
import { PALETTE } from "./chart.js";
import { badge, bytes, el, fill, notify, percent, redraw, table, versionReasons, when } from "./dom.js";
import { charts, drawAccuracy, drawShadow } from "./usage.js";

const SPANS = { hour: "Last hour", day: "Last day", days: "Last 30 days" };

export function mount(root, name) {
  const path = `/api/models/${encodeURIComponent(name)}`;
  const state = { span: "hour", open: new Set(), versionsKey: null, path, name };
  const parts = {
    summary: el("div", { class: "summary" }),
    actions: el("section", { class: "panel actions", "aria-label": "Actions" }),
    versions: el("section", { class: "panel" }),
    charts: el("div", { class: "charts" }),
    shadow: el("section", { class: "panel" }),
    accuracy: el("section", { class: "panel" }),
    drift: el("section", { class: "panel drift", "aria-label": "Input drift" }),
    owners: el("section", { class: "panel owners", "aria-label": "Owner and notifications" }),
    audit: el("section", { class: "panel" }),
  };
  const spanButtons = Object.entries(SPANS).map(([key, label]) =>
    el(
      "button",
      {
        type: "button",
        class: "span",
        "aria-pressed": String(key === state.span),
        dataset: { span: key },
        onclick: () => {
          state.span = key;
          spanButtons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.span === key)));
          refresh().catch((error) => notify(error.message, "error"));
        },
      },
      label,
    ),
  );
  fill(
    root,
    el("p", { class: "crumbs" }, el("a", { href: "#/" }, "Fleet"), " / ", name),
    el("h1", {}, name),
    parts.summary,
    parts.actions,
    parts.versions,
    el(
      "section",
      { class: "panel" },
      el(
        "div",
        { class: "panel-head" },
        el("h2", {}, "Requests, errors and latency"),
        el("div", { class: "spans" }, spanButtons),
      ),
      parts.charts,
    ),
    parts.shadow,
    parts.accuracy,
    parts.drift,
    parts.owners,
    parts.audit,
  );

  // A span button starts a refresh of its own while the page's may be waiting: each draws the
  // span it asked for, and one whose span is no longer chosen draws nothing.
  async function refresh() {
    const span = state.span;
    const usagePath = span === "days" ? `${path}/usage?days=30` : `${path}/usage/recent?span=${span}`;
    const [model, health, usage, shadow, outcomes, events, traffic, drift, settings, sent] = await Promise.all([
      api("GET", path),
      api("GET", `${path}/health`),
      api("GET", usagePath),
      api("GET", `${path}/shadow`),
      api("GET", `${path}/outcomes`),
      api("GET", `${path}/events`),
      api("GET", `${path}/traffic`),
      api("GET", `${path}/drift`),
      api("GET", `${path}/settings`),
      api("GET", `${path}/notifications`),
    ]);
    if (span !== state.span) {
      return;
    }
    const healthOf = new Map(health.versions.map((h) => [h.version, h]));
    const colors = new Map(model.versions.map((v, i) => [v.version, PALETTE[i % PALETTE.length]]));
    redraw(parts.summary, [model.aliases, health, traffic, settings.owner], () =>
      drawSummary(parts.summary, model, health, traffic.policy, settings.owner),
    );
    drawActions(parts.actions, model, state, refresh);
    redraw(parts.versions, [model, health], () =>
      drawVersions(parts.versions, model, healthOf, state, refresh),
    );
    fill(parts.charts, charts(usage, span, colors));
    redraw(parts.shadow, shadow, () => drawShadow(parts.shadow, shadow));
    redraw(parts.accuracy, outcomes, () => drawAccuracy(parts.accuracy, outcomes));
    redraw(parts.drift, drift, () => drawDrift(parts.drift, drift));
    redraw(parts.owners, [settings.owner, settings.notify, sent.notifications], () =>
      drawOwners(parts.owners, state, settings, sent, refresh),
    );
    redraw(parts.audit, events, () => drawAudit(parts.audit, events));
  }
  return { refresh };
}

// ---- summary and actions ---------------------------------------------------------------------

function drawSummary(box, model, health, policy, owner) {
  const aliases = Object.entries(model.aliases).map(([alias, v]) =>
    el("span", { class: "chip", dataset: { alias } }, `${alias} → v${v}`),
  );
  const routes = policy
    ? [
        ...policy.routes.map((r) => el("span", { class: "chip" }, `route v${r.version}: ${r.weight}%`)),
        ...policy.shadows.map((s) =>
          el("span", { class: "chip" }, `shadow v${s.version}: ${percent(s.sample_rate)} sampled`),
        ),
      ]
    : [el("span", { class: "chip quiet" }, "no traffic policy: requests go to production")];
  fill(
    box,
    el(
      "div",
      {},
      "Health ",
      badge(
        health.status,
        health.versions.flatMap((v) => versionReasons(v.version, v.reasons)),
      ),
    ),
    el("div", {}, "Aliases ", aliases.length ? aliases : el("span", { class: "chip quiet" }, "none")),
    el("div", {}, "Traffic ", routes),
    el("div", {}, "Owner ", el("span", { class: owner ? "chip owner" : "chip quiet" }, owner || "nobody named")),
  );
}

function drawActions(box, model, state, refresh) {
  const live = model.versions.filter((v) => !v.archived).map((v) => v.version);
  const key = live.join(",");
  if (key === state.versionsKey) {
    return; // keep what the user has typed or chosen
  }
  state.versionsKey = key;
  const options = () =>
    live
      .slice()
      .reverse()
      .map((v) => el("option", { value: v }, `v${v}`));
  const aliasName = el("input", { name: "alias-name", value: "staging", "aria-label": "Alias", size: 12 });
  const aliasVersion = el(
    "select",
    { name: "alias-version", "aria-label": "Version for the alias" },
    options(),
  );
  const promoteVersion = el(
    "select",
    { name: "promote-version", "aria-label": "Version to promote" },
    options(),
  );
  const base = state.path;
  fill(
    box,
    el("h2", {}, "Actions"),
    el(
      "div",
      { class: "action" },
      "Point alias ",
      aliasName,
      " at ",
      aliasVersion,
      " ",
      el(
        "button",
        {
          type: "button",
          onclick: () => {
            const alias = aliasName.value.trim();
            act(
              `Point ${state.name}@${alias} at v${aliasVersion.value}?`,
              "PUT",
              `${base}/aliases/${encodeURIComponent(alias)}`,
              { version: Number(aliasVersion.value) },
            ).then(done(refresh, (r) => `${state.name}@${r.alias} now points at v${r.version}`));
          },
        },
        "Set alias",
      ),
    ),
    el(
      "div",
      { class: "action" },
      "Promote ",
      promoteVersion,
      " to production ",
      el(
        "button",
        {
          type: "button",
          onclick: () =>
            act(
              `Promote v${promoteVersion.value} of ${state.name} to production? It is loaded and ` +
                "warmed first; requests without a version then go to it.",
              "POST",
              `${base}/promote`,
              { version: Number(promoteVersion.value) },
            ).then(done(refresh, (r) => `${state.name} production is now v${r.version}`)),
        },
        "Promote",
      ),
    ),
    el(
      "div",
      { class: "action" },
      "Return production to the version it pointed at before ",
      el(
        "button",
        {
          type: "button",
          onclick: () =>
            act(
              `Roll ${state.name} back: point production at the version it pointed at before?`,
              "POST",
              `${base}/rollback`,
            ).then(done(refresh, (r) => `${state.name} production rolled back to v${r.version}`)),
        },
        "Roll back",
      ),
    ),
  );
}

// What follows a confirmed action: say what it did (message of the server's answer) and read the
// page again. A cancelled or failed action (null) needs neither.
function done(refresh, message) {
  return (result) => {
    if (result) {
      notify(message(result), "success");
      refresh().catch((error) => notify(error.message, "error"));
    }
  };
}

// ---- versions --------------------------------------------------------------------------------

function drawVersions(box, model, healthOf, state, refresh) {
  const rows = model.versions
    .slice()
    .reverse()
    .map((v) => {
      const health = healthOf.get(v.version);
      const probe = health?.last_probe;
      return el(
        "tr",
        { dataset: { version: v.version } },
        el("td", {}, `v${v.version}`),
        el("td", {}, v.aliases.length ? v.aliases.join(", ") : "—"),
        el(
          "td",
          {},
          v.archived ? "archived" : v.state,
          v.reason ? el("div", { class: "reason" }, v.reason) : null,
        ),
        el(
          "td",
          {},
          health
            ? [
                badge(health.status, health.reasons),
                health.reasons.map((r) => el("div", { class: "reason" }, r)),
              ]
            : "—",
        ),
        el(
          "td",
          {},
          probe
            ? el(
                "span",
                { class: probe.passed ? "ok" : "bad", title: probe.detail },
                probe.passed ? "passed" : `failed: ${probe.detail}`,
              )
            : "—",
        ),
        el("td", {}, v.format),
        el("td", { class: "numeric" }, bytes(v.size)),
        el("td", { class: "numeric" }, v.state === "READY" ? bytes(v.loaded_bytes) : "—"),
        el("td", {}, v.last_used ? when(v.last_used) : "—"),
        el("td", {}, when(v.created_at)),
        el("td", {}, pinButton(v, state, refresh)),
      );
    });
  const details = model.versions
    .slice()
    .reverse()
    .map((v) => versionDetails(v, state));
  fill(
    box,
    el("h2", {}, "Versions"),
    table(
      "versions",
      [
        "Version",
        "Aliases",
        "State",
        "Health",
        "Golden probe",
        "Format",
        "Artifact",
        "Memory",
        "Last used",
        "Created",
        "Pinned",
      ],
      rows,
    ),
    details,
  );
}

function pinButton(version, state, refresh) {
  if (version.archived) {
    return "—";
  }
  const pinned = version.pinned;
  const question = pinned
    ? `Unpin v${version.version} of ${state.name}? The cache may then evict it when it needs room.`
    : `Pin v${version.version} of ${state.name}? It is loaded now and stays loaded until unpinned.`;
  return el(
    "button",
    {
      type: "button",
      class: "quiet",
      onclick: () =>
        act(question, pinned ? "DELETE" : "PUT", `${state.path}/versions/${version.version}/pin`).then(
          done(refresh, () => `v${version.version} of ${state.name} ${pinned ? "unpinned" : "pinned"}`),
        ),
    },
    pinned ? "pinned · unpin" : "pin",
  );
}

function versionDetails(version, state) {
  const box = el(
    "details",
    {
      class: "version-details",
      open: state.open.has(version.version),
      ontoggle: () => (box.open ? state.open.add(version.version) : state.open.delete(version.version)),
    },
    el("summary", {}, `v${version.version}: metadata and signature`),
    el(
      "div",
      { class: "columns" },
      el(
        "div",
        {},
        el("h3", {}, "Signature"),
        table(
          "compact",
          ["", "Name", "Datatype", "Shape"],
          [
            ...version.signature.inputs.map((t) => tensorRow("input", t)),
            ...version.signature.outputs.map((t) => tensorRow("output", t)),
          ],
        ),
      ),
      el(
        "div",
        {},
        el("h3", {}, "Metadata"),
        el("pre", {}, JSON.stringify(version.metadata, null, 2)),
        el("p", { class: "hint" }, `sha256 ${version.sha256}`),
      ),
    ),
  );
  return box;
}

function tensorRow(role, tensor) {
  return el(
    "tr",
    {},
    el("td", {}, role),
    el("td", {}, tensor.name),
    el("td", {}, tensor.datatype),
    el("td", {}, `[${tensor.shape.join(", ")}]`),
  );
}
