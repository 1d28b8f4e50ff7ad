// The audit trail of one model: uploads, alias moves (promotions and rollbacks are moves of
// production), traffic changes, pins and archives, newest first, with who made them.

import { el, empty, fill, table, when } from "./dom.js";

export function drawAudit(box, events) {
  fill(
    box,
    el("h2", {}, "Audit trail"),
    events.length
      ? table(
          "audit",
          ["When", "What", "By"],
          events
            .slice(0, 100)
            .map((e) =>
              el(
                "tr",
                { dataset: { kind: e.kind } },
                el("td", {}, when(e.created_at)),
                el("td", {}, describe(e)),
                el("td", {}, e.actor || "—"),
              ),
            ),
        )
      : empty("No events."),
  );
}

function describe(event) {
  const d = event.details || {};
  switch (event.kind) {
    case "alias.set":
      return `${d.alias} → v${d.version}${d.previous ? ` (was v${d.previous})` : ""}`;
    case "alias.deleted":
      return `alias ${d.alias} removed`;
    case "traffic.set":
      return `traffic: ${policyText(d.to)}${d.reason ? ` (${d.reason})` : ""}`;
    case "traffic.cleared":
      return `traffic policy removed${d.reason ? ` (${d.reason})` : ""}: requests go to production`;
    case "version.created":
      return `v${d.version} uploaded (${d.format})`;
    case "version.pinned":
    case "version.unpinned":
    case "version.archived":
    case "version.unarchived":
    case "version.deleted":
    case "version.unloaded":
      return `v${d.version} ${event.kind.split(".")[1]}${d.reason ? ` (${d.reason})` : ""}`;
    default:
      return `${event.kind} ${JSON.stringify(d)}`;
  }
}

function policyText(policy) {
  if (!policy) {
    return "none";
  }
  const routes = (policy.routes || []).map((r) => `v${r.version} ${r.weight}%`);
  const shadows = (policy.shadows || []).map((s) => `shadow v${s.version}`);
  return [...routes, ...shadows].join(", ");
}
