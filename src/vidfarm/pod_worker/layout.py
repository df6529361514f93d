"""Pod's encoding layout, made from one vidfarm encode (an adapter at the edge, no re-encode).

Pod's importer (`store_encoding_info`, shared/reference/pod-celery.md section 2) reads
`info_video.json` in `dirname(video_path)/%04d(id)/` and the files it lists, by absolute
path: `<h>p.mp4`, single-file HLS `<h>p.m3u8` + `<h>p.ts` (nominal heights), `livestream.m3u8`
(the master), `audio_192k.mp3` (`.m4a` for audio only), thumbnails, `overview.png` +
`overview.vtt`, `subtitle_<lang>.vtt`. vidfarm's names differ only where Pod's must win.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from vidfarm.media.outputs import MANIFEST_NAME

INFO = "info_video.json"
LIVESTREAM = "livestream.m3u8"
MP3 = "audio_192k.mp3"
M4A = "audio_192k.m4a"


def apply_pod_names(manifest: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Give the files Pod's names in `folder`; the manifest, its paths following them.

    A subtitle keeps its vidfarm name too (a hard link): the master's subtitle playlist
    points at it, and `livestream.m3u8` is that master.
    """
    names = rename_map(manifest)
    for old, new in names.items():
        if old.endswith(".vtt"):
            (folder / new).unlink(missing_ok=True)
            (folder / new).hardlink_to(folder / old)
        else:
            (folder / old).rename(folder / new)
    outputs = [{**e, "path": names.get(e["path"], e["path"])} for e in manifest["outputs"]]
    return {**manifest, "outputs": outputs}


def rename_map(manifest: dict[str, Any]) -> dict[str, str]:
    """vidfarm's file name -> Pod's, for every output Pod imports (others keep their names)."""
    names: dict[str, str] = {}
    thumbnails = 0
    for entry in manifest["outputs"]:
        path, kind = entry["path"], entry["kind"]
        if kind == "hls_master":
            names[path] = LIVESTREAM
        elif kind == "audio":
            names[path] = MP3 if path.endswith(".mp3") else M4A
        elif kind == "thumbnail":
            thumbnails += 1
            names[path] = f"thumbnail_{thumbnails:04d}{Path(path).suffix}"
        elif kind == "subtitle":
            names[path] = f"subtitle_{entry.get('language') or 'und'}.vtt"
    return names


def info_video(
    manifest: dict[str, Any],
    folder: Path,
    *,
    video_id: int,
    video_path: str,
    cut: tuple[int, int],
    dressing: tuple[Any, str],
    started: str,
) -> dict[str, Any]:
    """Pod's `info_video.json` (the Encoding_video object's __dict__), absolute paths."""
    source = manifest["source"]
    files: dict[str, dict[str, Any]] = {
        key: {}
        for key in (
            "list_mp4_files",
            "list_hls_files",
            "list_mp3_files",
            "list_m4a_files",
            "list_thumbnail_files",
            "list_overview_files",
            "list_subtitle_files",
        )
    }
    subtitles = 0
    for entry in manifest["outputs"]:
        path, kind = str(folder / entry["path"]), entry["kind"]
        name = Path(entry["path"]).stem
        if kind == "mp4":
            files["list_mp4_files"][name.removesuffix("p")] = path
        elif kind == "hls_variant":
            files["list_hls_files"][name.removesuffix("p")] = path
        elif kind == "audio":
            files["list_mp3_files" if path.endswith(".mp3") else "list_m4a_files"]["192k"] = path
        elif kind == "thumbnail":
            files["list_thumbnail_files"][str(len(files["list_thumbnail_files"]) + 1)] = path
        elif kind == "overview_sprite":
            files["list_overview_files"]["0"] = path
        elif kind == "overview_vtt":
            files["list_overview_files"]["1"] = path
        elif kind == "subtitle":
            files["list_subtitle_files"][str(subtitles)] = [entry.get("language") or "und", path]
            subtitles += 1
    cut_start, cut_end = cut
    duration = cut_end - cut_start if cut_end > cut_start else int(manifest["duration"])
    return {
        "id": video_id,
        "video_file": video_path,
        "duration": duration,
        "list_video_track": {
            str(v["index"]): {"width": v["width"], "height": v["height"]} for v in source["video"]
        },
        "list_audio_track": {
            str(a["index"]): {"sample_rate": str(a["sample_rate"]), "channels": a["channels"]}
            for a in source["audio"]
        },
        "list_subtitle_track": {
            str(s["index"]): {"language": s["language"] or "und"} for s in source["subtitles"]
        },
        "list_image_track": {},
        **files,
        "output_dir": str(folder),
        "encoding_log": {"vidfarm": {"command": "vidfarm single pass", "result": True, "msg": ""}},
        "start": started,
        "stop": time.ctime(),
        "error_encoding": False,
        "cutting_start": cut_start,
        "cutting_stop": cut_end,
        "json_dressing": dressing[0],
        "dressing_input": dressing[1],
    }


def empty_info(
    video_id: int, video_path: str, folder: Path, cut: tuple[int, int], started: str, reason: str
) -> dict[str, Any]:
    """What Pod's worker leaves when an encode fails: every list empty, the reason logged."""
    lists = ("mp4", "hls", "mp3", "m4a", "thumbnail", "overview", "subtitle")
    return {
        "id": video_id,
        "video_file": video_path,
        "duration": 0,
        "list_video_track": {},
        "list_audio_track": {},
        "list_subtitle_track": {},
        "list_image_track": {},
        **{f"list_{kind}_files": {} for kind in lists},
        "output_dir": str(folder),
        "encoding_log": {
            "vidfarm": {"command": "vidfarm single pass", "result": False, "msg": reason}
        },
        "start": started,
        "stop": time.ctime(),
        "error_encoding": True,
        "cutting_start": cut[0],
        "cutting_stop": cut[1],
        "json_dressing": None,
        "dressing_input": "",
    }


def publish_for_pod(staging: Path, target: Path, info: dict[str, Any]) -> None:
    """Rename into place; `info_video.json` is written last, as Pod polls for it."""
    (staging / MANIFEST_NAME).unlink(missing_ok=True)
    old = None
    if target.exists():  # a redelivered task, or a new encode of the same video
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        target.rename(old)
    staging.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    partial = target / f".{INFO}.part"
    partial.write_text(json.dumps(info, indent=2), encoding="utf-8")
    partial.rename(target / INFO)
