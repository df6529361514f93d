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

export function progressBar(percent, status = "") {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  const bar = h(
    "div",
    {
      class: `progress status-${status}`,
      role: "progressbar",
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
