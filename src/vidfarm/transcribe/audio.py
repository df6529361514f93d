"""Stream a media file's first audio track as 16 kHz mono s16le PCM, in fixed-size chunks.

The PCM never exists whole in memory or on disk: ffmpeg writes into a pipe and the reader
holds one chunk at a time, so a two-hour input costs what a two-minute one does. The same
safety rules as `media.ffmpeg.run_ffmpeg` apply: an argument list, a `file:` input, its own
process group, killed as a whole when the consumer stops early (cancel, error, timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from vidfarm.media.ffmpeg import FFmpegProcess

SAMPLE_RATE = 16_000
BYTES_PER_SAMPLE = 2
BYTES_PER_SECOND = SAMPLE_RATE * BYTES_PER_SAMPLE
#: Pod's normalisation target: EBU R128 at -16 LUFS, true peak -1.5 dBTP.
LOUDNORM_FILTER = "loudnorm=I=-16:TP=-1.5:LRA=11"


def pcm_command(ffmpeg: str, source: Path, *, loudnorm: bool = False) -> list[str]:
    """The ffmpeg argument list turning `source`'s first audio stream into raw PCM on stdout."""
    command = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-i",
        f"file:{source}",  # a name starting with "-" or "proto:" stays a plain file
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
    ]
    if loudnorm:
        command += ["-af", LOUDNORM_FILTER]
    command += ["-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-f", "s16le", "pipe:1"]
    return command


def stream_pcm(
    ffmpeg: str,
    source: Path,
    *,
    chunk_bytes: int = BYTES_PER_SECOND,
    loudnorm: bool = False,
    time_limit: float | None = None,
) -> Iterator[bytes]:
    """Yield PCM chunks of exactly `chunk_bytes` (the last may be shorter).

    Closing the generator early kills ffmpeg's process group. A failing ffmpeg raises the
    classified error of `run_ffmpeg` (permanent for corrupt input, transient for a signal).
    """
    if chunk_bytes <= 0 or chunk_bytes % BYTES_PER_SAMPLE:
        raise ValueError(f"chunk_bytes must be a positive even number, got {chunk_bytes}")
    command = pcm_command(ffmpeg, source, loudnorm=loudnorm)
    # A consumer that stops early closes this generator: GeneratorExit leaves the block and
    # FFmpegProcess kills ffmpeg's process group.
    with FFmpegProcess(command, time_limit=time_limit) as child:
        while chunk := _read_exactly(child.stdout, chunk_bytes):
            yield chunk
    child.raise_for_failure("audio extraction")


def _read_exactly(stream: object, size: int) -> bytes:
    """Read `size` bytes unless the stream ends first: a pipe hands out what it has."""
    read = stream.read  # type: ignore[attr-defined]
    parts: list[bytes] = []
    missing = size
    while missing:
        part: bytes = read(missing)
        if not part:
            break
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)
