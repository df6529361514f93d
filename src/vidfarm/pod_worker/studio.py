"""Pod's `start_studio_task`: an Opencast-studio recording's presenter and slides in one MP4.

Pod asks for one file, `video_output`, made of the presenter and presentation sources laid
out as `presenter` says (`mid`, `piph`, `pipb`) and cut by `subtime`; it then creates a video
from it and publishes `start_encoding_task` for the ladder. The layout is vidfarm's one
composition (media/compose.py, shared with the runner manager), encoded once to a file
written aside and renamed into place; ffmpeg's warnings go to `<video_output minus .mp4>.log`
as Pod's worker writes them. Then `store_remote_encoded_video_studio/?recording_id=N`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from vidfarm.config import Settings
from vidfarm.errors import ConfigError, InvalidParameters
from vidfarm.media.compose import Composition, compose
from vidfarm.media.ffmpeg import run_ffmpeg
from vidfarm.media.pod_studio import studio_from_celery
from vidfarm.media.profiles import load_profile
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.pod_worker.callbacks import PodApi
from vidfarm.pod_worker.settings import PodSettings

log = logging.getLogger(__name__)

CALLBACK = "store_remote_encoded_video_studio"


def output_path(value: str, media_root: Path) -> Path:
    """Pod's `video_output`: an absolute .mp4 path in an existing folder under MEDIA_ROOT."""
    if "\x00" in value or not value.startswith("/") or not value.endswith(".mp4"):
        raise InvalidParameters(f"video_output: {value!r} is not an absolute .mp4 path")
    path = Path(value)
    folder = path.parent.resolve()
    if not folder.is_relative_to(media_root.resolve()) or not folder.is_dir():
        raise InvalidParameters(f"video_output: {value!r} is not in a folder under MEDIA_ROOT")
    return folder / path.name


def studio_for_pod(
    pod: PodSettings,
    settings: Settings,
    api: PodApi,
    *,
    recording_id: int,
    video_output: str,
    videos: list[dict[str, Any]],
    subtime: str,
    presenter: str,
) -> Path:
    """Lay the recording out into `video_output` and call Pod back; returns the file."""
    if pod.media_root is None:
        raise ConfigError("MEDIA_ROOT is not set: Pod's files cannot be found")
    target = output_path(video_output, pod.media_root)
    studio, cut = studio_from_celery(videos, subtime, presenter, [pod.media_root])
    composed = compose(Composition(main=studio, cut=cut))
    profile = load_profile(settings.default_profile, settings.user_profiles_dir)
    partial = target.with_name(f".{target.name}.partial")
    args = [*composed.inputs, "-filter_complex", composed.graph, "-map", composed.video]
    args += ["-c:v", "libx264", "-preset", profile.preset, "-crf", str(profile.crf)]
    args += ["-pix_fmt", "yuv420p"]
    if composed.audio is not None:
        args += ["-map", composed.audio, "-c:a", "aac", "-b:a", "192k", "-ar", "48000"]
    args += ["-movflags", "+faststart", "-f", "mp4", partial.name]
    try:
        run = run_ffmpeg(
            ffmpeg_executable(settings.ffmpeg),
            args,
            duration=composed.duration,
            cwd=target.parent,
            time_limit=max(
                settings.time_limit_min_seconds, settings.time_limit_factor * composed.duration
            ),
        )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    target.with_suffix(".log").write_text("\n".join(run.log_tail) + "\n", encoding="utf-8")
    message = (
        f"vidfarm studio ({studio.layout.value}): {composed.width}x{composed.height}, "
        f"{composed.duration:.1f} s in {run.wall_seconds:.0f} s"
    )
    api.post(
        CALLBACK, {"recording_id": int(recording_id)}, {"video_output": str(target), "msg": message}
    )
    log.info("recording %s: %s", recording_id, message)
    return target
