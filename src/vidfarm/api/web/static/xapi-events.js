// The player's xAPI events, posted to /xapi/video/ (vidfarm builds the statements and picks
// the actor itself). Sent only when the server says xAPI is enabled.

import { authHeaders } from "./api.js";

function randomId() {
  // crypto.randomUUID needs a secure context; getRandomValues works everywhere.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const round = (value) => Math.round(Math.max(0, value) * 1000) / 1000;

/** Union of [start, end] pairs, merged. */
function merge(segments) {
  const sorted = segments.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  const merged = [];
  for (const [start, end] of sorted) {
    const last = merged[merged.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], end);
    else merged.push([start, end]);
  }
  return merged;
}

/**
 * Watch a <video> and report what the viewer does. `describe()` gives the player's state
 * (subtitles, quality) for context. Returns {stop(), status()} ; stop() sends "terminated".
 */
export function trackXapi(video, videoId, { describe, onStatus }) {
  const sessionId = randomId();
  const segments = [];
  let segmentStart = null;
  let lastTime = 0;
  let seekFrom = null;
  let initialized = false;
  let completed = false;
  let disabled = false;
  let sent = 0;
  let failed = 0;
  let lastError = null;
  const queue = [];
  let flushTimer = null;

  const report = () => onStatus?.({ sent, failed, queued: queue.length, lastError, disabled });

  function closeSegment() {
    if (segmentStart !== null) {
      segments.push([segmentStart, video.currentTime]);
      segmentStart = null;
    }
  }

  function playedSegments() {
    const all = merge(segmentStart === null ? segments : [...segments, [segmentStart, video.currentTime]]);
    return all.map(([a, b]) => `${round(a)}[.]${round(b)}`).join("[,]");
  }

  function progress() {
    const duration = video.duration;
    if (!duration || !Number.isFinite(duration)) return 0;
    const all = merge(segmentStart === null ? segments : [...segments, [segmentStart, video.currentTime]]);
    const seen = all.reduce((total, [a, b]) => total + (b - a), 0);
    return Math.min(1, round(seen / duration));
  }

  function context() {
    const state = describe?.() ?? {};
    const event = {
      session_id: sessionId,
      volume: round(video.muted ? 0 : video.volume),
      speed: `${video.playbackRate}x`,
      screen_size: `${screen.width}x${screen.height}`,
      full_screen: Boolean(document.fullscreenElement),
      cc_subtitle_enabled: Boolean(state.subtitleLanguage),
      user_agent: navigator.userAgent.slice(0, 500),
    };
    if (Number.isFinite(video.duration) && video.duration > 0) event.length = round(video.duration);
    if (video.videoWidth) event.video_playback_size = `${video.videoWidth}x${video.videoHeight}`;
    if (state.subtitleLanguage) event.cc_subtitle_lang = state.subtitleLanguage;
    if (state.quality) event.quality = state.quality;
    return event;
  }

  function send(verb, fields = {}, { now = false } = {}) {
    if (disabled) return;
    queue.push({ video_id: videoId, verb, ...context(), ...fields });
    report();
    if (now) flush({ keepalive: true });
    else if (!flushTimer) flushTimer = setTimeout(() => flush(), 300);
  }

  async function flush({ keepalive = false } = {}) {
    clearTimeout(flushTimer);
    flushTimer = null;
    if (!queue.length || disabled) return;
    const batch = queue.splice(0, queue.length);
    try {
      const response = await fetch("/xapi/video/", {
        method: "POST",
        headers: { ...authHeaders(), "Content-Type": "application/json" },
        body: JSON.stringify(batch),
        keepalive,
      });
      if (response.ok) sent += batch.length;
      else {
        failed += batch.length;
        const body = await response.json().catch(() => ({}));
        lastError = `${body.detail ?? response.statusText} (HTTP ${response.status})`;
        if (response.status === 404) disabled = true; // xAPI switched off on the server
      }
    } catch (error) {
      failed += batch.length;
      lastError = error.message;
    }
    report();
  }

  const listeners = {
    loadedmetadata() {
      if (!initialized) {
        initialized = true;
        send("initialized");
      }
    },
    play() {
      segmentStart = video.currentTime;
      send("played", { time: round(video.currentTime) });
    },
    pause() {
      if (video.seeking || video.ended) return;
      closeSegment();
      send("paused", { time: round(video.currentTime), progress: progress(), played_segments: playedSegments() || undefined });
    },
    timeupdate() {
      if (!video.seeking) lastTime = video.currentTime;
      if (!completed && progress() >= 0.95) {
        completed = true;
        send("completed", { time: round(video.currentTime), progress: progress(), played_segments: playedSegments() || undefined });
      }
    },
    seeking() {
      if (seekFrom === null) seekFrom = lastTime;
      if (segmentStart !== null) {
        segments.push([segmentStart, seekFrom]);
        segmentStart = null;
      }
    },
    seeked() {
      const from = seekFrom ?? lastTime;
      seekFrom = null;
      lastTime = video.currentTime;
      if (!video.paused) segmentStart = video.currentTime;
      send("seeked", { time_from: round(from), time_to: round(video.currentTime) });
    },
    ended() {
      closeSegment();
      if (!completed) {
        completed = true;
        send("completed", { time: round(video.currentTime), progress: progress(), played_segments: playedSegments() || undefined });
      }
    },
  };
  for (const [name, listener] of Object.entries(listeners)) video.addEventListener(name, listener);
  const onHide = () => send("terminated", { time: round(video.currentTime), progress: progress() }, { now: true });
  window.addEventListener("pagehide", onHide);

  return {
    interacted() {
      send("interacted", { time: round(video.currentTime) });
    },
    stop() {
      for (const [name, listener] of Object.entries(listeners)) video.removeEventListener(name, listener);
      window.removeEventListener("pagehide", onHide);
      if (initialized) {
        closeSegment();
        send("terminated", { time: round(video.currentTime), progress: progress(), played_segments: playedSegments() || undefined }, { now: true });
      }
    },
    status: () => ({ sent, failed, queued: queue.length, lastError, disabled }),
  };
}
