"""Benchmark `vidfarm pod-worker`'s encoding task against Esup-Pod's own worker commands.

Usage (from the repository root):

    .venv/bin/python bench/pod_worker_vs_pod.py [--duration 30] [--preset slow] [--repeat 1]

One 1920x1080 source is generated once (not timed) under a scratch MEDIA_ROOT. Then, side by
side and interleaved, with Pod's preset and CRF:

  pod-worker  the real `start_encoding_task` body (pod_worker.encoding.encode_for_pod) in its
              own process: vidfarm's single pass, Pod's layout, info_video.json (Pod's REST
              callback goes to a stub that answers 200)
  pod         Pod's worker's ffmpeg commands (bench/_pod_passes.py: MP4 pass, HLS pass, MP3,
              thumbnails, overview sprite)

CPU is the process tree's user + system time (wait4); medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from _harness import ffmpeg_version, make_source, run_process
from _pod_passes import run_pod
from vidfarm.media.profiles import load_profile
from vidfarm.media.tools import ffmpeg_executable

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from vidfarm.config import Settings
    from vidfarm.pod_worker.callbacks import Answer
    from vidfarm.pod_worker.encoding import encode_for_pod
    from vidfarm.pod_worker.settings import PodSettings

    class Pod:  # Pod's REST API, answering as it does when all is well
        def post(self, endpoint, params, body):
            return Answer(200, already_done=False)

    media, source, data, profile = (Path(a) for a in sys.argv[1:5])
    settings = Settings(data_dir=data, default_profile=str(profile))
    encode_for_pod(
        PodSettings(media_root=media), settings, Pod(), video_id=1, video_path=str(source),
        cut_start=0, cut_end=0, json_dressing=None, dressing_input="",
    )
    """
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--preset", default="slow", help="Pod's worker uses slow")
    parser.add_argument("--crf", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    ffmpeg = ffmpeg_executable(None)
    with tempfile.TemporaryDirectory(prefix="pod-bench-") as scratch:
        work = Path(scratch)
        media = work / "media" / "videos" / "owner"
        media.mkdir(parents=True)
        source = media / "lecture.mp4"
        print(f"ffmpeg {ffmpeg_version(ffmpeg)}; generating a {args.duration:g} s 1080p source...")
        make_source(ffmpeg, source, duration=args.duration, crf=16, maxrate="25M", gop=60)
        data = work / "vidfarm"
        (data / "profiles").mkdir(parents=True)
        base = load_profile("default")
        profile = base.model_copy(update={"preset": args.preset, "crf": args.crf})
        (data / "profiles" / "bench.toml").write_text(_toml(profile.model_dump()))
        runs: dict[str, list[tuple[float, float]]] = {"pod-worker": [], "pod": []}
        for n in range(args.repeat):
            print(f"[{n + 1}/{args.repeat}] pod-worker...", flush=True)
            ours = run_process(
                "pod-worker",
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(work / "media"),
                    str(source),
                    str(data),
                    "bench",
                ],
            )
            runs["pod-worker"].append((ours.cpu_seconds, ours.wall_seconds))
            print(f"[{n + 1}/{args.repeat}] pod...", flush=True)
            pod_work = work / f"pod-{n}"
            pod_work.mkdir()
            theirs = run_pod(
                ffmpeg, source, pod_work, args.duration, preset=args.preset, crf=args.crf,
                level=True, sprite_tile_width=160,
            )  # fmt: skip
            runs["pod"].append((theirs.cpu_seconds, theirs.wall_seconds))
    medians = {
        name: {
            "cpu_seconds": round(statistics.median(c for c, _ in values), 2),
            "wall_seconds": round(statistics.median(w for _, w in values), 2),
        }
        for name, values in runs.items()
    }
    ratios = {
        "cpu": round(medians["pod-worker"]["cpu_seconds"] / medians["pod"]["cpu_seconds"], 3),
        "wall": round(medians["pod-worker"]["wall_seconds"] / medians["pod"]["wall_seconds"], 3),
    }
    print(json.dumps({"medians": medians, "pod_worker_over_pod": ratios}, indent=2))
    return 0


def _toml(values: dict[str, object]) -> str:
    """The profile as TOML (strings, numbers, booleans and a list of rendition tables)."""
    lines: list[str] = []
    renditions = values.pop("renditions")
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{key} = {json.dumps(value)}")
    for rendition in renditions:  # type: ignore[attr-defined]
        lines.append("[[renditions]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in rendition.items() if v is not None]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
