"""Pod's dressing and studio on the runner path: what to fetch besides the source, and the
composition the encode job gets (see docs/pod-compose.md).

At submission (`remote_spec`), `parameters.dressing` is read (`dressing_from_runner`) and its
URLs checked against SSRF; a `studio` task is noted. When the source is fetched, a studio's
`source_url` is Opencast's mediapackage XML (`read_studio`): its presenter and presentation
tracks become the video (the presentation, else the presenter) and an asset, its SMIL catalog
the cut. Every extra file (watermark, credits, the other studio track) is downloaded like the
source (streamed, size-limited, guarded at every redirect) and stored under
`sources/<video>/assets/` (`store_assets`), so any worker reads it from storage, as it reads
the source; the job's params then hold the composition with those keys (`composition_for`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidParameters
from vidfarm.media.compose import Corner, Cut
from vidfarm.media.composition_params import SOURCE, composition_params
from vidfarm.media.pod_dressing import RemoteDressing, dressing_from_runner
from vidfarm.media.pod_studio import (
    MAX_XML,
    RemoteStudio,
    cut_from_smil,
    parse_layout,
    studio_from_mediapackage,
)
from vidfarm.runner_service.fetch import download
from vidfarm.storage import Storage
from vidfarm.urlguard import check_url

_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


@dataclass(frozen=True, kw_only=True)
class Fetcher:
    """How this runner downloads: its limits, its SSRF setting, and when to give up."""

    folder: Path
    max_bytes: int
    allow_private: bool
    should_stop: Callable[[], bool]

    def get(self, url: str, name: str, max_bytes: int | None = None) -> tuple[Path, str]:
        target = self.folder / name
        filename = download(
            url,
            target,
            max_bytes=max_bytes or self.max_bytes,
            allow_private=self.allow_private,
            should_stop=self.should_stop,
        )
        return target, filename


def remote_spec(
    task_type: str, parameters: Mapping[str, Any], *, allow_private: bool
) -> dict[str, Any] | None:
    """What a task needs fetched besides its source (None: nothing), checked now (422)."""
    spec: dict[str, Any] = {}
    dressing = dressing_from_runner(parameters.get("dressing"))
    if dressing is not None:
        for role, url in dressing.urls().items():
            check_url(url, allow_private=allow_private, name=f"parameters.dressing.{role}")
        spec["dressing"] = {
            "watermark_url": dressing.watermark_url,
            "position": dressing.position.value,
            "opacity": dressing.opacity,
            "opening_url": dressing.opening_url,
            "ending_url": dressing.ending_url,
        }
    if task_type == "studio":
        presenter = parameters.get("presenter")
        if presenter not in (None, ""):
            parse_layout(presenter)  # refused now rather than after the download
        spec["studio"] = {"presenter": presenter}
    return spec or None


def read_studio(
    url: str, parameters: Mapping[str, Any], fetcher: Fetcher
) -> tuple[RemoteStudio, Cut | None]:
    """The mediapackage at `url` and, if it names one, its SMIL cutting catalog."""
    path, _ = fetcher.get(url, "mediapackage.xml", MAX_XML)
    try:
        studio = studio_from_mediapackage(_text(path, "mediapackage"), parameters)
    finally:
        path.unlink(missing_ok=True)
    cut = None
    if studio.smil_url:
        path, _ = fetcher.get(studio.smil_url, "cutting.smil", MAX_XML)
        try:
            cut = cut_from_smil(_text(path, "smil/cutting"))
        finally:
            path.unlink(missing_ok=True)
    return studio, cut


def main_role(studio: RemoteStudio) -> str:
    """The studio track that becomes the task's video (its source)."""
    return "presentation" if studio.presentation_url else "presenter"


def store_assets(
    urls: Mapping[str, str], video_id: str, storage: Storage, fetcher: Fetcher
) -> dict[str, str]:
    """Download each role's file and store it with the video; role -> storage key."""
    keys: dict[str, str] = {}
    for role, url in urls.items():
        path, filename = fetcher.get(url, f"{video_id}-{role}")
        try:
            suffix = Path(filename).suffix
            key = f"sources/{video_id}/assets/{role}{suffix if _EXTENSION.match(suffix) else ''}"
            storage.put_file(path, key, move=True)
        finally:
            path.unlink(missing_ok=True)
        keys[role] = key
    return keys


def composition_for(
    remote: Mapping[str, Any],
    keys: Mapping[str, str],
    *,
    studio: RemoteStudio | None = None,
    cut: Cut | None = None,
) -> dict[str, Any]:
    """The job's `composition` param from the fetched files (`keys`, role -> storage key)."""
    main: str | dict[str, Any] = SOURCE
    if studio is not None:
        source_role = main_role(studio)

        def ref(role: str) -> str | None:
            if role == source_role:
                return SOURCE
            return keys.get(role)

        main = {
            "studio": {
                "layout": studio.layout.value,
                "presentation": ref("presentation") if studio.presentation_url else None,
                "presenter": ref("presenter") if studio.presenter_url else None,
            }
        }
    dressing = remote.get("dressing")
    watermark = None
    if dressing and "watermark" in keys:
        watermark = (keys["watermark"], Corner(dressing["position"]), int(dressing["opacity"]))
    return composition_params(
        main, cut=cut, watermark=watermark, opening=keys.get("opening"), ending=keys.get("ending")
    )


def dressing_urls(remote: Mapping[str, Any]) -> dict[str, str]:
    data = remote.get("dressing")
    if not data:
        return {}
    return RemoteDressing(
        watermark_url=data.get("watermark_url"),
        position=Corner(data["position"]),
        opacity=int(data["opacity"]),
        opening_url=data.get("opening_url"),
        ending_url=data.get("ending_url"),
    ).urls()


def _text(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InvalidParameters(f"{name}: not UTF-8 text") from None
