"""Pod's `start_encoding_task`: vidfarm's single pass, Pod's files, Pod's callback.

The source and the dressing inputs are read at Pod's absolute paths (under MEDIA_ROOT); the
whole delivery set is encoded once (the watermark and credits composed in the same pass) into
a hidden folder beside Pod's `%04d` output folder, given Pod's names, renamed into place, and
`info_video.json` written last. A redelivered task therefore replaces a half-done folder
rather than mixing with it; Pod is then told with `store_remote_encoded_video`, whose 400
("not encoding anymore") means it already imported this video.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from vidfarm.config import Settings
from vidfarm.errors import ConfigError, InvalidMedia, InvalidParameters
from vidfarm.media.compose import Composition, Cut
from vidfarm.media.encode import encode
from vidfarm.media.pod_dressing import check_local_file, dressing_from_celery
from vidfarm.media.profiles import load_profile
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.pod_worker.callbacks import PodApi
from vidfarm.pod_worker.layout import apply_pod_names, empty_info, info_video, publish_for_pod
from vidfarm.pod_worker.settings import PodSettings

log = logging.getLogger(__name__)

CALLBACK = "store_remote_encoded_video"


def encode_for_pod(
    pod: PodSettings,
    settings: Settings,
    api: PodApi,
    *,
    video_id: int,
    video_path: str,
    cut_start: int,
    cut_end: int,
    json_dressing: dict[str, Any] | None,
    dressing_input: str,
) -> Path:
    """Encode Pod's video into Pod's layout and call Pod back; returns the output folder."""
    if pod.media_root is None:
        raise ConfigError("MEDIA_ROOT is not set: Pod's files cannot be found")
    started = time.ctime()
    try:
        return _encode(
            pod, settings, api, video_id, video_path, (cut_start, cut_end),
            (json_dressing, dressing_input), started,
        )  # fmt: skip
    except (InvalidMedia, InvalidParameters) as error:
        # Bad input is Pod's answer to give: as Pod's own worker does, info_video.json says
        # error_encoding with the reason, and Pod is called back so the video leaves
        # "encoding in progress" (it imports nothing and tells its owner).
        report_failure(api, video_id, video_path, (cut_start, cut_end), started, str(error))
        raise


def report_failure(
    api: PodApi,
    video_id: int,
    video_path: str,
    cut: tuple[int, int],
    started: str,
    reason: str,
) -> None:
    """An `info_video.json` with nothing to import and the reason, then Pod's callback."""
    folder = Path(video_path).parent / f"{int(video_id):04d}"
    if not folder.parent.is_dir():
        return  # not even Pod's folder: nothing to write where Pod looks
    folder.mkdir(exist_ok=True)
    info = empty_info(int(video_id), video_path, folder, cut, started, reason)
    partial = folder / ".info_video.json.part"
    partial.write_text(json.dumps(info, indent=2), encoding="utf-8")
    partial.rename(folder / "info_video.json")
    body = {
        "start": started,
        "video_id": int(video_id),
        "video_path": video_path,
        "cut_start": cut[0],
        "cut_end": cut[1],
        "stop": time.ctime(),
        "json_dressing": None,
        "dressing_input": "",
    }
    api.post(CALLBACK, {"id": int(video_id)}, body)


def _encode(
    pod: PodSettings,
    settings: Settings,
    api: PodApi,
    video_id: int,
    video_path: str,
    cuts: tuple[int, int],
    dressing_args: tuple[dict[str, Any] | None, str],
    started: str,
) -> Path:
    assert pod.media_root is not None
    cut_start, cut_end = cuts
    json_dressing, dressing_input = dressing_args
    roots = [pod.media_root]
    source = check_local_file(video_path, roots, "video_path")
    if cut_end and cut_end <= cut_start:
        raise InvalidParameters(f"cut {cut_start}..{cut_end} leaves nothing to encode")
    cut = Cut(start=float(cut_start), end=float(cut_end)) if cut_end else None
    dressing = dressing_from_celery(json_dressing, dressing_input, roots)
    # Pod's ladder, single-file HLS as Pod's importer needs it.
    profile = load_profile(settings.default_profile, settings.user_profiles_dir).model_copy(
        update={"hls_single_file": True}
    )
    target = source.parent / f"{int(video_id):04d}"
    # A killed attempt's folders (`.0042.vidfarm-*` and its encoder's `..0042.vidfarm-*.partial-*`).
    for stale in source.parent.glob(f"*.{target.name}.vidfarm-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = source.parent / f".{target.name}.vidfarm-{uuid.uuid4().hex[:8]}"
    try:
        result = encode(
            source,
            staging,
            profile=profile,
            ffmpeg=ffmpeg_executable(settings.ffmpeg),
            composition=Composition(main=source, cut=cut, dressing=dressing) if dressing else None,
            start=None if dressing or not cut else cut.start,
            end=None if dressing or not cut else cut.end,
            time_limit_factor=settings.time_limit_factor,
            time_limit_min=settings.time_limit_min_seconds,
        )
        manifest = apply_pod_names(result.manifest, staging)
        info = info_video(
            manifest,
            target,
            video_id=int(video_id),
            video_path=video_path,
            cut=(int(cut_start), int(cut_end)),
            dressing=(json_dressing, dressing_input),
            started=started,
        )
        publish_for_pod(staging, target, info)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    body = {
        "start": started,
        "video_id": int(video_id),
        "video_path": video_path,
        "cut_start": cut_start,
        "cut_end": cut_end,
        "stop": time.ctime(),
        "json_dressing": json_dressing,
        "dressing_input": dressing_input,
    }
    answer = api.post(CALLBACK, {"id": int(video_id)}, body)
    log.info(
        "video %s: encoded into %s, Pod %s",
        video_id,
        target,
        "had already imported it" if answer.already_done else "told",
    )
    return target
