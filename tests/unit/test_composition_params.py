"""A composition crosses to the worker as JSON params with storage keys (runner path)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidfarm.claims import Claim
from vidfarm.config import Settings
from vidfarm.errors import InvalidParameters
from vidfarm.kinds.base import Workspace
from vidfarm.media.compose import Corner, Cut, Layout, Studio
from vidfarm.media.composition_params import SOURCE, composition_from_params, composition_params
from vidfarm.storage import LocalStorage


def test_round_trip_through_json(tmp_path: Path) -> None:
    keys = {"sources/v1/assets/watermark.png": tmp_path / "wm.png"}
    keys["sources/v1/assets/ending.mp4"] = tmp_path / "end.mp4"
    data = composition_params(
        SOURCE,
        watermark=("sources/v1/assets/watermark.png", Corner.BOTTOM_LEFT, 40),
        ending="sources/v1/assets/ending.mp4",
    )
    data = json.loads(json.dumps(data))  # what SQL stores

    def resolve(ref: str) -> Path:
        return tmp_path / "source.mp4" if ref == SOURCE else keys[ref]

    composition = composition_from_params(data, resolve, start=2.0, end=5.0)
    assert composition.main == tmp_path / "source.mp4"
    assert composition.cut == Cut(start=2.0, end=5.0)  # the runner's own cut
    assert composition.dressing is not None and composition.dressing.opening is None
    assert composition.dressing.ending == tmp_path / "end.mp4"
    mark = composition.dressing.watermark
    assert mark is not None and (mark.position, mark.opacity) == (Corner.BOTTOM_LEFT, 40)

    studio = composition_params(
        {"studio": {"layout": "piph", "presentation": SOURCE, "presenter": "k"}},
        cut=Cut(start=1.0, end=3.5),
    )
    rebuilt = composition_from_params(json.loads(json.dumps(studio)), lambda ref: Path("/") / ref)
    assert rebuilt.main == Studio(presentation=Path("/source"), presenter=Path("/k"),
                                  layout=Layout.PIPH)  # fmt: skip
    assert rebuilt.cut == Cut(start=1.0, end=3.5) and rebuilt.dressing is None


def test_a_worker_reads_only_its_own_videos_assets(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    (tmp_path / "logo.png").write_bytes(b"png")
    storage.put_file(tmp_path / "logo.png", "sources/v1/assets/watermark.png")
    work = Workspace(settings=Settings(data_dir=tmp_path), storage=storage, folder=tmp_path / "w")
    claim = Claim(job_id="j", job_type="encode", video_id="v1", source_key="sources/v1/v1.mp4",
                  params={}, attempt=1, fencing_token=1)  # fmt: skip
    assert work.asset(claim, "sources/v1/assets/watermark.png").read_bytes() == b"png"
    for key in ("sources/v2/assets/watermark.png", "sources/v1/v1.mp4", "videos/v1/x",
                "sources/v1/assets/../../v2/x"):  # fmt: skip
        with pytest.raises(InvalidParameters, match="not one of this video's files"):
            work.asset(claim, key)
