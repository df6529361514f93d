// xAPI: the outbox's counts, whether delivery is paused, the dead letters with the LRS's
// reasons, and redelivery (admins).

import { get, post, session } from "./api.js";
import { clear, describeError, flash, formatDate, h, notice, shortId } from "./ui.js";

const REFRESH_MS = 5000;

function counts(status) {
  const card = (label, value, kind = "") => h("div", { class: `stat ${kind}`, dataset: { stat: label } }, h("span", { class: "value" }, String(value ?? 0)), h("span", { class: "label" }, label));
  return [
    h("div", { class: "stats", id: "xapi-counts" }, card("pending", status.pending), card("retrying", status.retrying), card("delivered", status.delivered, "ok"), card("dead", status.dead, status.dead ? "bad" : "")),
    status.paused ? notice("error", `Delivery is paused: ${status.pause_reason ?? "the LRS refused our credentials"}.`) : null,
    status.last_error ? h("p", { class: "muted" }, `Last delivery error: ${status.last_error}`) : null,
    status.next_attempt_at ? h("p", { class: "muted small" }, `Next attempt: ${formatDate(status.next_attempt_at)}`) : null,
    status.oldest_pending_at ? h("p", { class: "muted small" }, `Oldest pending statement: ${formatDate(status.oldest_pending_at)}`) : null,
  ];
}

/** Reasons stored before the LRS client said them in words: `{'message': 'x'}` -> `x`. */
export function readable(reason) {
  if (!reason) return "–";
  const match = /^\{\s*'(?:message|error|reason|detail)'\s*:\s*(['"])(.*)\1\s*[,}]/s.exec(reason);
  return match ? match[2] : reason;
}

export async function render(main) {
  const controller = new AbortController();
  const enabled = session.me?.server?.xapi_enabled;
  const statusBox = h("div", { id: "xapi-status-box" });
  const deadBox = h("div", { id: "dead-letters" });
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select all dead letters" });
  const redeliverSelected = h("button", { type: "button", id: "redeliver-selected", class: "primary" }, "Redeliver selected");
  const redeliverAll = h("button", { type: "button", id: "redeliver-all" }, "Redeliver all");

  async function loadStatus() {
    try {
      clear(statusBox, counts(await get("/api/v1/xapi/status", { signal: controller.signal })));
    } catch (error) {
      if (error.name !== "AbortError") clear(statusBox, notice("error", `Cannot read the outbox: ${describeError(error)}`));
    }
  }

  async function loadDead() {
    if (!session.isAdmin) {
      clear(deadBox, notice("muted", "Dead letters are shown to admins only."));
      return;
    }
    let page;
    try {
      page = await get("/api/v1/xapi/dead?limit=200", { signal: controller.signal });
    } catch (error) {
      if (error.name !== "AbortError") clear(deadBox, notice("error", `Cannot list dead letters: ${describeError(error)}`));
      return;
    }
    const checked = new Set(Array.from(deadBox.querySelectorAll("input.select:checked"), (box) => box.value));
    if (!page.items.length) {
      clear(deadBox, notice("muted", enabled ? "No dead letter: the LRS accepted every statement it was sent." : "No dead letter (xAPI is off: no statement is sent)."));
      return;
    }
    clear(
      deadBox,
      h("div", { class: "row toolbar" }, redeliverSelected, redeliverAll),
      h(
        "div",
        { class: "table-box" },
        h(
        "table",
        { class: "list", id: "dead-list" },
        h("thead", {}, h("tr", {}, h("th", {}, selectAll), ["Statement", "Video", "LRS answer", "Reason", "Stored", ""].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          page.items.map((item) =>
            h(
              "tr",
              { class: "dead", dataset: { id: item.id } },
              h("td", {}, h("input", { type: "checkbox", class: "select", value: item.id, checked: checked.has(item.id), "aria-label": `Select statement ${shortId(item.id)}` })),
              h("td", {}, h("code", {}, shortId(item.id))),
              h("td", { class: "video-cell" }, item.video_id ? h("a", { href: `#/videos/${item.video_id}`, title: item.video_id }, item.video_title ?? shortId(item.video_id)) : "–"),
              h("td", {}, item.status ? `HTTP ${item.status}` : "–"),
              h("td", { class: "reason" }, readable(item.reason)),
              h("td", {}, formatDate(item.created_at)),
              h("td", { class: "statement-cell" }, h("details", {}, h("summary", {}, "statement"), h("pre", {}, JSON.stringify(item.statement, null, 2)))),
            ),
          ),
        ),
        ),
      ),
    );
  }

  async function redeliver(ids) {
    try {
      const answer = await post("/api/v1/xapi/dead/redeliver", ids ? { ids } : {});
      flash(`${answer.redelivered} statement${answer.redelivered === 1 ? "" : "s"} back in the queue.`, "ok");
    } catch (error) {
      flash(`Cannot redeliver: ${describeError(error)}`, "error");
    }
    await Promise.all([loadStatus(), loadDead()]);
  }

  selectAll.addEventListener("change", () => {
    for (const box of deadBox.querySelectorAll("input.select")) box.checked = selectAll.checked;
  });
  redeliverSelected.addEventListener("click", () => {
    const ids = Array.from(deadBox.querySelectorAll("input.select:checked"), (box) => box.value);
    if (!ids.length) flash("Select dead letters first.", "error");
    else redeliver(ids);
  });
  redeliverAll.addEventListener("click", () => redeliver(null));

  clear(
    main,
    h(
      "section",
      { class: "card" },
      h("h1", {}, "xAPI outbox"),
      h("p", { class: "muted", id: "xapi-enabled" }, enabled ? "Player events are accepted on /xapi/video/ and delivered to the LRS." : "xAPI is disabled on this server (VIDFARM_XAPI_ENABLED): players send no events."),
      statusBox,
    ),
    h("section", { class: "card" }, h("h2", {}, "Dead letters"), deadBox),
  );
  await Promise.all([loadStatus(), loadDead()]);
  const timer = setInterval(() => {
    loadStatus();
    if (!deadBox.querySelector("input.select:checked, details[open]")) loadDead();
  }, REFRESH_MS);
  return () => {
    controller.abort();
    clearInterval(timer);
  };
}
