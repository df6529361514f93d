"""Describe what an encode wrote: the master playlist, sizes, checksums, bandwidths.

The description (manifest.json) is what the worker publishes and what importers verify.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidMedia
from vidfarm.media.alternates import SUBTITLE_PLAYLIST_KIND, audio_media, subtitle_media
from vidfarm.media.arguments import DASH_MANIFEST
from vidfarm.media.hls import (
    AAC_LC,
    Variant,
    codecs_of,
    master_playlist,
    measure_bandwidth,
    read_media_playlist,
    read_target_duration,
)
from vidfarm.media.plan import EncodePlan, SpritePlan

MANIFEST_NAME = "manifest.json"
MASTER_PLAYLIST = "master.m3u8"


def describe_outputs(plan: EncodePlan, folder: Path) -> dict[str, Any]:
    """Write the master playlist and list every output with its size and checksum."""
    outputs: list[dict[str, Any]] = []
    if plan.ladder is None:
        outputs += _hls_outputs(plan, folder)
        outputs.append(
            _entry(
                folder,
                "audio.m4a",
                "audio",
                codecs=AAC_LC,
                bandwidth=plan.profile.audio_only_bitrate,
            )
        )
    elif plan.dash:
        outputs.append(_dash_entry(folder))
    else:
        if plan.hls:
            outputs += _hls_outputs(plan, folder)
        for rendition in plan.ladder.renditions:
            if rendition.mp4:
                name = f"{rendition.name}.mp4"
                outputs.append(
                    _entry(
                        folder,
                        name,
                        "mp4",
                        width=rendition.width,
                        height=rendition.height,
                        codecs=codecs_of(folder / name),
                    )
                )
    if (folder / "audio.mp3").exists():
        outputs.append(_entry(folder, "audio.mp3", "audio", codecs="mp3"))
    for thumbnail in sorted(folder.glob("thumbnail_*")):
        outputs.append(_entry(folder, thumbnail.name, "thumbnail"))
    if plan.sprite and (folder / "overview.png").exists():
        sprite = plan.sprite
        (folder / "overview.vtt").write_text(overview_vtt(sprite, plan.duration), encoding="utf-8")
        outputs.append(
            _entry(
                folder,
                "overview.png",
                "overview_sprite",
                width=sprite.tile_width * sprite.tiles,
                height=sprite.tile_height,
            )
        )
        outputs.append(_entry(folder, "overview.vtt", "overview_vtt"))
    for stream, name in plan.subtitles:
        if (folder / name).exists():
            entry = _entry(folder, name, "subtitle")
            entry["language"] = stream.language
            outputs.append(entry)
    source = plan.info.to_dict()
    source["path"] = Path(source["path"]).name
    return {
        "duration": round(plan.duration, 3),
        "source": source,
        "outputs": outputs,
        "dropped": plan.dropped,
    }


def _hls_outputs(plan: EncodePlan, folder: Path) -> list[dict[str, Any]]:
    """Measure each variant, write the master playlist, and describe both."""
    entries: list[dict[str, Any]] = []
    variants: list[Variant] = []
    if plan.ladder is None:
        variant = _variant(folder, "audio.m3u8", plan)
        variants.append(variant)
        entries.append(_hls_entry(folder, variant, None, None))
    else:
        fps = plan.ladder.fps or plan.ladder.source_fps
        alternates = [_variant(folder, f"{name}.m3u8", plan) for _, name in plan.extra_audio]
        # A player fetching an alternate audio track fetches it on top of the variant.
        extra_peak = max((a.bandwidth for a in alternates), default=0)
        extra_average = max((a.average_bandwidth for a in alternates), default=0)
        for rendition in plan.ladder.renditions:
            variant = _variant(folder, f"{rendition.name}.m3u8", plan)
            entries.append(_hls_entry(folder, variant, rendition.width, rendition.height))
            variant = replace(
                variant,
                bandwidth=variant.bandwidth + extra_peak,
                average_bandwidth=variant.average_bandwidth + extra_average,
                resolution=(rendition.width, rendition.height),
                frame_rate=fps,
            )
            entries[-1]["bandwidth"] = variant.bandwidth
            variants.append(variant)
        for alternate in alternates:
            entry = _hls_entry(folder, alternate, None, None)
            entry["kind"] = "hls_audio"
            entries.append(entry)
    subtitles = subtitle_media(plan, folder)
    entries += [_entry(folder, m.uri, SUBTITLE_PLAYLIST_KIND) for m in subtitles if m.uri]
    media = audio_media(plan) + subtitles
    (folder / MASTER_PLAYLIST).write_text(master_playlist(variants, media), encoding="utf-8")
    peak = max(v.bandwidth for v in variants)
    return [_entry(folder, MASTER_PLAYLIST, "hls_master", bandwidth=peak), *entries]


def _dash_entry(folder: Path) -> dict[str, Any]:
    if not (folder / DASH_MANIFEST).exists():
        raise InvalidMedia("ffmpeg produced no DASH manifest: the source has nothing to encode")
    entry = _entry(folder, DASH_MANIFEST, "dash_manifest")
    entry["segments"] = [
        {"path": p.name, "size": p.stat().st_size, "sha256": sha256_of(p)}
        for p in sorted(folder.glob("*.m4s"))
    ]
    return entry


def _variant(folder: Path, playlist: str, plan: EncodePlan) -> Variant:
    if not (folder / playlist).exists():
        raise InvalidMedia(f"ffmpeg produced no {playlist}: the source has nothing to encode")
    segments = read_media_playlist(folder / playlist)
    if not segments:
        raise InvalidMedia(f"{playlist} has no segment: the source has no decodable frames")
    target = read_target_duration(folder / playlist)
    peak, average = measure_bandwidth(folder, segments, target)
    return Variant(
        playlist=playlist,
        bandwidth=peak,
        average_bandwidth=average,
        codecs=codecs_of(folder / segments[0].uri),
    )


def _hls_entry(
    folder: Path, variant: Variant, width: int | None, height: int | None
) -> dict[str, Any]:
    entry = _entry(
        folder,
        variant.playlist,
        "hls_variant",
        width=width,
        height=height,
        bandwidth=variant.bandwidth,
        codecs=variant.codecs,
    )
    entry["average_bandwidth"] = variant.average_bandwidth
    entry["segments"] = [
        {
            "path": s.uri,
            "size": (folder / s.uri).stat().st_size,
            "sha256": sha256_of(folder / s.uri),
            "duration": s.duration,
        }
        for s in read_media_playlist(folder / variant.playlist)
    ]
    return entry


def _entry(
    folder: Path,
    name: str,
    kind: str,
    *,
    width: int | None = None,
    height: int | None = None,
    bandwidth: int | None = None,
    codecs: str | None = None,
) -> dict[str, Any]:
    path = folder / name
    return {
        "kind": kind,
        "path": name,
        "width": width,
        "height": height,
        "bandwidth": bandwidth,
        "codecs": codecs,
        "size": path.stat().st_size,
        "sha256": sha256_of(path),
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def overview_vtt(sprite: SpritePlan, duration: float) -> str:
    lines = ["WEBVTT", ""]
    for i in range(sprite.tiles):
        begin = i * sprite.step
        finish = min(duration, (i + 1) * sprite.step)
        lines += [
            f"{_timestamp(begin)} --> {_timestamp(finish)}",
            f"overview.png#xywh={i * sprite.tile_width},0,{sprite.tile_width},{sprite.tile_height}",
            "",
        ]
    return "\n".join(lines)


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"
