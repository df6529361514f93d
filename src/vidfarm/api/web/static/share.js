// The video page's sharing card: who may play the video (its visibility), and, once it is
// unlisted or public, the share link and the <iframe> code of its embed page.

import { patch } from "./api.js";
import { clear, describeError, flash, h, notice } from "./ui.js";

const CHOICES = [
  ["private", "Private: you and the admins"],
  ["unlisted", "Unlisted: anyone with the link"],
  ["public", "Public: listed, anyone"],
];

/** The <iframe> code a platform pastes into its page. */
export function embedCode(url, title) {
  const frame = h("iframe", { src: url, title, width: 640, height: 400, allow: "fullscreen; autoplay", allowfullscreen: true, style: { border: "0" } });
  return frame.outerHTML;
}

export function shareCard(detail, onChange) {
  const select = h(
    "select",
    { id: "visibility", "aria-label": "Visibility" },
    CHOICES.map(([value, label]) => h("option", { value, selected: value === detail.visibility }, label)),
  );
  const box = h("div", { id: "share" });
  const embed = detail.playback?.embed;
  if (embed) {
    const link = h("input", { type: "text", id: "share-link", readonly: true, value: embed, "aria-label": "Share link" });
    const code = h("textarea", { id: "embed-code", readonly: true, rows: 3, "aria-label": "Embed code" }, embedCode(embed, detail.filename));
    for (const field of [link, code]) field.addEventListener("focus", () => field.select());
    clear(box, h("p", {}, h("label", { for: "share-link" }, "Share link "), link), h("p", {}, h("label", { for: "embed-code" }, "Embed code"), code));
  } else {
    clear(box, notice("muted", "Only you and the admins can play this video. Make it unlisted or public to share it."));
  }
  select.addEventListener("change", async () => {
    try {
      await patch(`/api/v1/videos/${detail.id}`, { visibility: select.value });
      flash(`This video is now ${select.value}.`, "ok");
      onChange();
    } catch (error) {
      select.value = detail.visibility;
      flash(`Cannot change the visibility: ${describeError(error)}`, "error");
    }
  });
  return h("section", { class: "card", id: "sharing", dataset: { visibility: detail.visibility } }, h("h2", {}, "Sharing"), h("p", {}, h("label", { for: "visibility" }, "Visibility "), select), box);
}
