// The embed page (/embed/<video>): the dashboard's player alone, for an <iframe> on any site
// the server allows. It asks /embed/<video>/playback for signed URLs: no token anywhere.

import { createPlayer } from "./player.js";
import { clear, notice } from "./ui.js";

const main = document.getElementById("embed");
const videoId = location.pathname.split("/")[2] ?? "";

async function start() {
  let links;
  try {
    const response = await fetch(`/embed/${encodeURIComponent(videoId)}/playback`);
    if (!response.ok) throw new Error(response.status === 404 ? "this video is not available" : `HTTP ${response.status}`);
    links = await response.json();
  } catch (error) {
    clear(main, notice("error", `Cannot play: ${error.message}`));
    return;
  }
  document.title = links.filename;
  createPlayer(main, { ...links, id: links.video_id });
}

start();
