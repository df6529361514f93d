"""Describe media vidfarm did not encode (a foreign runner's result) and give its HLS
variants a master playlist.

Esup-Runner returns one playlist per rendition and no master (Pod writes its own). Each
variant is measured like vidfarm's own (BANDWIDTH per RFC 8216 over its segments or byte
ranges, CODECS and RESOLUTION probed with PyAV), then `master.m3u8` is written with the same
writer as a local encode's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import av

from vidfarm.claims import OutputRecord
from vidfarm.media.hls import (
    Variant,
    codecs_of,
    master_playlist,
    measure_bandwidth,
    read_media_playlist,
    read_target_duration,
)
from vidfarm.media.outputs import sha256_of

MASTER = "master.m3u8"


@dataclass(frozen=True, kw_only=True)
class Probed:
    width: int | None
    height: int | None
    codecs: str | None
    bandwidth: int | None = None
    average_bandwidth: int | None = None


def probe_file(path: Path) -> Probed:
    """Size and CODECS of a media file; nothing when PyAV cannot read it."""
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0] if container.streams.video else None
            width = video.codec_context.width if video is not None else None
            height = video.codec_context.height if video is not None else None
        return Probed(width=width or None, height=height or None, codecs=codecs_of(path))
    except (av.FFmpegError, OSError, IndexError):
        return Probed(width=None, height=None, codecs=None)


def probe_variant(folder: Path, playlist: str) -> Probed | None:
    """A media playlist measured and probed; None when it is not one (no segment, unreadable)."""
    path = folder / playlist
    try:
        segments = read_media_playlist(path)
        target = read_target_duration(path)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    base = path.parent
    if not segments or any(not (base / s.uri).resolve().is_relative_to(folder.resolve())
                           or not (base / s.uri).is_file() for s in segments):  # fmt: skip
        return None
    peak, average = measure_bandwidth(base, segments, target)
    media = probe_file(base / segments[0].uri)
    return Probed(
        width=media.width,
        height=media.height,
        codecs=media.codecs,
        bandwidth=peak,
        average_bandwidth=average,
    )


def write_master(folder: Path, variants: dict[str, Probed]) -> str | None:
    """`master.m3u8` at the folder's root over `variants` (playlist path -> probed); None
    when no variant could be measured or a master already exists."""
    usable = [
        Variant(
            playlist=name,
            bandwidth=probed.bandwidth,
            average_bandwidth=probed.average_bandwidth or probed.bandwidth,
            codecs=probed.codecs,
            resolution=(probed.width, probed.height) if probed.width and probed.height else None,
        )
        for name, probed in sorted(variants.items())
        if probed.bandwidth and probed.codecs
    ]
    if not usable or (folder / MASTER).exists():
        return None
    (folder / MASTER).write_text(master_playlist(usable), encoding="utf-8")
    return MASTER


def describe_foreign(
    folder: Path, outputs: list[OutputRecord], prefix: str
) -> tuple[list[OutputRecord], OutputRecord | None]:
    """`outputs` (keys under `prefix`, files in `folder`) with width, height, codecs and
    bandwidth probed, and the master written here when the result has none: (outputs with
    the master first, the master's record or None)."""
    variants: dict[str, Probed] = {}
    described: list[OutputRecord] = []
    for output in outputs:
        path = output.key.removeprefix(prefix + "/")
        probed: Probed | None = None
        if output.kind == "hls_variant":
            probed = probe_variant(folder, path)
            if probed is not None:
                variants[path] = probed
        elif output.kind == "mp4":
            probed = probe_file(folder / path)
        if probed is not None:
            output = replace(
                output,
                width=probed.width,
                height=probed.height or output.height,
                bandwidth=probed.bandwidth,
                codecs=probed.codecs,
            )
        described.append(output)
    if any(o.kind == "hls_master" for o in outputs):
        return described, None
    master = write_master(folder, variants)
    if master is None:
        return described, None
    record = OutputRecord(
        kind="hls_master",
        key=f"{prefix}/{master}",
        size=(folder / master).stat().st_size,
        sha256=sha256_of(folder / master),
        bandwidth=max(p.bandwidth or 0 for p in variants.values()),
    )
    return [record, *described], record
