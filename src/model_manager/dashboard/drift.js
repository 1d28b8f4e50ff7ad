// Input drift on the model page: for each version with a reference, its most drifted columns
// as paired bars per bin (the reference's share of rows beside the live window's), with the
// column's PSI against its threshold.

import { PALETTE } from "./chart.js";
import { el, empty, fill, svg } from "./dom.js";

const SHOWN = 3;
const WIDTH = 300;
const HEIGHT = 120;
const PAD = 4;

export function drawDrift(box, drift) {
  const judged = drift.versions.filter((v) => v.reference);
  const gathering = drift.versions.filter((v) => !v.reference);
  fill(
    box,
    el("h2", {}, "Input drift"),
    judged.length
      ? judged.map((version) => drawVersion(version))
      : empty("No version has a reference yet (give one with its upload, or wait for its first requests)."),
    gathering.map((v) =>
      el("p", { class: "quiet" }, `v${v.version}: gathering a baseline, ${v.baseline_rows} of ${v.baseline_target} rows`),
    ),
  );
}

function drawVersion(version) {
  const columns = version.columns.slice(0, SHOWN);
  return el(
    "div",
    { class: "drift-version", dataset: { version: version.version } },
    el(
      "h3",
      {},
      `v${version.version} · ${version.live_rows} live rows against ${version.reference.rows} ` +
        `(${version.reference.source})`,
    ),
    el("div", { class: "drift-columns" }, columns.map((column) => drawColumn(column, version.judged))),
  );
}

function drawColumn(column, judged) {
  const reference = shares(column.reference);
  const live = shares(column.live);
  const top = Math.max(0.01, ...reference, ...live);
  const slot = (WIDTH - 2 * PAD) / column.bins.length;
  const bars = [];
  column.bins.forEach((bin, i) => {
    [reference[i], live[i]].forEach((share, j) => {
      const height = ((HEIGHT - 2 * PAD) * share) / top;
      bars.push(
        svg(
          "rect",
          {
            x: PAD + i * slot + slot * 0.1 + j * slot * 0.4,
            y: HEIGHT - PAD - height,
            width: slot * 0.4,
            height,
            fill: PALETTE[j],
            class: j ? "live" : "reference",
          },
          svg("title", {}, `${bin} · ${j ? "live" : "reference"} ${(share * 100).toFixed(1)}%`),
        ),
      );
    });
  });
  const verdict = column.drifted ? "drifted" : judged ? "ok" : "too few live rows";
  const psi = column.psi === null ? "no live rows" : `PSI ${column.psi.toFixed(2)} (threshold ${column.psi_threshold.toFixed(2)})`;
  return el(
    "figure",
    { class: `drift-column ${column.drifted ? "drifted" : ""}`.trim(), dataset: { column: column.column } },
    svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${column.column}: reference and live shares per bin` }, bars),
    el("figcaption", {}, `${column.column} · ${psi} · ${verdict}`),
  );
}

function shares(counts) {
  const total = counts.reduce((a, b) => a + b, 0) || 1;
  return counts.map((n) => n / total);
}
