// How one model is used: charts of requests, errors and p50/p99 latency per version (the last hour
// by minute or the last day by hour from this server's live counts, or the last 30 days from the
// registry's daily buckets); the shadow comparisons; and live accuracy from posted outcomes.

import { DAY, PALETTE, lineChart } from "./chart.js";
import { count, el, empty, fill, ms, number, percent, svg, table } from "./dom.js";

export function charts(usage, span, colors) {
  const frame = span === "days" ? dailyFrame(usage) : recentFrame(usage);
  const used = frame.versions.filter((v) => v.buckets.length > 0);
  const series = (label, dashed, gap, pick) =>
    used.map((v) => ({
      label: label(v),
      color: colors.get(v.version),
      dashed,
      fill: gap,
      points: v.buckets.map((b) => [b.t, pick(b)]),
    }));
  const base = { x0: frame.x0, x1: frame.x1, step: frame.step, empty: "no requests in this span" };
  const per = span === "hour" ? "per minute" : span === "day" ? "per hour" : "per day";
  const counts = (id, title, pick) =>
    lineChart({
      ...base,
      id,
      title: `${title} ${per}`,
      format: count,
      integer: true,
      series: series((v) => `v${v.version}`, false, 0, pick),
    });
  return [
    counts("requests", "Requests", (b) => b.requests),
    counts("errors", "Errors", (b) => b.errors),
    lineChart({
      ...base,
      id: "latency",
      title: "Latency p99 (solid) and p50 (dashed)",
      format: ms,
      series: [
        ...series(
          (v) => `v${v.version} p99`,
          false,
          null,
          (b) => b.p99_ms,
        ),
        ...series(
          (v) => `v${v.version} p50`,
          true,
          null,
          (b) => b.p50_ms,
        ),
      ],
    }),
  ];
}

function recentFrame(usage) {
  return {
    x0: Date.parse(usage.since),
    x1: Date.parse(usage.until),
    step: usage.step_seconds * 1000,
    versions: usage.versions.map((v) => ({
      version: v.version,
      buckets: v.buckets.map((b) => ({ ...b, t: Date.parse(b.start) })),
    })),
  };
}

function dailyFrame(usage) {
  const versions = usage.versions.map((v) => ({
    version: v.version,
    buckets: v.days.map((d) => ({ ...d, t: Date.parse(d.day) })),
  }));
  const last = Math.max(
    Math.floor(Date.now() / DAY) * DAY,
    ...versions.flatMap((v) => v.buckets.map((b) => b.t)),
  );
  return { x0: last - 29 * DAY, x1: last, step: DAY, versions };
}

export function drawShadow(box, report) {
  const heading = el("h2", {}, "Shadow comparison");
  if (!report.pairs.length) {
    fill(
      box,
      heading,
      empty("No shadow traffic in the last 30 days. A traffic policy with shadows compares a version on live requests."),
    );
    return;
  }
  fill(
    box,
    heading,
    table(
      "shadow",
      [
        "Served → shadow",
        "Pairs",
        "Rows compared",
        "Agreement",
        "Mean |diff|",
        "Max |diff|",
        "Shadow errors",
        "Dropped",
        "Latency p50 / p99",
      ],
      report.pairs.map((p) =>
        el(
          "tr",
          { dataset: { shadow: p.shadow } },
          el("td", {}, `v${p.primary} → v${p.shadow}`),
          el("td", { class: "numeric" }, count(p.pairs)),
          el("td", { class: "numeric" }, count(p.rows_compared)),
          el("td", { class: "numeric" }, percent(p.agreement)),
          el("td", { class: "numeric" }, number(p.mean_abs_diff)),
          el("td", { class: "numeric" }, number(p.max_abs_diff)),
          el("td", { class: "numeric" }, count(p.shadow_errors)),
          el("td", { class: "numeric" }, count(p.dropped)),
          el("td", {}, latencyPair(p)),
        ),
      ),
    ),
  );
}

// Served and shadow latency side by side: p50 and p99 bars on one scale.
function latencyPair(pair) {
  const rows = [
    ["served p50", pair.primary_p50_ms, PALETTE[0]],
    ["shadow p50", pair.shadow_p50_ms, PALETTE[1]],
    ["served p99", pair.primary_p99_ms, PALETTE[0]],
    ["shadow p99", pair.shadow_p99_ms, PALETTE[1]],
  ];
  const top = Math.max(...rows.map(([, v]) => v || 0), 0.001);
  return svg(
    "svg",
    { class: "pair", viewBox: "0 0 260 64", role: "img", "aria-label": "latency side by side" },
    rows.map(([label, value, color], i) => [
      svg("text", { x: 0, y: 12 + i * 15, class: "tick" }, label),
      svg(
        "rect",
        { x: 70, y: 3 + i * 15, height: 11, width: Math.max(1, ((value || 0) / top) * 120), fill: color },
        svg("title", {}, `${label}: ${ms(value)}`),
      ),
      svg("text", { x: 196, y: 12 + i * 15, class: "tick" }, ms(value)),
    ]),
  );
}

export function drawAccuracy(box, outcomes) {
  const heading = el("h2", {}, "Live accuracy from outcomes");
  if (!outcomes.versions.length) {
    fill(
      box,
      heading,
      empty("No logged predictions. Set a prediction log rate, then post outcomes to /api/models/<name>/outcomes."),
    );
    return;
  }
  fill(
    box,
    heading,
    table(
      "",
      ["Version", "Role", "Logged", "With outcome", "Score"],
      outcomes.versions.map((v) =>
        el(
          "tr",
          {},
          el("td", {}, `v${v.version}`),
          el("td", {}, v.role),
          el("td", { class: "numeric" }, count(v.logged)),
          el("td", { class: "numeric" }, count(v.with_outcome)),
          el(
            "td",
            {},
            v.kind === "classification"
              ? `accuracy ${percent(v.accuracy)}`
              : v.kind === "regression"
                ? `MAE ${number(v.mae)} · RMSE ${number(v.rmse)}`
                : "no outcomes yet",
          ),
        ),
      ),
    ),
  );
}
