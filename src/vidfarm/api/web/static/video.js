// One video: the player, its outputs with download links, its jobs, and new encodes.

import { downloadUrl, followJobs, get, mediaUrl, post } from "./api.js";
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
          h("td", {}, badge(job.status)),
          h("td", {}, progressBar(job.progress, job.status)),
          h("td", {}, `${job.attempts}/${job.max_attempts}`),
          h("td", {}, formatDate(job.created_at)),
          h("td", { class: "error-text" }, job.error ?? ""),
        ),
      ),
    ),
  );
}

function actions(detail, reload) {
  const language = h("input", { type: "text", placeholder: "en", maxlength: 16, id: "transcribe-language", value: detail.language ?? "" });
  const transcribe = h("button", { type: "button" }, "Transcribe");
  transcribe.addEventListener("click", async () => {
    try {
      const job = await post(`/api/v1/videos/${detail.id}/transcribe`, { language: language.value.trim() || null });
      flash(`Transcription job ${shortId(job.id)} queued.`, "ok");
      reload();
    } catch (error) {
      flash(`Cannot transcribe: ${describeError(error)}`, "error");
    }
  });
  const encode = h("button", { type: "button" }, "Encode again");
  encode.addEventListener("click", async () => {
    try {
      const job = await post(`/api/v1/videos/${detail.id}/encode`, {});
      flash(`Encode job ${shortId(job.id)} queued.`, "ok");
      reload();
    } catch (error) {
      flash(`Cannot encode: ${describeError(error)}`, "error");
    }
  });
  return h("div", { class: "row actions" }, encode, h("span", { class: "spacer-s" }), h("label", { for: "transcribe-language" }, "Language "), language, transcribe);
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
        h("h1", { id: "video-title" }, detail.filename),
        h(
          "p",
          { class: "muted" },
          `${formatDuration(detail.duration)} · ${formatBytes(detail.size)}`,
          probe.width ? ` · source ${probe.width}×${probe.height}` : "",
          detail.language ? ` · language ${detail.language}` : "",
          ` · uploaded ${formatDate(detail.created_at)} · `,
          h("a", { href: downloadUrl(detail.source_url), download: detail.filename }, "download the source"),
        ),
        playerBox,
      ),
      shareCard(detail, load),
      h("section", { class: "card" }, h("h2", {}, "Outputs"), outputsTable(detail)),
      h("section", { class: "card" }, h("h2", {}, "Jobs"), jobsTable(detail), actions(detail, load)),
    );
    player = createPlayer(playerBox, detail);
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
          if (row) {
            clear(row.children[2], badge(job.status));
            clear(row.children[3], progressBar(job.progress, job.status));
            clear(row.children[4], `${job.attempts}/${job.max_attempts}`);
            clear(row.children[6], job.error ?? "");
          }
          if (FINAL.has(job.status) && !controller.signal.aborted && player && !isPlaying()) load();
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
