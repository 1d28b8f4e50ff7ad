// Findings: the governance report's findings, each with its evidence, and the cleanup dry run
// (what cleanup would archive, purge, unload or delete, and the bytes it would free).
//
// Reads GET /api/report; the dry run is POST /api/cleanup with {"dry_run": true}.

import { act, api } from "./api.js";
import { bytes, count, el, empty, fill, modelLink, notify, table, when } from "./dom.js";

export function mount(root) {
  const state = { plan: null, plannedAt: null };
  const summary = el("section", { class: "panel" });
  const findings = el("section", { class: "panel" });
  const cleanup = el("section", { class: "panel" });
  fill(root, el("h1", {}, "Findings"), summary, findings, cleanup);

  async function refresh() {
    const report = await api("GET", "/api/report");
    drawSummary(summary, report);
    drawFindings(findings, report);
    drawCleanup(cleanup, state, dryRun);
  }

  async function dryRun() {
    const plan = await act(
      "Run a cleanup dry run? Nothing changes: it lists what cleanup would do.",
      "POST",
      "/api/cleanup",
      { dry_run: true },
    );
    if (plan) {
      state.plan = plan;
      state.plannedAt = new Date().toISOString();
      drawCleanup(cleanup, state, dryRun);
      notify(`Dry run: ${plan.actions.length} action(s) planned`, "success");
    }
  }
  return { refresh };
}

function drawSummary(box, report) {
  const codes = Object.entries(report.totals.findings);
  if (report.orphan_blobs.length) {
    codes.push(["ORPHAN_BLOB", report.orphan_blobs.length]);
  }
  const limits = Object.entries(report.limits).map(
    ([k, days]) => `${k.replace(/_days$/, "").replaceAll("_", " ")} ${duration(days)}`,
  );
  fill(
    box,
    el(
      "p",
      { class: "big" },
      `${count(codes.reduce((n, [, k]) => n + k, 0))} findings in ${count(report.totals.models)} models`,
      ` · reclaimable ${bytes(report.totals.reclaimable_bytes)} of ${bytes(report.totals.storage_bytes)} stored`,
    ),
    el(
      "div",
      { class: "chips" },
      codes.length
        ? codes.map(([code, n]) =>
            el("span", { class: `chip finding-${code}`, dataset: { code } }, `${code} ${n}`),
          )
        : el("span", { class: "chip quiet" }, "nothing to report"),
    ),
    el(
      "p",
      { class: "hint" },
      `Judged with: ${limits.join(" · ")} (report generated ${when(report.generated_at)})`,
    ),
  );
}

function duration(days) {
  return days >= 1 ? `${Number(days.toPrecision(3))} d` : `${Number((days * 24).toPrecision(3))} h`;
}

function drawFindings(box, report) {
  const rows = report.models.flatMap((model) =>
    model.versions.flatMap((v) =>
      v.findings.map((f) =>
        el(
          "tr",
          {
            dataset: { model: model.name, version: v.version, code: f.code },
          },
          el("td", {}, modelLink(model.name)),
          el("td", {}, `v${v.version}`),
          el("td", {}, el("span", { class: `chip finding-${f.code}` }, f.code)),
          el("td", {}, evidence(f.evidence)),
          el("td", {}, v.protected_by.length ? v.protected_by.join(", ") : "—"),
        ),
      ),
    ),
  );
  const orphans = report.orphan_blobs.map((b) =>
    el(
      "tr",
      { dataset: { code: "ORPHAN_BLOB" } },
      el("td", {}, "—"),
      el("td", {}, "—"),
      el("td", {}, el("span", { class: "chip" }, "ORPHAN_BLOB")),
      el("td", {}, evidence({ sha256: b.sha256, size: bytes(b.size) })),
      el("td", {}, "—"),
    ),
  );
  fill(
    box,
    el("h2", {}, "Findings and their evidence"),
    rows.length + orphans.length
      ? table("findings", ["Model", "Version", "Finding", "Evidence", "Protected by"], rows, orphans)
      : empty("No findings: every version is in use, healthy and unique."),
  );
}

function evidence(facts) {
  return el(
    "dl",
    { class: "evidence" },
    Object.entries(facts).map(([key, value]) => [
      el("dt", {}, key.replaceAll("_", " ")),
      el("dd", {}, show(value)),
    ]),
  );
}

function show(value) {
  if (Array.isArray(value)) {
    return value
      .map((item) =>
        item && typeof item === "object" && "model" in item ? `${item.model} v${item.version}` : show(item),
      )
      .join("; ");
  }
  if (value && typeof value === "object") {
    return JSON.stringify(value);
  }
  return value === null ? "—" : String(value);
}

function drawCleanup(box, state, dryRun) {
  const button = el("button", { type: "button", onclick: dryRun }, "Run cleanup dry run");
  const parts = [
    el("div", { class: "panel-head" }, el("h2", {}, "Cleanup"), button),
    el(
      "p",
      { class: "hint" },
      "A dry run changes nothing. To carry the plan out, run ",
      el("code", {}, "model-manager cleanup --apply"),
      ".",
    ),
  ];
  if (state.plan) {
    const plan = state.plan;
    parts.push(
      el(
        "p",
        { class: "big", dataset: { plan: "totals" } },
        `${plan.actions.length} action(s) would free ${bytes(plan.storage_bytes)} of storage and ` +
          `${bytes(plan.memory_bytes)} of memory (dry run at ${when(state.plannedAt)})`,
      ),
    );
    if (plan.actions.length) {
      parts.push(
        table(
          "plan",
          ["Action", "Model", "Version", "Finding", "Frees"],
          plan.actions.map((a) =>
            el(
              "tr",
              { dataset: { action: a.action } },
              el("td", {}, a.action),
              el("td", {}, a.model || "—"),
              el("td", {}, a.version ? `v${a.version}` : "—"),
              el("td", {}, a.finding),
              el("td", { class: "numeric" }, bytes(a.reclaims_bytes)),
            ),
          ),
        ),
      );
    }
  }
  fill(box, parts);
}
