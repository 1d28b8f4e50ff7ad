// Who answers for a model and who is told of its events: its owner and webhook URLs, set here
// as with `model-manager settings NAME --owner ... --notify URL` (a target keeps its events and
// secret when it stays; a new one hears every event), and the last messages sent.

import { act } from "./api.js";
import { el, fill, notify, table, when } from "./dom.js";

export function drawOwners(box, state, settings, log, refresh) {
  const owner = el("input", { name: "owner", "aria-label": "Owner", size: 24, value: settings.owner || "" });
  const urls = el(
    "textarea",
    { name: "notify-urls", "aria-label": "Webhook URLs, one per line", rows: 3, cols: 60 },
    settings.notify.map((t) => t.url).join("\n"),
  );
  const save = () => {
    const kept = new Map(settings.notify.map((t) => [t.url, t]));
    const notifyTargets = urls.value
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean)
      .map((url) => (kept.has(url) ? { url, events: kept.get(url).events, secret: kept.get(url).secret || null } : { url }));
    act(`Save the owner and webhooks of ${state.name}?`, "PATCH", `${state.path}/settings`, {
      owner: owner.value.trim() || null,
      notify: notifyTargets,
    }).then((result) => {
      if (result) {
        notify(`${state.name}: owner and webhooks saved`, "success");
        refresh().catch((error) => notify(error.message, "error"));
      }
    });
  };
  fill(
    box,
    el("h2", {}, "Owner and notifications"),
    el("div", { class: "action" }, "Owner ", owner),
    el("div", { class: "action" }, "Webhooks ", urls),
    el("div", { class: "action" }, el("button", { type: "button", onclick: save }, "Save owner and webhooks")),
    settings.notify.length
      ? table(
          "targets",
          ["URL", "Events", "Signed"],
          settings.notify.map((t) =>
            el("tr", { dataset: { url: t.url } }, el("td", {}, t.url), el("td", {}, t.events.join(", ")), el("td", {}, t.secret ? "yes" : "no")),
          ),
        )
      : el("p", { class: "quiet" }, "Nobody is told of this model's events."),
    log.notifications.length
      ? table(
          "notifications",
          ["Sent", "Version", "Event", "Status", "Attempts"],
          log.notifications.slice(0, 10).map((n) =>
            el(
              "tr",
              { dataset: { notification: n.id } },
              el("td", {}, when(n.created_at)),
              el("td", {}, n.version === null ? "-" : `v${n.version}`),
              el("td", {}, n.event),
              el("td", {}, n.status),
              el("td", {}, String(n.attempts)),
            ),
          ),
        )
      : null,
  );
}
