"""A chunked encode on one machine: N ffmpeg processes at once, then the stitch.

This is `vidfarm encode --parallel N`: the same chunks and the same stitch as the farm's
`encode_chunk` and `stitch` jobs, with threads (each waiting on its own ffmpeg process) in
place of workers. Media too short to chunk, or a plan chunks cannot carry, is encoded in one
pass as before.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vidfarm.errors import InvalidParameters
from vidfarm.media.chunks import ChunkRange, chunk_refusal, encode_chunk, plan_chunks
from vidfarm.media.encode import EncodeResult, ProgressCallback, encode
from vidfarm.media.ffmpeg import FFmpegRun
from vidfarm.media.plan import plan_encode
from vidfarm.media.probe import MediaInfo, probe
from vidfarm.media.profiles import Profile
from vidfarm.media.stitch import stitch

#: Share of the progress bar the stitch takes (it copies, so it is quick).
STITCH_SHARE = 0.1


def encode_parallel(
    source: Path,
    out_dir: Path,
    *,
    profile: Profile,
    ffmpeg: str,
    workers: int,
    chunk_seconds: float,
    min_seconds: float,
    start: float | None = None,
    end: float | None = None,
    formats: Collection[str] | None = None,
    on_progress: ProgressCallback | None = None,
    time_limit_factor: float = 20.0,
    time_limit_min: float = 300.0,
    info: MediaInfo | None = None,
) -> EncodeResult:
    """Encode `source` into `out_dir` in chunks, `workers` at a time (one pass if it cannot
    be chunked); `out_dir` appears complete or not at all."""
    if workers < 1:
        raise InvalidParameters(f"--parallel must be at least 1, not {workers}")
    info = info or probe(source)
    plan = plan_encode(info, profile, start=start, end=end, formats=formats)
    chunks = [] if chunk_refusal(plan) else plan_chunks(
        plan.duration,
        profile.segment_duration,
        chunk_seconds=chunk_seconds,
        min_seconds=min_seconds,
    )  # fmt: skip
    if not chunks:
        return encode(
            source, out_dir, profile=profile, ffmpeg=ffmpeg, start=start, end=end,
            formats=formats, on_progress=on_progress, time_limit_factor=time_limit_factor,
            time_limit_min=time_limit_min, info=info,
        )  # fmt: skip
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidParameters(f"output folder {out_dir} is not empty")
    work = out_dir.resolve().parent / f".{out_dir.name}.chunks-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    done = {chunk.index: 0.0 for chunk in chunks}
    lock = threading.Lock()
    stopped = threading.Event()

    def report(overall: float) -> bool:
        if on_progress is not None and not on_progress(overall):
            stopped.set()
        return not stopped.is_set()

    def run_one(chunk: ChunkRange) -> FFmpegRun:
        def progress(percent: float) -> bool:
            with lock:
                done[chunk.index] = chunk.duration * percent / 100
                seconds = sum(done.values())
            return report((1 - STITCH_SHARE) * 100 * seconds / plan.duration)

        return encode_chunk(
            source, plan, chunk, work / f"{chunk.index:05d}", ffmpeg=ffmpeg,
            on_progress=progress, time_limit_factor=time_limit_factor,
            time_limit_min=time_limit_min,
        )  # fmt: skip

    began = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chunk") as pool:
            futures = [pool.submit(run_one, chunk) for chunk in chunks]
            try:
                runs = [future.result() for future in futures]
            except BaseException:
                stopped.set()  # running chunks are stopped when next asked (within a second)
                for future in futures:
                    future.cancel()  # and waiting ones never start
                raise
        stitched = stitch(
            source, plan, [(c, work / f"{c.index:05d}") for c in chunks], out_dir,
            ffmpeg=ffmpeg,
            on_progress=lambda p: report(100 * (1 - STITCH_SHARE) + STITCH_SHARE * p),
            time_limit_factor=time_limit_factor, time_limit_min=time_limit_min,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    run = FFmpegRun(
        exit_code=0,
        wall_seconds=time.monotonic() - began,
        cpu_seconds=sum(r.cpu_seconds for r in runs) + stitched.cpu_seconds,
        log_tail=[],
    )
    return EncodeResult(manifest=stitched.manifest, run=run)
