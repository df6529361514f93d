// Workers and runners: the Celery workers online with their active jobs, and the runner
// managers (add, edit, disable, test the connection). Both APIs are admin-only; a server
// without one says so instead of failing.

import { del, get, patch, post, session } from "./api.js";
import { clear, describeError, flash, formatDate, h, notice, progressBar, shortId } from "./ui.js";

const REFRESH_MS = 5000;

function unavailable(what, error) {
  if (error.status === 404) return notice("muted", `${what} is not available on this server (${error.detail}; HTTP 404).`);
  if (error.status === 403) return notice("muted", `${what}: only admins can see this (${error.detail}).`);
  return notice("error", `Cannot load ${what.toLowerCase()}: ${describeError(error)}`);
}

function workersView(data) {
  const transport = h("p", { id: "transport" }, "Transport: ", h("strong", {}, data.transport));
  if (!data.workers?.length) {
    const why = data.transport === "celery" ? "No Celery worker answered." : data.transport === "local" ? "Jobs run in the embedded worker pool of vidfarm serve." : "Jobs run on the runner managers below.";
    return [transport, notice("muted", why)];
  }
  return [
    transport,
    h(
      "table",
      { class: "list", id: "worker-list" },
      h("thead", {}, h("tr", {}, ["Worker", "Queues", "State", "Active jobs"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        data.workers.map((worker) =>
          h(
            "tr",
            { dataset: { worker: worker.name } },
            h("td", {}, worker.name),
            h("td", {}, (worker.queues ?? []).join(", ") || "–"),
            h("td", {}, h("span", { class: `badge ${worker.online ? "status-completed" : "status-failed"}` }, worker.online ? "online" : "offline")),
            h(
              "td",
              {},
              worker.active?.length
                ? worker.active.map((job) => h("div", { class: "active-job" }, h("a", { href: `#/jobs?job=${job.job_id}` }, shortId(job.job_id)), ` ${job.type ?? ""} `, job.video_title ? h("span", { class: "muted" }, `${job.video_title} `) : null, progressBar(job.progress, "running")))
                : h("span", { class: "muted" }, "idle"),
            ),
          ),
        ),
      ),
    ),
  ];
}

function runnerForm(runner, onSaved, onCancel) {
  const editing = Boolean(runner);
  const field = (name, attrs) => h("input", { name, id: `runner-${name}`, ...attrs });
  const name = field("name", { required: true, maxlength: 128, value: runner?.name ?? "" });
  const url = field("url", { required: true, type: "url", placeholder: "https://runner.example.org", value: runner?.url ?? "" });
  const priority = field("priority", { type: "number", step: 1, value: String(runner?.priority ?? 0) });
  const token = field("token", { type: "password", autocomplete: "off", placeholder: editing ? "unchanged" : "the runner's token", required: !editing });
  const active = field("active", { type: "checkbox", checked: runner ? runner.active : true });
  const error = h("p", { class: "notice error", hidden: true });
  const form = h(
    "form",
    { class: "runner-form", id: editing ? `runner-edit-${runner.id}` : "runner-add" },
    h("h3", {}, editing ? `Edit ${runner.name}` : "Add a runner manager"),
    h("div", { class: "grid" }, h("label", { for: "runner-name" }, "Name"), name, h("label", { for: "runner-url" }, "URL"), url, h("label", { for: "runner-priority" }, "Priority"), priority, h("label", { for: "runner-token" }, "Token"), token, h("label", { for: "runner-active" }, "Active"), active),
    error,
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Add"), onCancel ? h("button", { type: "button", onclick: onCancel }, "Cancel") : null),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value.trim(), url: url.value.trim(), priority: Number(priority.value) || 0, active: active.checked };
    if (token.value) body.token = token.value;
    try {
      if (editing) await patch(`/api/v1/runners/${runner.id}`, body);
      else await post("/api/v1/runners", body);
      flash(editing ? `Saved ${body.name}.` : `Added ${body.name}.`, "ok");
      onSaved();
    } catch (failure) {
      error.hidden = false;
      error.textContent = describeError(failure);
    }
  });
  return form;
}

function testResult(result) {
  const parts = [result.ok ? "Connection OK" : "Connection failed"];
  if (result.status_code !== null && result.status_code !== undefined) parts.push(`HTTP ${result.status_code}`);
  if (result.latency_ms !== null && result.latency_ms !== undefined) parts.push(`${Math.round(result.latency_ms)} ms`);
  const warnings = (result.warnings || []).map((text) => ` Warning: ${text}`).join("");
  return h("span", { class: `test-result ${result.ok ? "ok" : "failed"}`, dataset: { ok: String(result.ok) } }, `${parts.join(" · ")}: ${result.message}${warnings}`);
}

function healthBadge(answer) {
  const words = answer.ok ? `healthy${answer.latency_ms !== null && answer.latency_ms !== undefined ? ` (${Math.round(answer.latency_ms)} ms)` : ""}` : "unreachable";
  // A vidfarm runner says it also takes chunks of long encodes (a foreign Esup-Runner does not).
  const chunks = (answer.task_types ?? []).includes("vidfarm_encode_chunk");
  return [
    h("span", { class: `badge ${answer.ok ? "status-completed" : "status-failed"}`, title: answer.message, dataset: { ok: String(answer.ok) } }, words),
    chunks ? h("span", { class: "muted takes-chunks", title: "Long encodes are split into chunks that vidfarm runners share" }, " · takes chunks") : null,
  ];
}

function runnersView(runners, reload, transport, { autoCheck = false } = {}) {
  const admin = session.isAdmin;
  const checks = [];
  const rows = runners.map((runner) => {
    const result = h("div", { class: "test-box" });
    const test = h("button", { type: "button", class: "test-connection" }, "Test connection");
    test.addEventListener("click", async () => {
      test.disabled = true;
      clear(result, h("span", { class: "muted" }, "testing…"));
      try {
        const answer = await post(`/api/v1/runners/${runner.id}/test`);
        clear(result, testResult(answer));
        clear(health, healthBadge(answer));
      } catch (error) {
        clear(result, h("span", { class: "test-result failed", dataset: { ok: "false" } }, `Test refused: ${describeError(error)}`));
      } finally {
        test.disabled = false;
      }
    });
    const health = h("td", { class: "health" }, h("span", { class: "muted" }, !runner.active ? "not checked (disabled)" : autoCheck ? "checking…" : "not checked"));
    const editRow = h("tr", { class: "edit-row", hidden: true }, h("td", { colspan: 8 }));
    const edit = h("button", { type: "button", class: "admin-only" }, "Edit");
    edit.addEventListener("click", () => {
      editRow.hidden = !editRow.hidden;
      clear(editRow.firstChild, editRow.hidden ? [] : runnerForm(runner, reload, () => (editRow.hidden = true)));
    });
    const toggle = h("button", { type: "button", class: "admin-only toggle-active" }, runner.active ? "Disable" : "Enable");
    toggle.addEventListener("click", async () => {
      try {
        await patch(`/api/v1/runners/${runner.id}`, { active: !runner.active });
        flash(`${runner.name} ${runner.active ? "disabled" : "enabled"}.`, "ok");
        reload();
      } catch (error) {
        flash(`Cannot change ${runner.name}: ${describeError(error)}`, "error");
      }
    });
    const remove = h("button", { type: "button", class: "admin-only delete-runner link danger" }, "Delete");
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete the runner manager ${runner.name}? Jobs are no longer sent to it.`)) return;
      try {
        await del(`/api/v1/runners/${runner.id}`);
        flash(`Deleted ${runner.name}.`, "ok");
        reload();
      } catch (error) {
        clear(result, h("span", { class: "test-result failed" }, `Cannot delete: ${describeError(error)}`));
      }
    });
    if (runner.active && autoCheck) checks.push(() => post(`/api/v1/runners/${runner.id}/test`).then((answer) => clear(health, healthBadge(answer)), (error) => clear(health, h("span", { class: "muted" }, describeError(error)))));
    return [
      h(
        "tr",
        { class: "runner", dataset: { runnerId: runner.id, name: runner.name } },
        h("td", {}, runner.name),
        h("td", {}, h("code", { class: "url" }, runner.url)),
        h("td", {}, String(runner.priority)),
        h("td", {}, h("span", { class: `badge ${runner.active ? "status-completed" : "status-cancelled"}` }, runner.active ? "active" : "disabled")),
        health,
        h("td", { class: "last-contact" }, runner.last_used_at ? formatDate(runner.last_used_at) : h("span", { class: "muted" }, "never sent a job")),
        h("td", {}, formatDate(runner.created_at)),
        h("td", { class: "runner-actions" }, h("div", { class: "row" }, test, edit, toggle, remove), result),
      ),
      editRow,
    ];
  });
  // Health of the active managers, checked when the page opens (not after every edit).
  for (const check of checks) check();
  return [
    transport && transport !== "runners"
      ? notice("muted", h("span", { id: "runners-unused" }, `This server runs jobs on the ${transport} transport: the managers below receive no job until VIDFARM_DISPATCHER=runners.`))
      : null,
    runners.length
      ? h(
          "div",
          { class: "table-box" },
          h(
            "table",
            { class: "list", id: "runner-list" },
            h("thead", {}, h("tr", {}, ["Name", "URL", "Priority", "State", "Health", "Last job sent", "Added", ""].map((t, i) => h("th", { "aria-label": i === 7 ? "Actions" : undefined }, t)))),
            h("tbody", {}, rows),
          ),
        )
      : notice("muted", "No runner manager yet."),
    admin ? runnerForm(null, reload) : null,
  ];
}

export async function render(main) {
  const controller = new AbortController();
  const workersBox = h("div", { id: "workers" }, h("p", { class: "muted" }, "Loading…"));
  const runnersBox = h("div", { id: "runners" }, h("p", { class: "muted" }, "Loading…"));
  clear(
    main,
    h("section", { class: "card" }, h("h1", {}, "Workers"), workersBox),
    h("section", { class: "card" }, h("h1", {}, "Runner managers"), runnersBox),
  );

  async function loadWorkers() {
    try {
      clear(workersBox, workersView(await get("/api/v1/workers", { signal: controller.signal })));
    } catch (error) {
      if (error.name !== "AbortError") clear(workersBox, unavailable("The worker list", error));
    }
  }

  let first = true;
  async function loadRunners() {
    try {
      const runners = await get("/api/v1/runners", { signal: controller.signal });
      clear(runnersBox, runnersView(runners, loadRunners, session.me?.server?.transport, { autoCheck: first }));
      first = false;
    } catch (error) {
      if (error.name !== "AbortError") clear(runnersBox, unavailable("Runner management", error));
    }
  }

  await Promise.all([loadWorkers(), loadRunners()]);
  // Workers come and go: refresh them (runners only change when someone edits them).
  const timer = setInterval(loadWorkers, REFRESH_MS);
  return () => {
    controller.abort();
    clearInterval(timer);
  };
}
