// Line and bar charts drawn as SVG from the data: axes with ticks, grid lines, a legend, and a
// marker with a tooltip on every point that holds a value.
//
// A chart spec: {id, title, x0, x1, step, format, integer, empty, series}, each series {label,
// color, dashed, fill, points}, with times in milliseconds since the epoch; integer: the values
// are counts; empty: what to say when there is nothing to draw. Points are [time, value] at
// bucket starts; with a step, a bucket missing from a series takes the series' fill (0 for
// counts, so the line drops to zero between bursts) or breaks the line (latency: no requests,
// no latency).

import { el, svg } from "./dom.js";

export const PALETTE = [
  "#2563eb",
  "#d97706",
  "#059669",
  "#9333ea",
  "#dc2626",
  "#0891b2",
  "#65a30d",
  "#db2777",
];

const WIDTH = 640;
const HEIGHT = 230;
const PAD = { top: 12, right: 16, bottom: 28, left: 60 };
// Durations in milliseconds, as chart times are.
export const MINUTE = 60e3;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;
const TICK_STEPS = [
  MINUTE,
  5 * MINUTE,
  10 * MINUTE,
  15 * MINUTE,
  30 * MINUTE,
  HOUR,
  3 * HOUR,
  6 * HOUR,
  12 * HOUR,
  DAY,
  2 * DAY,
  7 * DAY,
];

export function lineChart(spec) {
  const lines = spec.series.map((s) => ({ ...s, values: filled(s, spec) }));
  const scale = scaleFor(
    spec,
    lines.flatMap((s) => s.values.map(([, y]) => y)),
  );
  const plot = frame(spec, scale);
  for (const line of lines) {
    plot.appendChild(
      svg("path", {
        d: pathOf(line.values, scale),
        fill: "none",
        stroke: line.color,
        "stroke-width": 2,
        "stroke-dasharray": line.dashed ? "6 4" : null,
        class: "line",
      }),
    );
    for (const [t, y] of inRange(line.points, spec)) {
      plot.appendChild(
        svg(
          "circle",
          {
            cx: scale.x(t),
            cy: scale.y(y),
            r: 3.5,
            fill: line.color,
            class: "point",
            dataset: { series: line.label },
          },
          svg("title", {}, `${line.label} · ${timeLabel(t, spec.step)} · ${spec.format(y)}`),
        ),
      );
    }
  }
  return figure(spec, plot, lines);
}

// Bars side by side in each bucket, one per series (counts: loads and evictions per minute).
export function barChart(spec) {
  const scale = scaleFor(
    spec,
    spec.series.flatMap((s) => s.points.map(([, y]) => y)),
  );
  const plot = frame(spec, scale);
  const slot = scale.x(spec.x0 + spec.step) - scale.x(spec.x0);
  const width = Math.max(1.5, (slot * 0.8) / spec.series.length);
  spec.series.forEach((series, index) => {
    for (const [t, y] of inRange(series.points, spec)) {
      if (y > 0) {
        plot.appendChild(
          svg(
            "rect",
            {
              x: scale.x(t) + slot * 0.1 + index * width,
              y: scale.y(y),
              width,
              height: scale.y(0) - scale.y(y),
              fill: series.color,
              class: "bar",
              dataset: { series: series.label },
            },
            svg("title", {}, `${series.label} · ${timeLabel(t, spec.step)} · ${spec.format(y)}`),
          ),
        );
      }
    }
  });
  return figure(spec, plot, spec.series);
}

function filled(series, spec) {
  if (!spec.step) {
    return inRange(series.points, spec);
  }
  const known = new Map(inRange(series.points, spec));
  const fill = series.fill === undefined ? null : series.fill;
  const values = [];
  for (let t = spec.x0; t <= spec.x1; t += spec.step) {
    values.push([t, known.has(t) ? known.get(t) : fill]);
  }
  return values;
}

function inRange(points, spec) {
  return points.filter(([t, y]) => t >= spec.x0 && t <= spec.x1 && y !== null && y !== undefined);
}

function scaleFor(spec, values) {
  const max = Math.max(0, ...values.filter((y) => y !== null));
  const step = niceStep(max / 4, spec.integer);
  const top = step * Math.max(1, Math.ceil(max / step));
  const left = PAD.left;
  const right = WIDTH - PAD.right;
  const span = Math.max(1, spec.x1 - spec.x0);
  return {
    top,
    step,
    x: (t) => round(left + ((t - spec.x0) / span) * (right - left)),
    y: (v) => round(HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom)),
  };
}

function frame(spec, scale) {
  const plot = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: "plot",
    role: "img",
    "aria-label": spec.title,
  });
  for (let i = 0; i * scale.step <= scale.top * 1.001; i += 1) {
    const v = i * scale.step;
    const y = scale.y(v);
    plot.appendChild(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }));
    plot.appendChild(
      svg("text", { x: PAD.left - 6, y: y + 4, class: "tick", "text-anchor": "end" }, spec.format(v)),
    );
  }
  const every = TICK_STEPS.find((s) => (spec.x1 - spec.x0) / s <= 7) || 30 * DAY;
  for (let t = Math.ceil(spec.x0 / every) * every; t <= spec.x1; t += every) {
    const x = scale.x(t);
    plot.appendChild(
      svg("line", { x1: x, x2: x, y1: HEIGHT - PAD.bottom, y2: HEIGHT - PAD.bottom + 4, class: "axis" }),
    );
    plot.appendChild(
      svg("text", { x, y: HEIGHT - 8, class: "tick", "text-anchor": "middle" }, timeLabel(t, every)),
    );
  }
  plot.appendChild(
    svg("line", {
      x1: PAD.left,
      x2: WIDTH - PAD.right,
      y1: HEIGHT - PAD.bottom,
      y2: HEIGHT - PAD.bottom,
      class: "axis",
    }),
  );
  plot.appendChild(
    svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: HEIGHT - PAD.bottom, class: "axis" }),
  );
  return plot;
}

function figure(spec, plot, series) {
  const empty = series.every((s) => inRange(s.points, spec).length === 0);
  if (empty) {
    plot.appendChild(
      svg(
        "text",
        { x: WIDTH / 2, y: HEIGHT / 2, class: "empty", "text-anchor": "middle" },
        spec.empty || "no data in this span",
      ),
    );
  }
  return el(
    "figure",
    { class: "chart", dataset: { chart: spec.id } },
    el("figcaption", {}, spec.title),
    plot,
    el(
      "ul",
      { class: "legend" },
      series.map((s) =>
        el(
          "li",
          {},
          svg(
            "svg",
            { width: 22, height: 10, "aria-hidden": "true" },
            svg("line", {
              x1: 1,
              x2: 21,
              y1: 5,
              y2: 5,
              stroke: s.color,
              "stroke-width": 3,
              "stroke-dasharray": s.dashed ? "5 3" : null,
            }),
          ),
          s.label,
        ),
      ),
    ),
  );
}

function pathOf(values, scale) {
  let d = "";
  let drawing = false;
  for (const [t, y] of values) {
    if (y === null) {
      drawing = false;
      continue;
    }
    d += `${drawing ? "L" : "M"}${scale.x(t)} ${scale.y(y)} `;
    drawing = true;
  }
  return d.trim() || "M0 0";
}

// The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least ``rough``.
function niceStep(rough, integer) {
  if (!(rough > 0)) {
    return 1;
  }
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * power).find((s) => s >= rough);
  return integer ? Math.max(1, Math.ceil(step)) : step;
}

function timeLabel(t, step) {
  const date = new Date(t);
  if (step >= DAY) {
    return date.toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
  }
  return date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
}

function round(v) {
  return Math.round(v * 10) / 10;
}
