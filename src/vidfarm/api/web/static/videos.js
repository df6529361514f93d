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

/** Spoken language: the `pattern` is also written for Chromium's `v`-flag regex parser. */
export const LANGUAGE_PATTERN = "[A-Za-z]{2,3}([\\-_][A-Za-z0-9]{2,8})?";

function uploadPanel(onUploaded) {
  const fileInput = h("input", { type: "file", id: "upload-file", multiple: true, accept: "video/*,audio/*,.mkv,.mov,.mp4,.webm,.avi,.mxf,.ts", hidden: true });
  const language = h("input", {
    id: "upload-language",
    type: "text",
    placeholder: "e.g. en (optional)",
    maxlength: 16,
    pattern: LANGUAGE_PATTERN,
    title: "A language code such as en, fr or pt-BR: a transcription follows the encode",
  });
  const chosen = h("span", { class: "chosen muted", id: "upload-chosen" }, "No file chosen");
  const bar = progressBar(0);
  const speed = h("span", { class: "muted small upload-speed" });
  const status = h("div", { class: "upload-status", id: "upload-status", hidden: true }, bar, speed);
  const queueList = h("ul", { class: "upload-queue", id: "upload-queue", hidden: true });
  const result = h("div", { id: "upload-result", role: "status" });
  const cancel = h("button", { type: "button", id: "upload-cancel", hidden: true }, "Cancel upload");
  const submit = h("button", { type: "submit", class: "primary", id: "upload-submit", disabled: true }, "Upload");
  const maxBytes = session.me?.server?.max_upload_bytes;
  let files = [];
  let current = null; // the upload under way: {abort, cancelled}
  let busy = false;

  function choose(picked) {
    files = Array.from(picked ?? []);
    const tooBig = maxBytes ? files.filter((f) => f.size > maxBytes) : [];
    clear(chosen, files.length === 0 ? "No file chosen" : files.length === 1 ? `${files[0].name} (${formatBytes(files[0].size)})` : `${files.length} files (${formatBytes(files.reduce((t, f) => t + f.size, 0))})`);
    if (files.length) clear(result); // a new choice hides the last upload's outcome
    if (tooBig.length) clear(result, notice("error", `${tooBig.map((f) => f.name).join(", ")}: larger than this server accepts (${formatBytes(maxBytes)}).`));
    submit.disabled = !files.length || tooBig.length > 0 || busy;
  }

  const zone = h(
    "div",
    { class: "dropzone", id: "dropzone", tabindex: 0, role: "button", "aria-label": "Choose or drop video files" },
    h("strong", {}, "Drop video or audio files here"),
    h("span", { class: "muted" }, " or click to choose"),
  );
  zone.addEventListener("click", () => fileInput.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      fileInput.click();
    }
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    choose(event.dataTransfer?.files);
  });
  fileInput.addEventListener("change", () => choose(fileInput.files));

  const form = h(
    "form",
    { class: "card upload", id: "upload-form", novalidate: true },
    h("h2", {}, "Upload"),
    zone,
    fileInput,
    h("div", { class: "row" }, chosen),
    h("div", { class: "row" }, h("label", { for: "upload-language" }, "Spoken language"), language, h("span", { class: "muted small", id: "language-help" }, "a transcription follows the encode when set")),
    h("div", { class: "row" }, submit, cancel),
    status,
    queueList,
    result,
  );
  language.setAttribute("aria-describedby", "language-help");

  /** One file through the queue: its own line, bar and outcome; the shared bar follows it. */
  async function send(file, item, lang, queued) {
    const started = performance.now();
    const itemBar = item.querySelector(".progress");
    const outcome = item.querySelector(".outcome");
    let sent = 0;
    setProgress(bar, 0, "running");
    setProgress(itemBar, 0, "running");
    const upload = uploadFile(file, lang, {
      onProgress(loaded, total) {
        sent = (100 * loaded) / total;
        setProgress(bar, sent, "running");
        setProgress(itemBar, sent, "running");
        const seconds = (performance.now() - started) / 1000;
        speed.textContent = ` ${file.name}: ${formatBytes(loaded)} of ${formatBytes(total)}, ${formatBytes(loaded / Math.max(seconds, 0.001))}/s`;
        if (loaded === total) speed.textContent += " — checking the file on the server…";
      },
    });
    current = { abort: upload.abort, cancelled: false };
    try {
      const answer = await upload.done;
      setProgress(bar, 100, "completed");
      setProgress(itemBar, 100, "completed");
      item.dataset.state = "done";
      const said = notice(
        "ok",
        `Uploaded ${file.name}. `,
        h("a", { href: `#/videos/${answer.file_id}` }, "Open the video"),
        answer.job_id ? [" — encode job ", h("a", { href: `#/jobs?job=${answer.job_id}` }, answer.job_id.slice(0, 8)), " queued."] : " (no encode started: auto-encode is off).",
      );
      // In a queue each line says its outcome; alone, the file's outcome goes under the form.
      if (queued) clear(outcome, said);
      else result.append(said);
      onUploaded(answer);
      return true;
    } catch (error) {
      // The bar stays where the upload stopped, in the colour of what happened.
      const cancelled = current?.cancelled;
      setProgress(bar, sent, cancelled ? "cancelled" : "failed");
      setProgress(itemBar, sent, cancelled ? "cancelled" : "failed");
      item.dataset.state = cancelled ? "cancelled" : "failed";
      const said = cancelled ? notice("muted", `Upload of ${file.name} cancelled: nothing was kept.`) : notice("error", `Upload of ${file.name} refused: ${describeError(error)}`);
      if (queued) clear(outcome, said);
      else result.append(said);
      return !cancelled;
    } finally {
      current = null;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!files.length || busy) return;
    const lang = language.value.trim();
    if (lang && !new RegExp(`^(?:${LANGUAGE_PATTERN})$`, "v").test(lang)) {
      clear(result, notice("error", `"${lang}" is not a language code: use e.g. en, fr or pt-BR.`));
      language.setAttribute("aria-invalid", "true");
      language.focus();
      return;
    }
    language.removeAttribute("aria-invalid");
    busy = true;
    const batch = files;
    status.hidden = false;
    cancel.hidden = false;
    submit.disabled = true;
    speed.textContent = "";
    clear(result);
    const items = batch.map((file) => h("li", { dataset: { state: "waiting" } }, h("span", { class: "name" }, `${file.name} (${formatBytes(file.size)})`), progressBar(0), h("div", { class: "outcome muted" }, "waiting")));
    clear(queueList, items);
    queueList.hidden = batch.length < 2;
    window.addEventListener("beforeunload", warnLeaving);
    let stopped = false;
    try {
      for (const [index, file] of batch.entries()) {
        if (stopped) {
          items[index].dataset.state = "cancelled";
          clear(items[index].querySelector(".outcome"), "not sent (cancelled)");
          continue;
        }
        clear(items[index].querySelector(".outcome"), "sending…");
        stopped = !(await send(file, items[index], lang, batch.length > 1));
      }
    } finally {
      window.removeEventListener("beforeunload", warnLeaving);
      busy = false;
      cancel.hidden = true;
      speed.textContent = "";
      fileInput.value = "";
      choose([]);
      const done = items.filter((item) => item.dataset.state === "done").length;
      if (batch.length > 1) result.append(notice(done === batch.length ? "ok" : "error", `Uploaded ${done} of ${batch.length} files.`));
      if (done) flash(`Uploaded ${done} of ${batch.length} file${batch.length === 1 ? "" : "s"}.`, done === batch.length ? "ok" : "error");
    }
  });
  cancel.addEventListener("click", () => {
    if (!current) return;
    current.cancelled = true;
    current.abort();
  });
  return { form };
}

/** What a video's row says: first whether it plays, then what is under way or went wrong. */
function stateCell(video, jobsOfVideo) {
  const jobs = jobsOfVideo ?? [];
  const parts = [];
  const playable = video.playable || jobs.some((job) => job.type === "encode" && job.status === "completed");
  parts.push(playable ? h("span", { class: "badge status-completed status-playable", dataset: { state: "playable" } }, "playable") : h("span", { class: "badge status-cancelled", dataset: { state: "not-playable" } }, "not playable yet"));
  const seen = new Set();
  for (const job of jobs) {
    // newest first: what each job type is doing now, if it is news
    if (seen.has(job.type)) continue;
    seen.add(job.type);
    if (job.status === "completed" || job.status === "cancelled") continue;
    parts.push(" ", h("span", { class: "state-part", dataset: { type: job.type, jobId: job.id } }, h("span", { class: "muted small" }, `${job.type} `), badge(job.status), job.status === "running" ? ` ${Math.round(job.progress)} %` : ""));
  }
  return parts;
}

const SORTS = [
  ["newest", "Newest first"],
  ["oldest", "Oldest first"],
  ["longest", "Longest first"],
  ["shortest", "Shortest first"],
  ["title", "Title A–Z"],
  ["state", "Not playable first"],
];

export async function render(main, { query }) {
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const words = query.get("q") ?? "";
  const sort = SORTS.some(([value]) => value === query.get("sort")) ? query.get("sort") : "newest";
  const controller = new AbortController();
  const tbody = h("tbody");
  const pager = h("div", { class: "pager" });
  const listError = h("div");
  const rows = new Map(); // video id -> {cell, video}
  let jobsByVideo = new Map();

  const search = h("input", { type: "search", id: "video-search", value: words, placeholder: "Search titles", "aria-label": "Search videos by title" });
  const sortSelect = h("select", { id: "video-sort", "aria-label": "Sort videos" }, SORTS.map(([value, label]) => h("option", { value, selected: value === sort }, label)));
  const link = (changes) => {
    const params = new URLSearchParams({ q: words, sort, offset: String(offset), ...changes });
    for (const [key, value] of Array.from(params)) if (!value || (key === "sort" && value === "newest") || (key === "offset" && value === "0")) params.delete(key);
    return `#/videos${params.size ? `?${params}` : ""}`;
  };
  const tools = h("form", { class: "list-tools", id: "video-tools", role: "search" }, search, sortSelect, h("button", { type: "submit" }, "Search"));
  tools.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = link({ q: search.value.trim(), offset: "0" });
  });
  sortSelect.addEventListener("change", () => {
    location.hash = link({ sort: sortSelect.value, offset: "0" });
  });

  async function load() {
    let page;
    let jobList;
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset), sort });
    if (words) params.set("q", words);
    try {
      [page, jobList] = await Promise.all([
        get(`/api/v1/videos?${params}`, { signal: controller.signal }),
        get("/api/v1/jobs?limit=500", { signal: controller.signal }),
      ]);
    } catch (error) {
      if (error.name !== "AbortError") clear(listError, notice("error", `Cannot list videos: ${describeError(error)}`));
      return;
    }
    clear(listError);
    jobsByVideo = groupJobs(jobList.items);
    rows.clear();
    clear(
      tbody,
      page.items.length
        ? page.items.map((item) => {
            const state = h("td", { class: "state" }, stateCell(item, jobsByVideo.get(item.id)));
            rows.set(item.id, { cell: state, video: item });
            const title = item.title || item.filename;
            const remove = h("button", { type: "button", class: "link danger", "aria-label": `Delete ${title}` }, "Delete");
            remove.addEventListener("click", async () => {
              if (!confirm(`Delete ${title} (${item.filename}) and all its outputs?`)) return;
              try {
                await del(`/api/v1/videos/${item.id}`);
                flash(`Deleted ${title}.`);
                load();
              } catch (error) {
                flash(`Cannot delete: ${describeError(error)}`, "error");
                clear(listError, notice("error", `Cannot delete ${title}: ${describeError(error)}`));
              }
            });
            const picture = item.thumbnail ? h("img", { src: item.thumbnail, alt: "", loading: "lazy", width: 96, height: 54 }) : h("span", { class: "no-thumb", role: "img", "aria-label": "no picture yet" });
            return h(
              "tr",
              { dataset: { videoId: item.id } },
              h("td", { class: "thumb-cell" }, h("a", { href: `#/videos/${item.id}`, tabindex: -1, "aria-hidden": "true" }, picture)),
              h(
                "td",
                { class: "video-title-cell" },
                h("a", { href: `#/videos/${item.id}`, class: "video-link" }, title),
                title !== item.filename ? h("span", { class: "file muted small" }, item.filename) : null,
              ),
              h("td", { class: "duration-cell" }, formatDuration(item.duration)),
              h("td", { class: "size-cell" }, formatBytes(item.size)),
              h("td", { class: "language-cell" }, item.language ?? "–"),
              h("td", { class: "date-cell" }, formatDate(item.created_at)),
              state,
              h("td", {}, remove),
            );
          })
        : h("tr", {}, h("td", { colspan: 8, class: "muted empty-cell" }, words ? `No video title contains "${words}".` : "No video yet: upload one above.")),
    );
    const prev = offset > 0 ? h("a", { href: link({ offset: String(Math.max(0, offset - PAGE)) }) }, "← previous") : null;
    const next = offset + PAGE < page.total ? h("a", { href: link({ offset: String(offset + PAGE) }) }, "next →") : null;
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
      tools,
      listError,
      h(
        "table",
        { class: "list", id: "video-list" },
        h("thead", {}, h("tr", {}, ["", "Title", "Duration", "Size", "Language", "Uploaded", "State", ""].map((t, i) => h("th", { "aria-label": i === 0 ? "Picture" : i === 7 ? "Actions" : undefined }, t)))),
        tbody,
      ),
      pager,
    ),
  );
  await load();

  // Live badges: every job change updates its video's row.
  followJobs("", (job) => {
    const row = rows.get(job.video_id);
    if (!row) return;
    const list = (jobsByVideo.get(job.video_id) ?? []).filter((j) => j.id !== job.id);
    list.push(job);
    list.sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    jobsByVideo.set(job.video_id, list);
    clear(row.cell, stateCell(row.video, list));
  }, { signal: controller.signal });

  // An upload in progress goes on when the user opens another page; its end is flashed.
  return () => controller.abort();
}

/** The jobs of each video, newest first. */
function groupJobs(jobs) {
  const byVideo = new Map();
  for (const job of jobs) {
    if (!byVideo.has(job.video_id)) byVideo.set(job.video_id, []);
    byVideo.get(job.video_id).push(job);
  }
  return byVideo;
}
