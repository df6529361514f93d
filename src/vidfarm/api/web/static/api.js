// The JSON API seen from the dashboard: the token, requests, errors and media URLs.

const TOKEN_KEY = "vidfarm.token";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export const session = {
  me: null, // {name, role, token_id, server: {...}} once logged in

  // This tab only (sessionStorage), or every tab of this browser when the user asked to be
  // remembered on this device (localStorage). Logging out forgets both.
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else {
      sessionStorage.removeItem(TOKEN_KEY);
      localStorage.removeItem(TOKEN_KEY);
    }
  },
  remember(value) {
    localStorage.setItem(TOKEN_KEY, value);
  },
  get remembered() {
    return localStorage.getItem(TOKEN_KEY) !== null;
  },
  get isAdmin() {
    return this.me?.role === "admin";
  },
};

export function authHeaders() {
  const token = session.token;
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** A listener for 401s (the token was revoked meanwhile): set by the app. */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

async function detailOf(response) {
  try {
    const body = await response.json();
    if (typeof body?.detail === "string") return body.detail;
    return JSON.stringify(body?.detail ?? body);
  } catch {
    return `HTTP ${response.status} ${response.statusText}`;
  }
}

/** fetch() with the token; JSON in and out; non-2xx raise ApiError with the server's detail. */
export async function api(method, path, body = undefined, { signal } = {}) {
  const headers = { ...authHeaders(), Accept: "application/json" };
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, `the server cannot be reached (${error.message})`);
  }
  if (!response.ok) {
    const detail = await detailOf(response);
    if (response.status === 401 && path !== "/api/v1/me") onUnauthorized(detail);
    throw new ApiError(response.status, detail);
  }
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, options) => api("GET", path, undefined, options);
export const post = (path, body, options) => api("POST", path, body ?? {}, options);
export const patch = (path, body, options) => api("PATCH", path, body, options);
export const del = (path, options) => api("DELETE", path, undefined, options);

/**
 * A media URL a <video>, <track> or <a download> can use. The dashboard gets signed URLs from
 * /api/v1/videos/{id}/playback (the signature is in the path): the token never goes in a URL.
 */
export function mediaUrl(url) {
  return url;
}

/** The same signed URL, served as an attachment. */
export function downloadUrl(url) {
  const parsed = new URL(url, location.href);
  parsed.searchParams.set("download", "true");
  return parsed.href;
}

/**
 * Server-Sent Events over fetch() (EventSource cannot send an Authorization header).
 * Calls onEvent(type, data) per event; resolves when the stream ends; reconnects are the
 * caller's business. Abort with the signal.
 */
export async function streamEvents(path, onEvent, { signal, onOpen } = {}) {
  const response = await fetch(path, {
    headers: { ...authHeaders(), Accept: "text/event-stream" },
    signal,
  });
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  onOpen?.();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) type = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) {
        let parsed;
        try {
          parsed = JSON.parse(data.join("\n"));
        } catch {
          parsed = data.join("\n");
        }
        onEvent(type, parsed);
      }
    }
  }
}

/** Follow job events for as long as the signal lives, reconnecting after a drop. */
export function followJobs(query, onJob, { signal, onState } = {}) {
  const path = `/api/v1/jobs/events${query ? `?${query}` : ""}`;
  (async () => {
    let ended = false; // following given jobs: the server says "end" once all are final
    while (!signal?.aborted) {
      try {
        await streamEvents(
          path,
          (type, data) => {
            if (type === "job") onJob(data);
            if (type === "end") ended = true;
          },
          { signal, onOpen: () => onState?.("live") },
        );
        if (ended) return; // otherwise the server stopped (a restart): follow again
      } catch (error) {
        if (signal?.aborted) return;
        onState?.(error.status === 401 ? "unauthorized" : "reconnecting");
        if (error.status === 401) return;
      }
      onState?.("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  })();
}
