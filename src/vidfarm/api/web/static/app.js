// The dashboard's entry point: login, navigation between views, and who is logged in.
// Each view module exports render(main, params) and may return a cleanup function, called
// when the user leaves the view (to stop live streams and players).

import { ApiError, get, post, session, setUnauthorizedHandler } from "./api.js";
import { clear, describeError, flash, h, notice } from "./ui.js";
import * as jobs from "./jobs.js";
import * as videos from "./videos.js";
import * as video from "./video.js";
import * as workers from "./workers.js";
import * as xapi from "./xapi.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logoutButton = document.getElementById("logout");
const everywhereButton = document.getElementById("logout-everywhere");
let cleanup = null;
let loginMessage = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query) };
}

function viewFor(parts) {
  switch (parts[0] ?? "videos") {
    case "videos":
      return parts[1] ? [video, "videos"] : [videos, "videos"];
    case "jobs":
      return [jobs, "jobs"];
    case "workers":
      return [workers, "workers"];
    case "xapi":
      return [xapi, "xapi"];
    default:
      return [null, null];
  }
}

function showUser() {
  const me = session.me;
  nav.hidden = !me;
  logoutButton.hidden = !me;
  everywhereButton.hidden = !me;
  document.body.classList.toggle("is-admin", Boolean(me && me.role === "admin"));
  clear(who, me ? [h("span", { class: "name" }, me.name || "token"), " ", h("span", { class: `role role-${me.role}` }, me.role)] : []);
}

function renderLogin() {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "vf_…",
    required: true,
  });
  const error = h("p", { class: "notice error", id: "login-error", role: "alert", hidden: !loginMessage }, loginMessage ?? "");
  const remember = h("input", { type: "checkbox", id: "remember", name: "remember" });
  const form = h(
    "form",
    { class: "card login", id: "login-form" },
    h("h1", {}, "Log in"),
    h("p", { class: "muted" }, "Paste an API token. Create one on the server with ", h("code", {}, "vidfarm token create --role admin"), " (or ", h("code", {}, "--role user"), ")."),
    h("label", { for: "token" }, "API token"),
    input,
    h("div", { class: "row" }, remember, h("label", { for: "remember" }, "Remember me on this device")),
    error,
    h("button", { type: "submit", class: "primary" }, "Log in"),
    h("p", { class: "muted small" }, "The token is kept in this tab only (sessionStorage), or in this browser for every tab when remembered (localStorage); it is sent as Authorization: Bearer. \"Log out everywhere\" revokes it."),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.token = input.value.trim();
    try {
      session.me = await get("/api/v1/me");
    } catch (failure) {
      session.token = null;
      error.hidden = false;
      error.textContent =
        failure instanceof ApiError && failure.status === 401
          ? `This token is not accepted: ${failure.detail}.`
          : `Cannot log in: ${describeError(failure)}`;
      return;
    }
    if (remember.checked) session.remember(session.token);
    loginMessage = null;
    showUser();
    if (location.hash.startsWith("#/login") || !location.hash) location.hash = "#/videos";
    else route();
  });
  clear(main, form);
  input.focus();
}

async function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch {
      /* a view's cleanup must not block the next view */
    }
    cleanup = null;
  }
  if (!session.token) {
    session.me = null;
    showUser();
    renderLogin();
    return;
  }
  if (!session.me) {
    try {
      session.me = await get("/api/v1/me");
    } catch (failure) {
      if (failure.status === 401) session.token = null;
      loginMessage = failure.status === 401 ? "Your token is no longer valid: log in again." : describeError(failure);
      session.me = null;
      showUser();
      renderLogin();
      return;
    }
    showUser();
  }
  const { parts, query } = parseHash();
  if (parts[0] === "login") {
    location.hash = "#/videos";
    return;
  }
  const [view, page] = viewFor(parts);
  for (const link of nav.querySelectorAll("a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  if (!view) {
    clear(main, notice("error", `No page ${location.hash}.`));
    return;
  }
  if (session.me.role === "worker") {
    clear(main, notice("error", "This is a worker token: it can only report job progress. Log in with a user or admin token."));
    return;
  }
  clear(main);
  try {
    cleanup = (await view.render(main, { parts, query })) ?? null;
    if (document.activeElement === document.body || !document.activeElement) main.focus({ preventScroll: true });
  } catch (failure) {
    clear(main, notice("error", `This page failed to load: ${describeError(failure)}`));
  }
}

setUnauthorizedHandler((detail) => {
  session.token = null;
  session.me = null;
  loginMessage = `Logged out: ${detail}.`;
  route();
});

everywhereButton.addEventListener("click", async () => {
  if (!confirm("Revoke this token? Every browser and script using it is logged out; an admin creates a new one with vidfarm token create.")) return;
  try {
    await post("/api/v1/me/revoke");
  } catch (failure) {
    flash(`Cannot revoke the token: ${describeError(failure)}`, "error");
    return;
  }
  session.token = null;
  session.me = null;
  loginMessage = "Logged out everywhere: this token is revoked.";
  if (location.hash === "#/login") route();
  else location.hash = "#/login";
});

logoutButton.addEventListener("click", () => {
  session.token = null;
  session.me = null;
  loginMessage = null;
  flash("Logged out.");
  if (location.hash === "#/login") route();
  else location.hash = "#/login";
});

window.addEventListener("hashchange", route);
route();
