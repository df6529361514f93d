// Small DOM helpers: elements are built with text nodes only, never from HTML strings, so a
// file name or an error message can never inject markup.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "dataset") Object.assign(element.dataset, value);
    else if (key === "style") Object.assign(element.style, value); // CSSOM: allowed by the CSP
    else if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (value === true) element.setAttribute(key, "");
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const total = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

export function formatDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "–";
}

export function badge(status) {
  return h("span", { class: `badge status-${status}`, dataset: { status } }, status);
}

export function progressBar(percent, status = "", label = "Progress") {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  const bar = h(
    "div",
    {
      class: `progress status-${status}`,
      role: "progressbar",
      "aria-label": label,
      "aria-valuemin": 0,
      "aria-valuemax": 100,
      "aria-valuenow": value.toFixed(0),
    },
    h("div", { class: "fill", style: { width: `${value}%` } }),
    h("span", { class: "label" }, `${value.toFixed(value < 100 && value % 1 ? 1 : 0)} %`),
  );
  return bar;
}

export function setProgress(bar, percent, status) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  bar.className = `progress status-${status ?? ""}`;
  bar.setAttribute("aria-valuenow", value.toFixed(0));
  bar.querySelector(".fill").style.width = `${value}%`;
  bar.querySelector(".label").textContent =
    `${value.toFixed(value < 100 && value % 1 ? 1 : 0)} %`;
}

export function notice(kind, ...text) {
  return h("p", { class: `notice ${kind}` }, ...text);
}

/** A short message under the top bar, gone after a few seconds. */
let flashTimer;
export function flash(message, kind = "info") {
  const box = document.getElementById("flash");
  box.className = `flash ${kind}`;
  box.textContent = message;
  box.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => {
    box.hidden = true;
  }, 6000);
}

/** What went wrong with a request, in one line, for the page. */
export function describeError(error) {
  if (error?.status) return `${error.detail} (HTTP ${error.status})`;
  return error?.message ?? String(error);
}

const FINAL_STATES = new Set(["completed", "failed", "timeout", "cancelled"]);

/** "40 s", "3 min", "2 h 5 min": a short span for figures. */
export function formatSpan(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const total = Math.max(0, Math.round(seconds));
  if (total < 90) return `${total} s`;
  if (total < 5400) return `${Math.round(total / 60)} min`;
  return `${Math.floor(total / 3600)} h ${Math.round((total % 3600) / 60)} min`;
}

const seconds = (iso) => (iso ? new Date(iso).getTime() / 1000 : null);

/**
 * What people ask of a job at a glance: how long it waited, how fast it encodes (x real time,
 * from the video's duration) and when it should end. Null where a figure means nothing.
 */
export function jobFigures(job, now = Date.now() / 1000) {
  const created = seconds(job.created_at);
  const started = seconds(job.started_at);
  const finished = seconds(job.finished_at);
  const figures = { wait: null, speed: null, eta: null };
  if (created !== null) figures.wait = (started ?? (FINAL_STATES.has(job.status) ? finished : now) ?? now) - created;
  const end = job.status === "running" ? now : job.status === "completed" ? finished : null;
  const fraction = job.status === "completed" ? 1 : (Number(job.progress) || 0) / 100;
  if (started !== null && end !== null && end > started && fraction > 0) {
    const elapsed = end - started;
    if (job.video_duration) figures.speed = (fraction * job.video_duration) / elapsed;
    if (job.status === "running" && fraction >= 0.02) figures.eta = (elapsed * (1 - fraction)) / fraction;
  }
  return figures;
}

/** The figures in one line: "waited 3 s · 2.4x real time · about 1 min left". */
export function figuresText(job, now) {
  const { wait, speed, eta } = jobFigures(job, now);
  const parts = [];
  if (wait !== null) parts.push(job.status === "pending" || job.status === "queued" ? `waiting ${formatSpan(wait)}` : `waited ${formatSpan(wait)}`);
  if (speed !== null) parts.push(`${speed.toFixed(1)}x real time`);
  if (eta !== null) parts.push(`about ${formatSpan(eta)} left`);
  return parts.join(" · ");
}

/** A job's step only while it means something: a finished job is not "publishing". */
export function stepText(job) {
  if (FINAL_STATES.has(job.status)) return job.status === "completed" ? "done" : "–";
  return job.step ?? (job.status === "running" ? "starting" : "waiting");
}

/** A running job whose worker went quiet: "no news for 40 s" (the lease may run out). */
export function quietNote(job) {
  return job.status === "running" && job.news ? h("span", { class: "quiet", title: "The worker has not reported lately: if it died, its lease runs out and the job is retried." }, job.news) : null;
}

/** A job's video as people know it: its title, else a short id. */
export function videoName(job) {
  return job.video_title || shortId(job.video_id);
}
