// One video: the player, its outputs with download links, its jobs, and new encodes.

import { downloadUrl, followJobs, get, mediaUrl, patch, post, session } from "./api.js";
import { createPlayer } from "./player.js";
import { shareCard } from "./share.js";
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
  quietNote,
  shortId,
} from "./ui.js";

const FINAL = new Set(["completed", "failed", "timeout", "cancelled"]);

function outputsTable(detail) {
  if (!detail.outputs.length) return notice("muted", "No output yet.");
  return h(
    "table",
    { class: "list", id: "outputs" },
    h("thead", {}, h("tr", {}, ["Kind", "File", "Resolution", "Size", ""].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      detail.outputs.map((output) =>
        h(
          "tr",
          { dataset: { kind: output.kind } },
          h("td", {}, output.kind),
          h("td", {}, h("a", { href: mediaUrl(output.url), target: "_blank", rel: "noopener" }, output.path)),
          h("td", {}, output.width && output.height ? `${output.width}×${output.height}` : "–"),
          h("td", {}, formatBytes(output.size)),
          h("td", {}, h("a", { href: downloadUrl(output.url), download: output.path, class: "download" }, "Download")),
        ),
      ),
    ),
  );
}

function jobsTable(detail) {
  return h(
    "table",
    { class: "list", id: "video-jobs" },
    h("thead", {}, h("tr", {}, ["Job", "Type", "State", "Progress", "Attempts", "Created", "Error"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      detail.jobs.map((job) =>
        h(
          "tr",
          { dataset: { jobId: job.id } },
          h("td", {}, h("a", { href: `#/jobs?job=${job.id}` }, shortId(job.id))),
          h("td", {}, job.type),
          h("td", {}, badge(job.status), " ", quietNote(job)),
          h("td", {}, progressBar(job.progress, job.status)),
          h("td", {}, `${job.attempts}/${job.max_attempts}`),
          h("td", {}, formatDate(job.created_at)),
          h("td", { class: job.status === "cancelled" ? "error-text neutral" : "error-text" }, job.error ?? ""),
        ),
      ),
    ),
  );
}

/** What the result area under the actions says: kept on the page, not only in a toast. */
function say(box, kind, text) {
  clear(box, notice(kind, text));
  flash(text, kind === "error" ? "error" : "ok");
}

function actions(detail, reload) {
  const said = h("div", { id: "action-result", role: "status" });
  const language = h("input", { type: "text", placeholder: "en", maxlength: 16, id: "transcribe-language", value: detail.language ?? "" });
  const transcribe = h("button", { type: "button", id: "transcribe" }, "Transcribe");
  transcribe.addEventListener("click", async () => {
    try {
      const job = await post(`/api/v1/videos/${detail.id}/transcribe`, { language: language.value.trim() || null });
      say(said, "ok", `Transcription job ${shortId(job.id)} queued.`);
      reload();
    } catch (error) {
      say(said, "error", `Cannot transcribe: ${describeError(error)}`);
    }
  });

  const profiles = session.me?.server?.profiles ?? [];
  const profile = h("select", { id: "encode-profile" }, h("option", { value: "" }, "default profile"), profiles.map((name) => h("option", { value: name }, name)));
  const resolution = h("input", { id: "encode-resolution", type: "text", inputmode: "numeric", placeholder: "1280:720", pattern: "\\d{1,5}:\\d{1,5}", maxlength: 11 });
  const start = h("input", { id: "encode-start", type: "number", min: 0, step: "any", placeholder: "0" });
  const end = h("input", { id: "encode-end", type: "number", min: 0, step: "any", placeholder: detail.duration ? detail.duration.toFixed(1) : "" });
  const encode = h("button", { type: "submit", id: "encode-again" }, "Encode again");
  const encodeForm = h(
    "form",
    { class: "encode-form", id: "encode-form" },
    h("label", { for: "encode-profile" }, "Profile"),
    profile,
    h("label", { for: "encode-resolution" }, "Largest size"),
    resolution,
    h("label", { for: "encode-start" }, "Cut from (s)"),
    start,
    h("label", { for: "encode-end" }, "to (s)"),
    end,
    encode,
  );
  encodeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    if (profile.value) body.profile = profile.value;
    if (resolution.value.trim()) body.resolution = resolution.value.trim();
    if (start.value !== "") body.start = Number(start.value);
    if (end.value !== "") body.end = Number(end.value);
    try {
      const job = await post(`/api/v1/videos/${detail.id}/encode`, body);
      say(said, "ok", `Encode job ${shortId(job.id)} queued.`);
      reload();
    } catch (error) {
      say(said, "error", `Cannot encode: ${describeError(error)}`);
    }
  });

  const encodes = detail.jobs.filter((job) => job.type === "encode" && job.status === "completed").length;
  const prune = h("button", { type: "button", id: "prune", disabled: encodes < 2, title: "Delete the files of older completed encodes; the newest stays playable" }, "Remove superseded encodes");
  prune.addEventListener("click", async () => {
    if (!confirm("Delete the files of the older completed encodes of this video? The newest stays.")) return;
    try {
      const answer = await post(`/api/v1/videos/${detail.id}/prune`);
      say(said, "ok", `Removed ${answer.pruned} superseded encode${answer.pruned === 1 ? "" : "s"}, ${formatBytes(answer.freed_bytes)} freed.`);
    } catch (error) {
      say(said, "error", `Cannot remove superseded encodes: ${describeError(error)}`);
    }
  });
  return h(
    "div",
    { class: "actions" },
    h("h3", {}, "New work"),
    encodeForm,
    h("div", { class: "row" }, h("label", { for: "transcribe-language" }, "Language"), language, transcribe, h("span", { class: "spacer-s" }), prune),
    said,
  );
}

/** Title and description, edited in place by the owner (or an admin). */
function aboutCard(detail, reload) {
  const title = h("input", { id: "edit-title", type: "text", required: true, maxlength: 255, value: detail.title ?? detail.filename });
  const description = h("textarea", { id: "edit-description", rows: 3, maxlength: 5000 }, detail.description ?? "");
  const said = h("div", { id: "edit-result", role: "status" });
  const form = h(
    "form",
    { class: "edit-meta", id: "edit-form", hidden: true },
    h("label", { for: "edit-title" }, "Title"),
    title,
    h("label", { for: "edit-description" }, "Description"),
    description,
    h("span"),
    h("div", { class: "row" }, h("button", { type: "submit", class: "primary" }, "Save"), h("button", { type: "button", onclick: () => (form.hidden = true) }, "Cancel")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await patch(`/api/v1/videos/${detail.id}`, { title: title.value.trim(), description: description.value.trim() || null });
      flash("Saved.", "ok");
      reload();
    } catch (error) {
      clear(said, notice("error", `Cannot save: ${describeError(error)}`));
    }
  });
  const edit = h("button", { type: "button", id: "edit-meta", class: "link" }, "Edit title and description");
  edit.addEventListener("click", () => {
    form.hidden = !form.hidden;
    if (!form.hidden) title.focus();
  });
  return [detail.description ? h("p", { class: "description", id: "video-description" }, detail.description) : null, edit, form, said];
}

/** Nothing to play while the first encode runs: a neutral state, not a playback error. */
function encodingState(job) {
  const percent = Math.round(job.progress ?? 0);
  const words = job.status === "running" ? `Being encoded — ${percent} %` : "Waiting for an encoder…";
  return h("div", { class: "encoding-state", id: "encoding-state", role: "status", dataset: { jobId: job.id } }, words, job.status === "running" ? progressBar(job.progress, "running") : null);
}

export async function render(main, { parts }) {
  const videoId = parts[1];
  const controller = new AbortController();
  let player = null;
  let follow = null; // the job stream of the current load
  let detail;

  async function load() {
    try {
      const path = `/api/v1/videos/${encodeURIComponent(videoId)}`;
      detail = await get(path, { signal: controller.signal });
      // Media come through signed URLs (no token in any URL): swap them in.
      const playback = await get(`${path}/playback`, { signal: controller.signal });
      detail.outputs = playback.outputs;
      detail.source_url = playback.source;
      detail.playback = playback;
    } catch (error) {
      if (error.name === "AbortError") return;
      clear(main, h("p", {}, h("a", { href: "#/videos" }, "← Videos")), notice("error", `Cannot open this video: ${describeError(error)}`));
      return;
    }
    player?.destroy();
    player = null;
    const playerBox = h("div", { class: "player-box" });
    const probe = detail.probe ?? {};
    clear(
      main,
      h("p", {}, h("a", { href: "#/videos" }, "← Videos")),
      h(
        "section",
        { class: "card" },
        h("h1", { id: "video-title" }, detail.title || detail.filename),
        h(
          "p",
          { class: "muted" },
          `${detail.filename} · ${formatDuration(detail.duration)} · ${formatBytes(detail.size)}`,
          probe.width ? ` · source ${probe.width}×${probe.height}` : "",
          detail.language ? ` · language ${detail.language}` : "",
          ` · uploaded ${formatDate(detail.created_at)} · `,
          h("a", { href: downloadUrl(detail.source_url), download: detail.filename }, "download the source"),
        ),
        aboutCard(detail, load),
        playerBox,
      ),
      shareCard(detail, load),
      h("section", { class: "card" }, h("h2", {}, "Outputs"), outputsTable(detail)),
      h("section", { class: "card" }, h("h2", {}, "Jobs"), h("div", { class: "table-box" }, jobsTable(detail)), actions(detail, load)),
    );
    const playable = detail.playback.event || detail.outputs.some((o) => ["hls_master", "mp4", "audio"].includes(o.kind));
    const encoding = detail.jobs.filter((job) => job.type === "encode" && !FINAL.has(job.status)).at(-1);
    if (!playable && encoding) clear(playerBox, encodingState(encoding));
    else player = createPlayer(playerBox, detail);
    // Follow the unfinished jobs; reload the page when one ends (new outputs to show).
    const open = detail.jobs.filter((job) => !FINAL.has(job.status));
    follow?.abort();
    follow = new AbortController();
    if (open.length) {
      const query = open.map((job) => `job_id=${encodeURIComponent(job.id)}`).join("&");
      followJobs(
        query,
        (job) => {
          const row = main.querySelector(`#video-jobs tr[data-job-id="${job.id}"]`);
          const waiting = main.querySelector(`#encoding-state[data-job-id="${job.id}"]`);
          if (waiting && !FINAL.has(job.status)) waiting.replaceWith(encodingState(job));
          if (row) {
            clear(row.children[2], badge(job.status), " ", quietNote(job));
            clear(row.children[3], progressBar(job.progress, job.status));
            clear(row.children[4], `${job.attempts}/${job.max_attempts}`);
            clear(row.children[6], job.error ?? "");
          }
          if (FINAL.has(job.status) && !controller.signal.aborted && (waiting || (player && !isPlaying()))) load();
        },
        { signal: follow.signal },
      );
    }
  }

  const isPlaying = () => {
    const element = document.getElementById("video");
    return element && !element.paused;
  };

  await load();
  return () => {
    controller.abort();
    follow?.abort();
    player?.destroy();
  };
}
