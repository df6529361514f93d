"""What playable early costs: CPU seconds per chunk with and without its preview segments.

    .venv/bin/python bench/chunk_preview.py [--duration 60] [--chunk 20] [--preset veryfast]

On one generated 1080p source with the default profile's ladder: every chunk is encoded as the
`encode_chunk` kind does (`media.chunks.encode_chunk`), then its preview is written
(`media.preview.write_preview`: video stream-copied, AAC for the range, HLS per rendition).
CPU is user + system of the ffmpeg children (FFmpegRun.cpu_seconds). Prints JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _harness import chunk_options, make_source
from vidfarm.media.chunks import encode_chunk, plan_chunks
from vidfarm.media.plan import plan_encode
from vidfarm.media.preview import write_preview
from vidfarm.media.probe import probe
from vidfarm.media.profiles import load_profile
from vidfarm.media.tools import ffmpeg_executable


def main() -> None:
    parser = chunk_options(__doc__, None, None, duration=60.0, chunk=20.0)
    args = parser.parse_args()
    ffmpeg = ffmpeg_executable()
    profile = load_profile("default").model_copy(update={"preset": args.preset})
    with tempfile.TemporaryDirectory(prefix="vidfarm-preview-") as scratch:
        root = Path(scratch)
        source = root / "source.mp4"
        make_source(ffmpeg, source, duration=args.duration, crf=18, maxrate="8M", gop=60)
        plan = plan_encode(probe(source), profile)
        ranges = plan_chunks(
            plan.duration, profile.segment_duration, chunk_seconds=args.chunk, min_seconds=0
        )
        rows = []
        for chunk in ranges:
            folder = root / f"chunk{chunk.index}"
            run = encode_chunk(source, plan, chunk, folder, ffmpeg=ffmpeg)
            preview = write_preview(source, plan, chunk, folder, ffmpeg=ffmpeg)
            rows.append(
                {
                    "start": chunk.start,
                    "end": chunk.end,
                    "chunk_cpu_s": round(run.cpu_seconds, 2),
                    "preview_cpu_s": round(preview.run.cpu_seconds, 2),
                    "preview_wall_s": round(preview.run.wall_seconds, 2),
                }
            )
    without = sum(r["chunk_cpu_s"] for r in rows)
    extra = sum(r["preview_cpu_s"] for r in rows)
    summary = {
        "duration": plan.duration,
        "chunk": args.chunk,
        "preset": args.preset,
        "renditions": [r.name for r in plan.ladder.renditions] if plan.ladder else [],
        "cpu_without_s": round(without, 2),
        "cpu_with_s": round(without + extra, 2),
        "extra_percent": round(100 * extra / without, 1) if without else None,
    }
    print(json.dumps({"chunks": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
