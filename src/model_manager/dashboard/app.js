// The dashboard: one page routed by the URL's hash (#/, #/model/<name>, #/memory, #/findings).
// The page in view reads the JSON management API again every few seconds while the tab is
// visible, so it stays live without reloading. If the user cancels the API key form those reads
// asked for, the reads stop (each would only ask again) until the user gives a key.

import { KeyDeclined, askForKey, hasKey } from "./api.js";
import { el } from "./dom.js";
import * as findings from "./findings.js";
import * as fleet from "./fleet.js";
import * as memory from "./memory.js";
import * as model from "./model.js";

const REFRESH_MS = 5000;
const PAGES = { fleet, model, memory, findings };

let current = null;
let paused = false; // the user declined to give a key

function route() {
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (page === "model" && rest[0]) {
    return ["model", rest[0]];
  }
  return [Object.hasOwn(PAGES, page) && page !== "model" ? page : "fleet", null];
}

function show() {
  const [page, argument] = route();
  const root = el("div", { class: "page", dataset: { page } });
  document.getElementById("page").replaceChildren(root);
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.dataset.page === page);
  }
  document.title = `${argument || page[0].toUpperCase() + page.slice(1)} · ml-model-manager`;
  current = { view: PAGES[page].mount(root, argument), root, busy: false, drawn: false, failure: null };
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
    resume();
    shown.failure?.remove();
    shown.drawn = true;
    status.textContent = `Live · updated ${new Date().toLocaleTimeString("en-GB")}`;
    status.classList.remove("failed");
  } catch (error) {
    if (error instanceof KeyDeclined) {
      pause();
    }
    status.textContent = `Not updated: ${error.message}`;
    status.classList.add("failed");
    if (!shown.drawn && shown === current) {
      // Why the page is empty, above its parts: they stay in place for the next refresh to draw.
      shown.failure?.remove();
      shown.failure = el("p", { class: "notice notice-error", role: "alert" }, error.message);
      shown.root.prepend(shown.failure);
    }
  } finally {
    shown.busy = false;
    document.getElementById("change-key").hidden = !hasKey();
  }
}

// Stop reading the API until the user gives a key; a notice offers to.
function pause() {
  paused = true;
  if (!document.getElementById("key-needed")) {
    document.getElementById("notices").appendChild(
      el(
        "div",
        { id: "key-needed", class: "notice notice-error", role: "alert" },
        el("span", {}, "Not updating: the server needs an API key."),
        el(
          "button",
          { type: "button", onclick: () => changeKey("Enter an API key for this tab.") },
          "Change API key",
        ),
      ),
    );
  }
}

function resume() {
  paused = false;
  document.getElementById("key-needed")?.remove();
}

function changeKey(reason) {
  askForKey(reason).then(
    () => {
      resume();
      update();
    },
    () => {}, // cancelled: nothing changes
  );
}

window.addEventListener("hashchange", show);
setInterval(() => {
  if (!document.hidden && !paused) {
    update();
  }
}, REFRESH_MS);
document.getElementById("change-key").addEventListener("click", () => {
  changeKey("Enter another API key for this tab.");
});
show();
