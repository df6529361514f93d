"""Scenario c: the floor, the least ffmpeg work that yields the same ladder, cut out of
vidfarm's own argument list (and, with --breakdown, that list one piece at a time)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import FFMPEG_FLAGS, BenchError, Measurement, folder_bytes, run_process

# --------------------------------------------------------------------------- c. the floor
# The floor and the breakdown variants are cut out of vidfarm's own argument list, so they use
# exactly its x264, AAC and filter options whatever they are today.

_FLAG_OPTIONS = {"-vn", "-an", "-sn", "-dn"}
_SPLIT = re.compile(r"^(?P<input>\[[^\]]+\])(?P<prelude>.*?)split=\d+(?P<labels>(?:\[[^\]]+\])+)$")
_LABELS = re.compile(r"\[([^\]]+)\]")


@dataclass
class OutputGroup:
    kind: str  # rendition, thumbnail, sprite, mp3, other
    options: list[str]  # everything before the output name
    target: str


@dataclass
class ParsedArgs:
    inputs: list[str]
    head: str  # "[0:0]split=N[b0]..." without the labels
    prelude: str
    chains: dict[str, str]  # output label ("v0", "t1", "sprite") -> "[bK]...[label]"
    branch_of: dict[str, str]  # output label -> split label
    outputs: list[OutputGroup]


def parse_vidfarm_args(args: list[str]) -> ParsedArgs:
    i = args.index("-filter_complex")
    inputs, graph = args[:i], args[i + 1]
    parts = graph.split(";")
    split = _SPLIT.match(parts[0])
    if not split:
        raise BenchError(f"unexpected head of vidfarm's filter graph: {parts[0]}")
    chains: dict[str, str] = {}
    branch_of: dict[str, str] = {}
    for chain in parts[1:]:
        labels = _LABELS.findall(chain)
        chains[labels[-1]] = chain
        branch_of[labels[-1]] = labels[0]
    outputs: list[OutputGroup] = []
    pending: list[str] = []
    rest = args[i + 2 :]
    j = 0
    while j < len(rest):
        token = rest[j]
        if token.startswith("-") and token != "-":
            pending.append(token)
            if token not in _FLAG_OPTIONS:
                pending.append(rest[j + 1])
                j += 1
        else:
            outputs.append(OutputGroup(_kind_of(pending), pending, token))
            pending = []
        j += 1
    return ParsedArgs(
        inputs, split.group("input"), split.group("prelude"), chains, branch_of, outputs
    )


def _kind_of(options: list[str]) -> str:
    maps = [options[k + 1] for k, t in enumerate(options) if t == "-map"]
    if any(re.fullmatch(r"\[v\d+\]", m) for m in maps):
        return "rendition"
    if any(re.fullmatch(r"\[t\d+\]", m) for m in maps):
        return "thumbnail"
    if "[sprite]" in maps:
        return "sprite"
    if "libmp3lame" in options:
        return "mp3"
    return "other"


def _strip_format(options: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for k, token in enumerate(options):
        if skip:
            skip = False
            continue
        if token == "-f" or (token.startswith("-hls") and k + 1 < len(options)):
            skip = True
            continue
        kept.append(token)
    return kept


def variant_args(
    parsed: ParsedArgs, kinds: set[str], *, null_renditions: bool, image_passthrough: bool = False
) -> list[str]:
    """vidfarm's command keeping only the output groups of `kinds` (renditions always)."""
    groups = [g for g in parsed.outputs if g.kind == "rendition" or g.kind in kinds]
    labels = [
        m
        for g in groups
        for k, m in enumerate(g.options)
        if k > 0 and g.options[k - 1] == "-map" and m.startswith("[")
    ]
    labels = [m.strip("[]") for m in labels]
    branches = [parsed.branch_of[label] for label in labels]
    head = (
        parsed.head
        + parsed.prelude
        + f"split={len(branches)}"
        + "".join(f"[{b}]" for b in branches)
    )
    graph = ";".join([head, *(parsed.chains[label] for label in labels)])
    args = [*parsed.inputs, "-filter_complex", graph]
    for group in groups:
        if group.kind == "rendition" and null_renditions:
            args += [*_strip_format(group.options), "-f", "null", "-"]
        elif (
            group.kind in ("thumbnail", "sprite")
            and image_passthrough
            and "-fps_mode" not in group.options
        ):
            args += [*group.options, "-fps_mode", "passthrough", group.target]
        else:
            args += [*group.options, group.target]
    return args


def run_plain(label: str, ffmpeg: str, args: list[str], cwd: Path) -> Measurement:
    cwd.mkdir()
    started = time.monotonic()
    process = run_process(label, [ffmpeg, *FFMPEG_FLAGS, *args], cwd=cwd)
    return Measurement(
        approach=label,
        cpu_seconds=process.cpu_seconds,
        wall_seconds=time.monotonic() - started,
        processes=[process],
        output_bytes=folder_bytes(cwd),
    )


BREAKDOWN: tuple[tuple[str, set[str], bool, bool], ...] = (
    # label, output kinds added to the renditions, renditions to null?, image outputs with
    # -fps_mode passthrough? (without it ffmpeg pads an image output to constant frame rate,
    # so a thumbnail picked at t is written about t * fps times)
    ("floor + MP3", {"mp3"}, True, False),
    ("floor + thumbnails", {"thumbnail"}, True, False),
    ("floor + thumbnails, no frame dup", {"thumbnail"}, True, True),
    ("floor + sprite", {"sprite"}, True, False),
    ("floor + sprite, no frame dup", {"sprite"}, True, True),
    ("floor + HLS/MP4 muxing", set(), False, False),
    ("vidfarm's ffmpeg alone", {"mp3", "thumbnail", "sprite", "other"}, False, False),
    ("vidfarm's ffmpeg, no frame dup", {"mp3", "thumbnail", "sprite", "other"}, False, True),
)
