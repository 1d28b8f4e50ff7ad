// Building the page. Text from the server only ever goes in as text nodes or attribute values,
// never as markup.

const SVG = "http://www.w3.org/2000/svg";

// el("a", {href: "#/", class: "x", onclick: f}, "text", child, [more, children])
export function el(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) {
      continue;
    }
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (Array.isArray(child)) {
      append(node, child);
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else if (child !== null && child !== undefined && child !== false) {
      node.appendChild(document.createTextNode(String(child)));
    }
  }
}

export function notify(text, kind = "info") {
  const box = document.getElementById("notices");
  const notice = el(
    "div",
    { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : null },
    el("span", {}, text),
    el(
      "button",
      { class: "quiet", type: "button", "aria-label": "Dismiss", onclick: () => notice.remove() },
      "×",
    ),
  );
  box.appendChild(notice);
  if (kind !== "error") {
    setTimeout(() => notice.remove(), 8000);
  }
}

// A link to a model's page; its text is the model's name unless given.
export function modelLink(name, text = name) {
  return el("a", { href: `#/model/${encodeURIComponent(name)}` }, text);
}

// ---- formatting ----------------------------------------------------------------------------

const DASH = "—";

export function bytes(n) {
  if (n === null || n === undefined) {
    return DASH;
  }
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function ms(value) {
  if (value === null || value === undefined) {
    return DASH;
  }
  return value >= 100 ? `${Math.round(value)} ms` : `${Number(value.toPrecision(3))} ms`;
}

export function count(n) {
  return n === null || n === undefined ? DASH : Number(n).toLocaleString("en-US");
}

export function percent(x) {
  return x === null || x === undefined ? DASH : `${(x * 100).toFixed(1)}%`;
}

export function number(x) {
  return x === null || x === undefined ? DASH : String(Number(x.toPrecision(4)));
}

// "12 s ago", from two ISO times (the server's now, so a shifted server clock reads right).
export function ago(iso, nowIso) {
  if (!iso) {
    return DASH;
  }
  const seconds = Math.max(0, (Date.parse(nowIso) - Date.parse(iso)) / 1000);
  if (seconds < 90) {
    return `${Math.round(seconds)} s ago`;
  }
  if (seconds < 5400) {
    return `${Math.round(seconds / 60)} min ago`;
  }
  if (seconds < 129600) {
    return `${Math.round(seconds / 3600)} h ago`;
  }
  return `${Math.round(seconds / 86400)} d ago`;
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" }) : DASH;
}

// ---- health --------------------------------------------------------------------------------

export const HEALTH_ORDER = ["unhealthy", "degraded", "healthy", "idle", "unknown"];

export function worst(statuses) {
  let found = "unknown";
  for (const status of statuses) {
    if (HEALTH_ORDER.indexOf(status) < HEALTH_ORDER.indexOf(found)) {
      found = status;
    }
  }
  return found;
}

// A version's health reasons, each marked with the version ("v2: ...").
export function versionReasons(version, reasons) {
  return reasons.map((reason) => `v${version}: ${reason}`);
}

// A health badge; its reasons show on hover (and to screen readers).
export function badge(status, reasons = []) {
  const known = HEALTH_ORDER.includes(status) ? status : "unknown";
  return el(
    "span",
    {
      class: `badge badge-${known}`,
      title: reasons.length ? reasons.join("\n") : null,
      dataset: { health: known },
    },
    known,
  );
}

// A bar filled in proportion to used / whole.
export function meter(used, whole) {
  const share = whole > 0 ? Math.min(1, used / whole) : 0;
  return svg(
    "svg",
    {
      class: "meter",
      viewBox: "0 0 100 6",
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": `${percent(share)} used`,
    },
    svg("rect", { x: 0, y: 0, width: 100, height: 6, class: "meter-track" }),
    svg("rect", {
      x: 0,
      y: 0,
      width: used > 0 ? Math.max(share * 100, 0.5) : 0,
      height: 6,
      class: "meter-fill",
    }),
  );
}

// Replace a node's children (nested arrays of nodes and text, as el takes them).
/** The paragraph a section shows when it has nothing to show. */
export function empty(text) {
  return el("p", { class: "empty" }, text);
}

export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

const drawnWith = new WeakMap();

// Draw a part of the page again only when its data changed, so that a tooltip being read or a
// details box being looked at is not replaced every few seconds for nothing.
export function redraw(box, data, draw) {
  const key = JSON.stringify(data);
  if (drawnWith.get(box) !== key) {
    drawnWith.set(box, key);
    draw();
  }
}

// A data table: one row of headings, then the rows (tr elements, or arrays of them).
export function table(className, headings, ...rows) {
  return el(
    "table",
    { class: `data ${className}`.trim() },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        headings.map((h) => el("th", {}, h)),
      ),
    ),
    el("tbody", {}, rows),
  );
}
