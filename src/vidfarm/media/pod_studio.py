"""Pod's studio recordings, from either path, read into one `Studio` and its `Cut`.

Celery (`start_studio_task`): `videos` is `[{"type": "presenter/source" |
"presentation/source", "src": <abs path>}]`, `subtime` is `"-ss A -to B "` (either part may be
missing, or both: `""`), `presenter` is `mid`, `piph` or `pipb`. Runner (`task_type` studio):
the source is the Opencast mediapackage XML: `<mediapackage presenter="...">`, `<track
type="presenter/source"><url>`, and a `<catalog type="smil/cutting">` whose SMIL has
`clipBegin`/`clipEnd`; `parameters.presenter` may override the layout (esup-runner's field).
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidParameters
from vidfarm.media.compose import Cut, Layout, Studio
from vidfarm.media.pod_dressing import check_local_file

PRESENTER = "presenter/source"
PRESENTATION = "presentation/source"
SMIL_CUTTING = "smil/cutting"
MAX_XML = 1_000_000  # bytes: a mediapackage is a few kilobytes
_SECONDS = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)s?$")


def studio_from_celery(
    videos: Sequence[Mapping[str, Any]], subtime: str, presenter: str, roots: Sequence[Path]
) -> tuple[Studio, Cut | None]:
    """`start_studio_task(recording_id, video_output, videos, subtime, presenter)`'s inputs."""
    if not isinstance(videos, Sequence) or isinstance(videos, str):
        raise InvalidParameters("videos: expected a list of {type, src}")
    found: dict[str, Path] = {}
    for video in videos:
        if not isinstance(video, Mapping):
            raise InvalidParameters("videos: expected a list of {type, src}")
        kind = video.get("type")
        if kind in (PRESENTER, PRESENTATION):  # Pod ignores other flavors too
            found[str(kind)] = check_local_file(str(video.get("src") or ""), roots, str(kind))
    studio = Studio(
        presentation=found.get(PRESENTATION),
        presenter=found.get(PRESENTER),
        layout=parse_layout(presenter),
    )
    return studio, parse_subtime(subtime)


def parse_layout(value: object) -> Layout:
    try:
        return Layout(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(layout.value for layout in Layout)
        raise InvalidParameters(f"presenter {value!r} is not one of {allowed}") from None


def parse_subtime(text: str) -> Cut | None:
    """Pod's `-ss A -to B ` (seconds, or HH:MM:SS); nothing else is accepted."""
    try:
        tokens = shlex.split(text or "")
    except ValueError as error:
        raise InvalidParameters(f"subtime: not Pod's -ss/-to ({error})") from None
    if len(tokens) % 2:
        raise InvalidParameters("subtime: expected -ss <time> and/or -to <time>")
    values: dict[str, float] = {}
    for flag, value in zip(tokens[::2], tokens[1::2], strict=True):
        if flag not in ("-ss", "-to") or flag in values:
            raise InvalidParameters(f"subtime: only one -ss and one -to are accepted, not {flag!r}")
        values[flag] = seconds(value, f"subtime {flag}")
    if not values:
        return None
    return Cut(start=values.get("-ss", 0.0), end=values.get("-to"))


def seconds(value: str, name: str) -> float:
    """12.5, "12.5s" (SMIL) or "[HH:]MM:SS(.ms)" as seconds."""
    match = _SECONDS.match(value.strip())
    if not match:
        raise InvalidParameters(f"{name}: {value!r} is not a time")
    total = 0.0
    for part in (p for p in match.groups() if p is not None):
        total = total * 60 + float(part)
    return total


@dataclass(frozen=True, kw_only=True)
class RemoteStudio:
    """The runner path's studio: URLs to fetch, the layout, and the SMIL to read for the cut."""

    presentation_url: str | None
    presenter_url: str | None
    layout: Layout
    smil_url: str | None

    def urls(self) -> dict[str, str]:
        found = {"presentation": self.presentation_url, "presenter": self.presenter_url}
        return {role: url for role, url in found.items() if url}

    def resolve(self, files: Mapping[str, Path]) -> Studio:
        missing = sorted(set(self.urls()) - set(files))
        if missing:
            raise InvalidParameters(f"studio: {', '.join(missing)} was not fetched")
        return Studio(
            presentation=files.get("presentation"),
            presenter=files.get("presenter"),
            layout=self.layout,
        )


def studio_from_mediapackage(xml_text: str, parameters: Mapping[str, Any]) -> RemoteStudio:
    """Read the mediapackage Pod sends as the studio task's source."""
    root = _parse_xml(xml_text, "mediapackage")
    if _local(root.tag) != "mediapackage":
        raise InvalidParameters("studio source: not an Opencast mediapackage")
    override = parameters.get("presenter")
    layout_value = override if override not in (None, "") else root.get("presenter") or "mid"
    tracks: dict[str, str] = {}
    smil_url = None
    for element in root.iter():
        kind = element.get("type")
        url = _child_text(element, "url")
        if _local(element.tag) == "track" and kind in (PRESENTER, PRESENTATION) and url:
            tracks.setdefault(str(kind), _http(url, str(kind)))
        elif _local(element.tag) == "catalog" and kind == SMIL_CUTTING and url:
            smil_url = _http(url, SMIL_CUTTING)
    if not tracks:
        raise InvalidParameters("studio source: no presenter/source nor presentation/source")
    return RemoteStudio(
        presentation_url=tracks.get(PRESENTATION),
        presenter_url=tracks.get(PRESENTER),
        layout=parse_layout(layout_value),
        smil_url=smil_url,
    )


def cut_from_smil(xml_text: str) -> Cut | None:
    """The first `<video clipBegin=.. clipEnd=..>` of Opencast's SMIL cutting catalog."""
    root = _parse_xml(xml_text, "smil/cutting")
    for element in root.iter():
        if _local(element.tag) != "video":
            continue
        begin, end = element.get("clipBegin"), element.get("clipEnd")
        if begin or end:
            return Cut(
                start=seconds(begin, "clipBegin") if begin else 0.0,
                end=seconds(end, "clipEnd") if end else None,
            )
    return None


def _parse_xml(text: str, name: str) -> ET.Element:
    # No DTD at all: entity expansion is the one XML trick left with ElementTree.
    if len(text) > MAX_XML or "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise InvalidParameters(f"{name}: refused (too large, or declares a DTD)")
    try:
        return ET.fromstring(text)  # noqa: S314 - no DTD gets here (checked above)
    except ET.ParseError as error:
        raise InvalidParameters(f"{name}: not XML ({error})") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name and child.text:
            return child.text.strip()
    return None


def _http(url: str, role: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise InvalidParameters(f"studio source: {role} URL must be http(s), not {url[:40]!r}")
    return url
