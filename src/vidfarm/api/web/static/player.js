// The video page's player: HLS through hls.js (signed URLs: no token on any request), MP4
// when hls.js is not installed or not supported, selectable subtitle tracks, thumbnails from
// the overview sprite over the seek bar, and xAPI events when the server enables them.

import { mediaUrl, session } from "./api.js";
import { clear, formatDuration, h } from "./ui.js";
import { trackXapi } from "./xapi-events.js";

const HLS_SRC = "/ui/vendor/hls.min.js";
let hlsLoading = null;

/** Load hls.js once; resolves to the Hls class, or null when the asset is missing. */
export function loadHls() {
  if (!hlsLoading) {
    hlsLoading = new Promise((resolve) => {
      if (window.Hls) return resolve(window.Hls);
      const script = h("script", { src: HLS_SRC });
      script.addEventListener("load", () => resolve(window.Hls ?? null));
      script.addEventListener("error", () => resolve(null));
      document.head.append(script);
    });
  }
  return hlsLoading;
}

/** "subtitle_en.vtt" / "subtitle_0_eng.vtt" -> "en" / "eng". */
export function subtitleLanguage(path) {
  const match = /^subtitle_(?:\d+_)?([A-Za-z0-9-]+)\.vtt$/.exec(path);
  return match ? match[1] : "und";
}

function parseTime(text) {
  const parts = text.trim().split(":").map(Number);
  return parts.reduce((total, part) => total * 60 + part, 0);
}

/** Cues of an overview .vtt: [{start, end, url, x, y, w, h}] with absolute sprite URLs. */
export function parseSpriteVtt(text, base) {
  const cues = [];
  const blocks = text.replace(/\r\n?/g, "\n").split(/\n\n+/);
  for (const block of blocks) {
    const lines = block.split("\n").filter(Boolean);
    const timing = lines.findIndex((line) => line.includes("-->"));
    if (timing < 0 || !lines[timing + 1]) continue;
    const [from, to] = lines[timing].split("-->").map((part) => parseTime(part.trim().split(/\s/)[0]));
    const [file, fragment = ""] = lines[timing + 1].trim().split("#");
    const xywh = /xywh=(\d+),(\d+),(\d+),(\d+)/.exec(fragment);
    if (!xywh) continue;
    const [x, y, w, hgt] = xywh.slice(1).map(Number);
    cues.push({ start: from, end: to, url: new URL(file, base).href, x, y, w, h: hgt });
  }
  return cues;
}

async function loadSprite(vttOutput) {
  if (!vttOutput) return [];
  const response = await fetch(vttOutput.url);
  if (!response.ok) return [];
  return parseSpriteVtt(await response.text(), new URL(vttOutput.url, location.href).href);
}

export function createPlayer(container, detail) {
  const outputs = detail.outputs ?? [];
  // While a chunked encode runs, the growing EVENT playlist (playable early, docs/chunked.md).
  const early = detail.playback?.event ? { url: detail.playback.master } : undefined;
  const master = outputs.find((o) => o.kind === "hls_master") ?? early;
  const mp4s = outputs.filter((o) => o.kind === "mp4").sort((a, b) => (b.height ?? 0) - (a.height ?? 0));
  const audio = outputs.find((o) => o.kind === "audio" && o.path.endsWith(".mp3"));
  const subtitles = outputs.filter((o) => o.kind === "subtitle" && o.path.endsWith(".vtt"));
  const thumbnail = outputs.find((o) => o.kind === "thumbnail");

  const video = h("video", { id: "video", playsinline: true, preload: "metadata", poster: thumbnail ? mediaUrl(thumbnail.url) : undefined });
  for (const [index, output] of subtitles.entries()) {
    const language = subtitleLanguage(output.path);
    video.append(h("track", { kind: "subtitles", src: mediaUrl(output.url), srclang: language, label: `${language} (${output.path})`, dataset: { index } }));
  }
  const playButton = h("button", { type: "button", id: "play", class: "control", "aria-label": "Play" }, "▶");
  const time = h("span", { class: "time", id: "time" }, "0:00 / 0:00");
  const played = h("div", { class: "played" });
  const buffered = h("div", { class: "buffered" });
  const thumb = h("div", { class: "thumb", id: "seek-thumb" });
  const previewTime = h("span", { class: "preview-time" });
  const preview = h("div", { class: "preview", id: "seek-preview", hidden: true }, thumb, previewTime);
  const seek = h("div", { class: "seek", id: "seek", role: "slider", tabindex: 0, "aria-label": "Seek", "aria-valuemin": 0 }, buffered, played, preview);
  const subtitleSelect = h(
    "select",
    { id: "subtitles", "aria-label": "Subtitles", disabled: !subtitles.length },
    h("option", { value: "" }, subtitles.length ? "Subtitles off" : "No subtitles"),
    subtitles.map((output, index) => h("option", { value: String(index) }, subtitleLanguage(output.path))),
  );
  const qualitySelect = h("select", { id: "quality", "aria-label": "Quality", hidden: true });
  const muteButton = h("button", { type: "button", class: "control small", id: "mute", "aria-pressed": "false" }, "Mute");
  const volume = h("input", { type: "range", class: "volume", id: "volume", min: 0, max: 1, step: 0.05, value: 1, "aria-label": "Volume" });
  const speedSelect = h(
    "select",
    { id: "speed", "aria-label": "Playback speed" },
    [0.5, 0.75, 1, 1.25, 1.5, 1.75, 2].map((rate) => h("option", { value: String(rate), selected: rate === 1 }, `${rate}x`)),
  );
  const buffering = h("div", { class: "buffering", id: "buffering", role: "status", hidden: true }, "Buffering…");
  const fullButton = h("button", { type: "button", class: "control small", id: "fullscreen" }, "Full screen");
  const modeNote = h("p", { class: "notice", id: "player-notice", hidden: true });
  const errorBox = h("p", { class: "notice error", id: "player-error", hidden: true });
  const xapiNote = h("p", { class: "muted small", id: "xapi-status", hidden: true });
  const stage = h("div", { class: "stage" }, video, buffering);
  const player = h(
    "div",
    { class: "player", id: "player", tabindex: -1 },
    stage,
    h("div", { class: "controls" }, playButton, time, seek, speedSelect, subtitleSelect, qualitySelect, muteButton, volume, fullButton),
    h("p", { class: "muted small keys" }, "Keys: space play/pause · ← → 5 s · ↑ ↓ volume · f full screen · m mute · c subtitles"),
    modeNote,
    errorBox,
    xapiNote,
  );
  clear(container, player);

  const state = { mode: "none", error: null, hls: null, sprite: [], xapi: null, subtitleLanguage: null, quality: null };
  window.vidfarmPlayer = state; // for operators' consoles and the browser tests

  function showError(message) {
    state.error = message;
    player.dataset.error = message;
    errorBox.hidden = false;
    errorBox.textContent = `Playback error: ${message}`;
  }

  function setMode(mode, note) {
    state.mode = mode;
    player.dataset.mode = mode;
    modeNote.hidden = !note;
    modeNote.textContent = note ?? "";
  }

  function playMp4(output, note) {
    const at = video.currentTime;
    const wasPlaying = !video.paused;
    state.hls?.destroy();
    state.hls = null;
    video.src = mediaUrl(output.url);
    state.quality = output.height ? `${output.height}p` : output.path;
    if (at) video.currentTime = at;
    if (wasPlaying) video.play().catch(() => {});
    setMode("mp4", note);
    clear(qualitySelect, mp4s.map((o) => h("option", { value: o.url, selected: o === output }, o.height ? `${o.height}p MP4` : o.path)));
    qualitySelect.hidden = mp4s.length < 2;
    qualitySelect.onchange = () => playMp4(mp4s.find((o) => o.url === qualitySelect.value) ?? output, note);
  }

  function fallback(note) {
    if (mp4s.length) playMp4(mp4s[0], note);
    else if (audio) {
      video.src = mediaUrl(audio.url);
      setMode("audio", note);
    } else showError(`${note} and there is no MP4 rendition to play instead`);
  }

  function playHls(Hls) {
    let recoveries = 0;
    const hls = new Hls({
      // Subtitles come from <track> elements (same tracks in HLS and MP4 mode).
      enableWebVTT: false,
      enableIMSC1: false,
      enableCEA708Captions: false,
      subtitleDisplay: false,
    });
    state.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
      const levels = data.levels ?? [];
      clear(qualitySelect, h("option", { value: "-1" }, "Auto"), levels.map((level, index) => h("option", { value: String(index) }, level.height ? `${level.height}p` : `level ${index}`)));
      qualitySelect.hidden = levels.length < 2;
      // A smooth switch: the playing fragment stays, the next ones come at the chosen level
      // (renditions share keyframe times, so the picture changes without a stall).
      qualitySelect.onchange = () => {
        hls.nextLevel = Number(qualitySelect.value);
      };
      // "hls" once hls.js knows the levels (the quality menu is filled), not before.
      setMode("hls", null);
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
      const level = hls.levels[data.level];
      state.quality = level?.height ? `${level.height}p` : null;
      // Under "Auto", say which level plays now (as YouTube and PeerTube do).
      const auto = qualitySelect.querySelector('option[value="-1"]');
      if (auto) auto.textContent = state.quality ? `Auto (${state.quality})` : "Auto";
      player.dataset.level = state.quality ?? "";
    });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      recoveries += 1;
      if (recoveries <= 2 && data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
      else if (recoveries <= 2 && data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else {
        hls.destroy();
        state.hls = null;
        const reason = `${data.type}: ${data.details}${data.response?.code ? ` (HTTP ${data.response.code})` : ""}`;
        if (mp4s.length) fallback(`HLS failed (${reason}); playing the MP4 rendition`);
        else showError(reason);
      }
    });
    hls.loadSource(master.url);
    hls.attachMedia(video);
  }

  (async () => {
    if (!master && !mp4s.length && !audio) {
      showError("nothing to play yet: the encode has not completed");
      return;
    }
    const Hls = master ? await loadHls() : null;
    if (master && Hls?.isSupported()) playHls(Hls);
    else if (master && !Hls) fallback("HLS is unavailable on this server (hls.js is not installed: run python -m vidfarm.api.web.assets); playing the MP4 rendition");
    else if (master) fallback("HLS is not supported by this browser; playing the MP4 rendition");
    else fallback("This encode has no HLS rendition; playing the MP4 rendition");
  })();

  // --- controls ---------------------------------------------------------------------------
  const duration = () => (Number.isFinite(video.duration) ? video.duration : detail.duration ?? 0);
  function updateTime() {
    const total = duration();
    time.textContent = `${formatDuration(video.currentTime)} / ${formatDuration(total)}`;
    played.style.width = total ? `${(100 * video.currentTime) / total}%` : "0";
    seek.setAttribute("aria-valuemax", total.toFixed(1));
    seek.setAttribute("aria-valuenow", video.currentTime.toFixed(1));
    if (video.buffered.length && total) buffered.style.width = `${(100 * video.buffered.end(video.buffered.length - 1)) / total}%`;
  }
  video.addEventListener("timeupdate", updateTime);
  video.addEventListener("durationchange", updateTime);
  video.addEventListener("progress", updateTime);
  video.addEventListener("play", () => {
    playButton.textContent = "❚❚";
    playButton.setAttribute("aria-label", "Pause");
  });
  video.addEventListener("pause", () => {
    playButton.textContent = "▶";
    playButton.setAttribute("aria-label", "Play");
  });
  video.addEventListener("error", () => {
    const error = video.error;
    if (error) showError(`${error.message || "media error"} (code ${error.code})`);
  });
  const toggle = () => (video.paused ? video.play().catch((error) => showError(error.message)) : video.pause());
  playButton.addEventListener("click", toggle);
  video.addEventListener("click", toggle);
  const toggleMute = () => {
    video.muted = !video.muted;
  };
  muteButton.addEventListener("click", toggleMute);
  video.addEventListener("volumechange", () => {
    muteButton.textContent = video.muted ? "Unmute" : "Mute";
    muteButton.setAttribute("aria-pressed", String(video.muted));
    volume.value = String(video.muted ? 0 : video.volume);
  });
  volume.addEventListener("input", () => {
    video.volume = Number(volume.value);
    video.muted = video.volume === 0;
  });
  speedSelect.addEventListener("change", () => {
    video.playbackRate = Number(speedSelect.value);
  });
  video.addEventListener("ratechange", () => {
    player.dataset.speed = String(video.playbackRate);
  });
  const toggleFull = () => (document.fullscreenElement ? document.exitFullscreen() : player.requestFullscreen?.());
  fullButton.addEventListener("click", toggleFull);

  // Buffering: shown while playback waits for data, gone when it plays again.
  const setBuffering = (on) => {
    buffering.hidden = !on;
    player.dataset.buffering = String(on);
  };
  video.addEventListener("waiting", () => setBuffering(true));
  for (const type of ["playing", "canplay", "pause", "seeked", "emptied"]) video.addEventListener(type, () => setBuffering(false));

  // Keyboard shortcuts anywhere on the page except in form fields (space would type).
  const nudge = (step) => {
    video.currentTime = Math.max(0, Math.min(duration(), video.currentTime + step));
  };
  const cycleSubtitles = () => {
    if (subtitleSelect.disabled) return;
    subtitleSelect.selectedIndex = (subtitleSelect.selectedIndex + 1) % subtitleSelect.options.length;
    subtitleSelect.dispatchEvent(new Event("change"));
  };
  const KEYS = {
    " ": toggle,
    k: toggle,
    ArrowRight: () => nudge(5),
    ArrowLeft: () => nudge(-5),
    ArrowUp: () => {
      video.muted = false;
      video.volume = Math.min(1, video.volume + 0.1);
    },
    ArrowDown: () => {
      video.volume = Math.max(0, video.volume - 0.1);
    },
    f: toggleFull,
    m: toggleMute,
    c: cycleSubtitles,
  };
  const onKey = (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]")) return;
    if (target instanceof HTMLButtonElement && (event.key === " " || event.key === "Enter")) return;
    const action = KEYS[event.key] ?? KEYS[event.key.toLowerCase()];
    if (!action) return;
    event.preventDefault();
    action();
  };
  document.addEventListener("keydown", onKey);

  const fraction = (event) => {
    const box = seek.getBoundingClientRect();
    return Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
  };
  seek.addEventListener("click", (event) => {
    if (duration()) video.currentTime = fraction(event) * duration();
  });
  // Arrow keys on the seek bar are the page-wide shortcuts above.
  seek.addEventListener("pointermove", (event) => {
    const at = fraction(event) * duration();
    const box = seek.getBoundingClientRect();
    previewTime.textContent = formatDuration(at);
    const cue = state.sprite.find((c) => at >= c.start && at < c.end) ?? (at >= (state.sprite.at(-1)?.start ?? Infinity) ? state.sprite.at(-1) : null);
    thumb.hidden = !cue;
    if (cue) {
      Object.assign(thumb.style, {
        width: `${cue.w}px`,
        height: `${cue.h}px`,
        backgroundImage: `url("${mediaUrl(cue.url)}")`,
        backgroundPosition: `-${cue.x}px -${cue.y}px`,
      });
      thumb.dataset.cue = `${cue.start}-${cue.end}`;
    }
    const width = cue?.w ?? 60;
    preview.style.left = `${Math.max(0, Math.min(box.width - width, event.clientX - box.left - width / 2))}px`;
    preview.hidden = false;
  });
  seek.addEventListener("pointerleave", () => {
    preview.hidden = true;
  });

  subtitleSelect.addEventListener("change", () => {
    const chosen = subtitleSelect.value === "" ? -1 : Number(subtitleSelect.value);
    const wanted = chosen >= 0 ? video.querySelectorAll("track")[chosen]?.track : null;
    for (const track of Array.from(video.textTracks)) {
      track.mode = track === wanted ? "showing" : "disabled";
    }
    state.subtitleLanguage = chosen >= 0 ? subtitleLanguage(subtitles[chosen].path) : null;
    player.dataset.subtitles = state.subtitleLanguage ?? "off";
    state.xapi?.interacted();
  });

  loadSprite(outputs.find((o) => o.kind === "overview_vtt"))
    .then((cues) => {
      state.sprite = cues;
      player.dataset.sprite = String(cues.length);
    })
    .catch(() => {});

  if (session.me?.server?.xapi_enabled) {
    xapiNote.hidden = false;
    xapiNote.textContent = "xAPI: on";
    state.xapi = trackXapi(video, detail.id, {
      describe: () => ({ subtitleLanguage: state.subtitleLanguage, quality: state.quality }),
      onStatus({ sent, failed, queued, lastError, disabled }) {
        xapiNote.dataset.sent = String(sent);
        xapiNote.textContent = disabled
          ? `xAPI: disabled on the server (${lastError})`
          : `xAPI: ${sent} events sent${queued ? `, ${queued} waiting` : ""}${failed ? `, ${failed} refused: ${lastError}` : ""}`;
      },
    });
  }

  return {
    destroy() {
      document.removeEventListener("keydown", onKey);
      state.xapi?.stop();
      state.hls?.destroy();
      video.removeAttribute("src");
      video.load();
      if (window.vidfarmPlayer === state) window.vidfarmPlayer = null;
    },
  };
}
