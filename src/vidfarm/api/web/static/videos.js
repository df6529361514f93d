// Videos: upload (drag and drop, progress bar) and the list with the state of each video.

import { ApiError, authHeaders, del, followJobs, get, session } from "./api.js";
import {
  badge,
  clear,
  describeError,
  flash,
  formatBytes,
  formatDate,
  formatDuration,
  h,
  notice,
  progressBar,
  setProgress,
} from "./ui.js";

const PAGE = 25;

/** Upload one file with XMLHttpRequest: fetch() cannot report upload progress. */
function uploadFile(file, language, { onProgress }) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    const query = language ? `?language=${encodeURIComponent(language)}` : "";
    xhr.open("POST", `/videos/upload${query}`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, xhr.response?.detail ?? `HTTP ${xhr.status}`));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload was interrupted (network error)")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "the upload was cancelled")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

function warnLeaving(event) {
  event.preventDefault(); // closing the tab would cut the upload
}

function uploadPanel(onUploaded) {
  const fileInput = h("input", { type: "file", id: "upload-file", accept: "video/*,audio/*,.mkv,.mov,.mp4,.webm,.avi,.mxf,.ts", hidden: true });
  const language = h("input", {
    id: "upload-language",
    type: "text",
    placeholder: "e.g. en (optional)",
    maxlength: 16,
    pattern: "[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?",
    title: "Spoken language: a transcription follows the encode",
  });
  const chosen = h("span", { class: "chosen muted" }, "No file chosen");
  const bar = progressBar(0);
  const speed = h("span", { class: "muted small upload-speed" });
  const status = h("div", { class: "upload-status", id: "upload-status", hidden: true }, bar, speed);
  const result = h("div", { id: "upload-result" });
  const cancel = h("button", { type: "button", hidden: true }, "Cancel upload");
  const submit = h("button", { type: "submit", class: "primary", id: "upload-submit", disabled: true }, "Upload");
  const maxBytes = session.me?.server?.max_upload_bytes;
  let file = null;
  let current = null;

  function choose(picked) {
    file = picked ?? null;
    clear(chosen, file ? `${file.name} (${formatBytes(file.size)})` : "No file chosen");
    submit.disabled = !file || Boolean(current);
    if (file) clear(result); // a new choice hides the last upload's outcome
    if (file && maxBytes && file.size > maxBytes) {
      clear(result, notice("error", `${file.name} is larger than this server accepts (${formatBytes(maxBytes)}).`));
      submit.disabled = true;
    }
  }

  const zone = h(
    "div",
    { class: "dropzone", id: "dropzone", tabindex: 0, role: "button", "aria-label": "Choose or drop a video file" },
    h("strong", {}, "Drop a video or audio file here"),
    h("span", { class: "muted" }, " or click to choose one"),
  );
  zone.addEventListener("click", () => fileInput.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") fileInput.click();
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    choose(event.dataTransfer?.files?.[0]);
  });
  fileInput.addEventListener("change", () => choose(fileInput.files?.[0]));

  const form = h(
    "form",
    { class: "card upload", id: "upload-form" },
    h("h2", {}, "Upload"),
    zone,
    fileInput,
    h("div", { class: "row" }, chosen),
    h("div", { class: "row" }, h("label", { for: "upload-language" }, "Spoken language "), language, h("span", { class: "muted small" }, " a transcription follows the encode when set")),
    h("div", { class: "row" }, submit, cancel),
    status,
    result,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file || current) return;
    const started = performance.now();
    status.hidden = false;
    cancel.hidden = false;
    submit.disabled = true;
    setProgress(bar, 0, "running");
    clear(result);
    window.addEventListener("beforeunload", warnLeaving);
    current = uploadFile(file, language.value.trim(), {
      onProgress(loaded, total) {
        setProgress(bar, (100 * loaded) / total, "running");
        const seconds = (performance.now() - started) / 1000;
        speed.textContent = ` ${formatBytes(loaded)} of ${formatBytes(total)}, ${formatBytes(loaded / Math.max(seconds, 0.001))}/s`;
        if (loaded === total) speed.textContent += " — checking the file on the server…";
      },
    });
    try {
      const answer = await current.done;
      setProgress(bar, 100, "completed");
      speed.textContent = "";
      clear(
        result,
        notice(
          "ok",
          `Uploaded ${file.name}. `,
          h("a", { href: `#/videos/${answer.file_id}` }, "Open the video"),
          answer.job_id ? [" — encode job ", h("a", { href: `#/jobs?job=${answer.job_id}` }, answer.job_id.slice(0, 8)), " queued."] : " (no encode started: auto-encode is off).",
        ),
      );
      flash(`Uploaded ${file.name}.`, "ok");
      onUploaded(answer);
      fileInput.value = "";
      choose(null);
    } catch (error) {
      setProgress(bar, 0, "failed");
      speed.textContent = "";
      clear(result, notice("error", `Upload refused: ${describeError(error)}`));
    } finally {
      window.removeEventListener("beforeunload", warnLeaving);
      current = null;
      cancel.hidden = true;
      submit.disabled = !file;
    }
  });
  cancel.addEventListener("click", () => current?.abort());
  return { form };
}

/** The newest job of each video: its state is the video's badge. */
function latestJobs(jobs) {
  const byVideo = new Map();
  for (const job of jobs) {
    if (!byVideo.has(job.video_id)) byVideo.set(job.video_id, []);
    byVideo.get(job.video_id).push(job);
  }
  return byVideo;
}

function stateCell(jobsOfVideo) {
  if (!jobsOfVideo?.length) return h("span", { class: "muted" }, "no job");
  const parts = [];
  const seen = new Set();
  for (const job of jobsOfVideo) {
    // newest first: one badge per job type
    if (seen.has(job.type)) continue;
    seen.add(job.type);
    parts.push(h("span", { class: "state-part", dataset: { type: job.type, jobId: job.id } }, h("span", { class: "muted small" }, `${job.type} `), badge(job.status), job.status === "running" ? ` ${Math.round(job.progress)} %` : ""));
  }
  return parts;
}

export async function render(main, { query }) {
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const controller = new AbortController();
  const tbody = h("tbody");
  const pager = h("div", { class: "pager" });
  const listError = h("div");
  const rows = new Map(); // video id -> state cell
  let jobsByVideo = new Map();

  async function load() {
    let page;
    let jobList;
    try {
      [page, jobList] = await Promise.all([
        get(`/api/v1/videos?limit=${PAGE}&offset=${offset}`, { signal: controller.signal }),
        get("/api/v1/jobs?limit=500", { signal: controller.signal }),
      ]);
    } catch (error) {
      if (error.name !== "AbortError") clear(listError, notice("error", `Cannot list videos: ${describeError(error)}`));
      return;
    }
    clear(listError);
    jobsByVideo = latestJobs(jobList.items);
    rows.clear();
    clear(
      tbody,
      page.items.length
        ? page.items.map((item) => {
            const state = h("td", { class: "state" }, stateCell(jobsByVideo.get(item.id)));
            rows.set(item.id, state);
            const remove = h("button", { type: "button", class: "link danger", title: "Delete the video, its jobs and media" }, "Delete");
            remove.addEventListener("click", async () => {
              if (!confirm(`Delete ${item.filename} and all its outputs?`)) return;
              try {
                await del(`/api/v1/videos/${item.id}`);
                flash(`Deleted ${item.filename}.`);
                load();
              } catch (error) {
                flash(`Cannot delete: ${describeError(error)}`, "error");
              }
            });
            return h(
              "tr",
              { dataset: { videoId: item.id } },
              h("td", {}, h("a", { href: `#/videos/${item.id}`, class: "video-link" }, item.filename)),
              h("td", {}, formatDuration(item.duration)),
              h("td", {}, formatBytes(item.size)),
              h("td", {}, item.language ?? "–"),
              h("td", {}, formatDate(item.created_at)),
              state,
              h("td", {}, remove),
            );
          })
        : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No video yet: upload one above.")),
    );
    const prev = offset > 0 ? h("a", { href: `#/videos?offset=${Math.max(0, offset - PAGE)}` }, "← newer") : null;
    const next = offset + PAGE < page.total ? h("a", { href: `#/videos?offset=${offset + PAGE}` }, "older →") : null;
    clear(pager, prev, ` ${page.total ? offset + 1 : 0}–${Math.min(offset + PAGE, page.total)} of ${page.total} `, next);
  }

  const upload = uploadPanel(() => load());
  clear(
    main,
    upload.form,
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Videos"),
      listError,
      h(
        "table",
        { class: "list", id: "video-list" },
        h("thead", {}, h("tr", {}, ["File", "Duration", "Size", "Language", "Uploaded", "State", ""].map((t) => h("th", {}, t)))),
        tbody,
      ),
      pager,
    ),
  );
  await load();

  // Live badges: every job change updates its video's row.
  followJobs("", (job) => {
    const cell = rows.get(job.video_id);
    if (!cell) return;
    const list = (jobsByVideo.get(job.video_id) ?? []).filter((j) => j.id !== job.id);
    list.push(job);
    list.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    jobsByVideo.set(job.video_id, list);
    clear(cell, stateCell(list));
  }, { signal: controller.signal });

  // An upload in progress goes on when the user opens another page; its end is flashed.
  return () => controller.abort();
}
