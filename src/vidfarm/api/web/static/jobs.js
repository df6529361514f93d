// Jobs: filter by state and type, live progress (Server-Sent Events), rank among waiting jobs,
// attempts, error and log tail; cancel, and restart the selected jobs (admins).

import { followJobs, get, post, session } from "./api.js";
import {
  badge,
  clear,
  describeError,
  figuresText,
  flash,
  formatDate,
  h,
  notice,
  progressBar,
  quietNote,
  setProgress,
  shortId,
  stepText,
  videoName,
} from "./ui.js";

const PAGE = 100;
const FINAL = new Set(["completed", "failed", "timeout", "cancelled"]);
const WAITING = new Set(["pending", "queued"]);
const REFRESH_MS = 5000;
const HEADERS = ["", "Job", "Type", "Video", "State", "Progress", "Rank", "Attempts", "Step", "Timing", "Created", "Finished", "Error"];

function rankText(job) {
  return WAITING.has(job.status) && job.rank ? `${job.rank} of ${job.waiting}` : "–";
}

function logText(job) {
  if ((job.log_tail ?? []).length) return job.log_tail.join("\n");
  if (job.status === "failed" || job.status === "timeout") return "(no tool output: the job ended before its encoder wrote a line; the error above says why)";
  if (FINAL.has(job.status)) return "(no output kept: the tool said nothing worth keeping)";
  return "(nothing yet)";
}

/** A chunked encode's parts, in media order: where each stands, and a way to open it. */
function chunkList(chunks) {
  return h(
    "ol",
    { class: "chunks" },
    chunks.map((c) =>
      h(
        "li",
        { dataset: { status: c.status, jobId: c.id } },
        h("a", { href: `#/jobs?job=${c.id}`, title: c.id }, c.type === "stitch" ? "stitch" : `${seconds(c.start)}–${seconds(c.end)}`),
        " ",
        badge(c.status),
        ` ${Math.round(c.progress)} %`,
        c.attempts > 1 ? ` · attempt ${c.attempts}` : "",
      ),
    ),
  );
}

function seconds(value) {
  return value == null ? "?" : `${Number(value).toFixed(0)} s`;
}

function detailPanel(job) {
  const restart = session.isAdmin && FINAL.has(job.status) ? h("button", { type: "button", class: "restart-one admin-only", dataset: { jobId: job.id } }, "Restart") : null;
  const cancel = !FINAL.has(job.status) ? h("button", { type: "button", class: "cancel-one", dataset: { jobId: job.id } }, "Cancel") : null;
  return h(
    "div",
    { class: "job-detail", dataset: { jobId: job.id } },
    h(
      "dl",
      {},
      h("dt", {}, "Job"),
      h("dd", {}, h("code", {}, job.id)),
      h("dt", {}, "Video"),
      h("dd", {}, job.video_id ? [h("a", { href: `#/videos/${job.video_id}` }, videoName(job)), " ", h("code", { class: "small" }, job.video_id)] : "–"),
      h("dt", {}, "Step"),
      h("dd", {}, stepText(job), " ", quietNote(job)),
      h("dt", {}, "Timing"),
      h("dd", {}, figuresText(job) || "–"),
      h("dt", {}, "Attempts"),
      h("dd", {}, `${job.attempts} of at most ${job.max_attempts}`),
      h("dt", {}, "Priority"),
      h("dd", {}, String(job.priority)),
      job.parent_id ? [h("dt", {}, "Part of"), h("dd", {}, h("a", { href: `#/jobs?job=${job.parent_id}` }, shortId(job.parent_id)))] : null,
      job.chunks?.length ? [h("dt", {}, "Chunks"), h("dd", {}, chunkList(job.chunks))] : null,
      h("dt", {}, "Parameters"),
      h("dd", {}, h("code", {}, JSON.stringify(job.params ?? {}))),
      h("dt", {}, "Started / finished"),
      h("dd", {}, `${formatDate(job.started_at)} / ${formatDate(job.finished_at)}`),
    ),
    job.error ? h("p", { class: "notice error job-error" }, job.error_class ? `${job.error_class}: ` : "", job.error) : null,
    h("h4", {}, "Log tail"),
    h("pre", { class: "log-tail" }, logText(job)),
    h("div", { class: "row" }, cancel, restart),
  );
}

export async function render(main, { query }) {
  const me = session.me;
  const statuses = me?.server?.job_statuses ?? ["pending", "queued", "running", "completed", "failed", "timeout", "cancelled"];
  const types = me?.server?.job_types ?? ["encode", "transcription"];
  const wantedStatus = query.get("status") ?? "";
  const wantedType = query.get("type") ?? "";
  const wantedVideo = query.get("video") ?? "";
  const openJob = query.get("job");
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const controller = new AbortController();
  const rows = new Map(); // job id -> {row, detailRow, job, cells}
  const opened = new Set(openJob ? [openJob] : []);

  const statusSelect = h("select", { id: "filter-status", "aria-label": "State" }, h("option", { value: "" }, "any state"), statuses.map((s) => h("option", { value: s, selected: s === wantedStatus }, s)));
  const typeSelect = h("select", { id: "filter-type", "aria-label": "Type" }, h("option", { value: "" }, "any type"), types.map((t) => h("option", { value: t, selected: t === wantedType }, t)));
  const applyFilters = () => {
    const params = new URLSearchParams();
    if (statusSelect.value) params.set("status", statusSelect.value);
    if (typeSelect.value) params.set("type", typeSelect.value);
    if (wantedVideo) params.set("video", wantedVideo);
    location.hash = `#/jobs${params.size ? `?${params}` : ""}`;
  };
  statusSelect.addEventListener("change", applyFilters);
  typeSelect.addEventListener("change", applyFilters);

  const live = h("span", { class: "live", id: "live-state" }, "connecting…");
  const waiting = h("span", { class: "muted", id: "waiting-total", title: "Jobs waiting for a worker, all filters aside" });
  const selectAll = h("input", { type: "checkbox", id: "select-all", "aria-label": "Select all" });
  const cancelSelected = h("button", { type: "button", id: "cancel-selected" }, "Cancel selected");
  const restartSelected = h("button", { type: "button", id: "restart-selected", class: "admin-only primary" }, "Restart selected");
  const tbody = h("tbody");
  const listError = h("div");
  const actionResult = h("div", { id: "action-result", role: "status" });
  const pager = h("div", { class: "pager" });

  function matches(job) {
    return (!wantedStatus || job.status === wantedStatus) && (!wantedType || job.type === wantedType) && (!wantedVideo || job.video_id === wantedVideo);
  }

  async function showDetail(id) {
    const entry = rows.get(id);
    if (!entry) return;
    if (!opened.has(id)) {
      entry.detailRow.hidden = true;
      return;
    }
    entry.detailRow.hidden = false;
    try {
      const job = await get(`/api/v1/jobs/${id}`, { signal: controller.signal });
      clear(entry.detailRow.firstChild, detailPanel(job));
    } catch (error) {
      if (error.name !== "AbortError") clear(entry.detailRow.firstChild, notice("error", describeError(error)));
    }
  }

  function update(entry, job) {
    entry.job = job;
    const { cells } = entry;
    entry.row.dataset.status = job.status;
    clear(cells.status, badge(job.status), " ", quietNote(job));
    setProgress(cells.progress, job.progress, job.status);
    clear(cells.rank, rankText(job));
    clear(cells.attempts, `${job.attempts}/${job.max_attempts}`);
    clear(cells.step, stepText(job));
    clear(cells.figures, figuresText(job));
    clear(cells.finished, formatDate(job.finished_at));
    clear(cells.error, job.error ?? "");
    // A cancellation is a choice, not a failure: said in plain grey, not in red.
    cells.error.className = job.status === "cancelled" ? "error-text neutral" : "error-text";
    waiting.textContent = `${job.waiting} waiting`;
  }

  /** A job that left the filtered state leaves the list (it is under its new state). */
  function drop(id) {
    const entry = rows.get(id);
    if (!entry) return;
    entry.row.remove();
    entry.detailRow.remove();
    rows.delete(id);
    opened.delete(id);
    if (!rows.size) clear(tbody, h("tr", { class: "empty" }, h("td", { colspan: 13, class: "muted" }, "No job matches.")));
  }

  function add(job, { top = false } = {}) {
    const check = h("input", { type: "checkbox", class: "select", value: job.id, "aria-label": `Select job ${job.id}` });
    const toggle = h("button", { type: "button", class: "link job-id", title: "Details, error and log tail" }, shortId(job.id));
    const cells = {
      status: h("td", { class: "status" }),
      progress: progressBar(job.progress, job.status),
      rank: h("td", { class: "rank" }),
      attempts: h("td", { class: "attempts" }),
      step: h("td", { class: "step" }),
      figures: h("td", { class: "figures" }),
      finished: h("td", {}),
      error: h("td", { class: "error-text" }),
    };
    const row = h(
      "tr",
      { class: "job", dataset: { jobId: job.id, type: job.type } },
      h("td", {}, check),
      h("td", {}, toggle),
      h("td", {}, job.parent_id ? [job.type, " ", h("a", { href: `#/jobs?job=${job.parent_id}`, class: "small parent-link" }, `of ${shortId(job.parent_id)}`)] : job.type),
      h("td", { class: "video-cell" }, job.video_id ? h("a", { href: `#/videos/${job.video_id}`, title: job.video_id }, videoName(job)) : "–"),
      cells.status,
      h("td", { class: "progress-cell" }, cells.progress),
      cells.rank,
      cells.attempts,
      cells.step,
      cells.figures,
      h("td", {}, formatDate(job.created_at)),
      cells.finished,
      cells.error,
    );
    // On a phone the row is a card: each cell says what it is (CSS shows data-label).
    Array.from(row.children).forEach((cell, index) => {
      if (HEADERS[index]) cell.dataset.label = HEADERS[index];
    });
    const detailRow = h("tr", { class: "detail-row", hidden: true }, h("td", { colspan: 13 }));
    const entry = { row, detailRow, job, cells };
    rows.set(job.id, entry);
    update(entry, job);
    toggle.addEventListener("click", () => {
      if (opened.has(job.id)) opened.delete(job.id);
      else opened.add(job.id);
      showDetail(job.id);
    });
    if (top) tbody.prepend(row, detailRow);
    else tbody.append(row, detailRow);
    if (opened.has(job.id)) showDetail(job.id);
  }

  async function load() {
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (wantedStatus) params.set("status", wantedStatus);
    if (wantedType) params.set("type", wantedType);
    if (wantedVideo) params.set("video_id", wantedVideo);
    let page;
    try {
      page = await get(`/api/v1/jobs?${params}`, { signal: controller.signal });
    } catch (error) {
      if (error.name !== "AbortError") clear(listError, notice("error", `Cannot list jobs: ${describeError(error)}`));
      return;
    }
    clear(listError);
    const fresh = rows.size === 0;
    for (const job of page.items) {
      const entry = rows.get(job.id);
      if (entry) update(entry, job);
      else add(job, { top: !fresh });
    }
    for (const [id, entry] of rows) if (!matches(entry.job)) drop(id);
    if (!rows.size) clear(tbody, h("tr", { class: "empty" }, h("td", { colspan: 13, class: "muted" }, "No job matches.")));
    else tbody.querySelector("tr.empty")?.remove();
    const prev = offset > 0 ? h("a", { href: `#/jobs?${new URLSearchParams({ ...Object.fromEntries(query), offset: String(Math.max(0, offset - PAGE)) })}` }, "← newer") : null;
    const next = page.items.length === PAGE ? h("a", { href: `#/jobs?${new URLSearchParams({ ...Object.fromEntries(query), offset: String(offset + PAGE) })}` }, "older →") : null;
    clear(pager, prev, " ", next);
  }

  function selected() {
    return Array.from(tbody.querySelectorAll("input.select:checked"), (box) => box.value);
  }

  async function act(ids, action) {
    if (!ids.length) {
      flash("Select jobs first.", "error");
      clear(actionResult, notice("error", "Select jobs first."));
      return;
    }
    const refused = [];
    let done = 0;
    for (const id of ids) {
      try {
        const job = await post(`/api/v1/jobs/${id}/${action}`);
        done += 1;
        const entry = rows.get(id);
        if (entry) update(entry, job);
        if (opened.has(id)) showDetail(id);
      } catch (error) {
        refused.push(`${shortId(id)}: ${describeError(error)}`);
      }
    }
    const verb = action === "restart" ? "Restarted" : "Cancelled";
    const said = `${verb} ${done} job${done === 1 ? "" : "s"}.${refused.length ? ` Refused: ${refused.join("; ")}` : ""}`;
    flash(said, refused.length ? "error" : "ok");
    // The toast goes away; what was refused stays said on the page until the next action.
    clear(actionResult, refused.length ? notice("error", said) : notice("ok", said));
    for (const box of tbody.querySelectorAll("input.select:checked")) box.checked = false;
    selectAll.checked = false;
  }

  selectAll.addEventListener("change", () => {
    for (const box of tbody.querySelectorAll("input.select")) box.checked = selectAll.checked;
  });
  cancelSelected.addEventListener("click", () => act(selected(), "cancel"));
  restartSelected.addEventListener("click", () => act(selected(), "restart"));
  tbody.addEventListener("click", (event) => {
    const button = event.target.closest("button.restart-one, button.cancel-one");
    if (button) act([button.dataset.jobId], button.classList.contains("restart-one") ? "restart" : "cancel");
  });

  clear(
    main,
    h(
      "section",
      { class: "card" },
      h("h1", {}, "Jobs"),
      h(
        "div",
        { class: "row toolbar" },
        h("label", { for: "filter-status" }, "State "),
        statusSelect,
        h("label", { for: "filter-type" }, " Type "),
        typeSelect,
        wantedVideo ? [" video ", h("code", {}, shortId(wantedVideo)), " ", h("a", { href: "#/jobs" }, "(all videos)")] : null,
        h("span", { class: "spacer" }),
        waiting,
        cancelSelected,
        restartSelected,
        live,
      ),
      actionResult,
      listError,
      h(
        "div",
        { class: "table-box" },
        h(
          "table",
          { class: "list jobs", id: "job-list" },
          h("thead", {}, h("tr", {}, h("th", {}, selectAll), HEADERS.slice(1).map((t) => h("th", {}, t)))),
          tbody,
        ),
      ),
      pager,
    ),
  );
  await load();

  followJobs(
    "",
    (job) => {
      const entry = rows.get(job.id);
      if (entry && !matches(job)) drop(job.id);
      else if (entry) {
        update(entry, job);
        if (opened.has(job.id)) showDetail(job.id);
      } else if (matches(job) && offset === 0) {
        tbody.querySelector("tr.empty")?.remove();
        add(job, { top: true });
      }
    },
    {
      signal: controller.signal,
      onState(state) {
        live.textContent = state === "live" ? "● live" : state;
        live.dataset.state = state;
      },
    },
  );
  // Ranks of waiting jobs move when another job starts: refresh them now and then.
  const timer = setInterval(load, REFRESH_MS);
  return () => {
    controller.abort();
    clearInterval(timer);
  };
}
