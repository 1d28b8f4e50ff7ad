// The dashboard: one page routed by the URL's hash (#/, #/model/<name>, #/memory, #/findings).
// The page in view reads the JSON management API again every few seconds while the tab is
// visible, so it stays live without reloading.

import { askForKey, hasKey } from "./api.js";
import { el } from "./dom.js";
import * as findings from "./findings.js";
import * as fleet from "./fleet.js";
import * as memory from "./memory.js";
import * as model from "./model.js";

const REFRESH_MS = 5000;
const PAGES = { fleet, model, memory, findings };

let current = null;

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (page === "model" && rest[0]) {
    return ["model", rest[0]];
  }
  return [page in PAGES && page !== "model" ? page : "fleet", null];
}

function show() {
  const [page, argument] = route();
  const root = el("div", { class: "page", dataset: { page } });
  document.getElementById("page").replaceChildren(root);
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === page);
  }
  document.title = `${argument || page[0].toUpperCase() + page.slice(1)} · ml-model-manager`;
  current = { view: PAGES[page].mount(root, argument), root, busy: false, drawn: false };
  update();
}

async function update() {
  const shown = current;
  if (shown.busy) {
    return;
  }
  shown.busy = true;
  const status = document.getElementById("status");
  try {
    await shown.view.refresh();
    shown.drawn = true;
    status.textContent = `Live · updated ${new Date().toLocaleTimeString("en-GB")}`;
    status.classList.remove("failed");
  } catch (error) {
    status.textContent = `Not updated: ${error.message}`;
    status.classList.add("failed");
    if (!shown.drawn && shown === current) {
      shown.root.replaceChildren(el("p", { class: "notice notice-error", role: "alert" }, error.message));
    }
  } finally {
    shown.busy = false;
    document.getElementById("change-key").hidden = !hasKey();
  }
}

window.addEventListener("hashchange", show);
setInterval(() => {
  if (!document.hidden) {
    update();
  }
}, REFRESH_MS);
document.getElementById("change-key").addEventListener("click", () => {
  askForKey("Enter another API key for this tab.").then(update, () => {});
});
show();
