"""Importing a manager's result: paths that escape are refused, checksums are verified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vidfarm.dispatch.runners.transfer import (
    Fetched,
    RunnerResultRefused,
    describe,
    manifest_entries,
    safe_path,
)

SHA = "ab" * 32


@pytest.mark.parametrize(
    "path",
    ["../escape", "a/../../b", "/etc/passwd", "a\\..\\b", "", "a//b", ".hidden", "a/./b", 7],
)
def test_unsafe_paths_are_refused(path: object) -> None:
    with pytest.raises(RunnerResultRefused):
        safe_path(path)


def test_manifest_entries() -> None:
    manifest = {
        "task_id": "t",
        "files": ["info_video.json", {"file_path": "360p.m3u8", "sha256": SHA.upper()},
                  {"path": "sub/a.ts", "sha256": None}],
    }  # fmt: skip
    assert manifest_entries(manifest) == [
        ("360p.m3u8", SHA), ("info_video.json", None), ("sub/a.ts", None),
    ]  # fmt: skip
    with pytest.raises(RunnerResultRefused, match="no files"):
        manifest_entries({"files": []})
    with pytest.raises(RunnerResultRefused, match="invalid sha256"):
        manifest_entries({"files": [{"file_path": "a", "sha256": "xyz"}]})
    with pytest.raises(RunnerResultRefused, match="escapes"):
        manifest_entries({"files": ["ok.ts", "../../etc/passwd"]})


def write(folder: Path, name: str, data: bytes) -> Fetched:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    return Fetched(path=name, size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_vidfarm_manifest_becomes_the_outputs(tmp_path: Path) -> None:
    master = write(tmp_path, "master.m3u8", b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p.m3u8\n")
    variant = write(tmp_path, "360p.m3u8", b"#EXTM3U\n")
    manifest = {
        "duration": 2.0,
        "outputs": [
            {"kind": "hls_master", "path": "master.m3u8", "size": master.size,
             "sha256": master.sha256, "bandwidth": 900},
            {"kind": "hls_variant", "path": "360p.m3u8", "size": variant.size,
             "sha256": variant.sha256, "width": 640, "height": 360, "codecs": "avc1.64001e"},
        ],
    }  # fmt: skip
    own = write(tmp_path, "manifest.json", json.dumps(manifest).encode())
    result = describe(tmp_path, [master, variant, own], "videos/v/j/a1")
    assert result.result["prefix"] == "videos/v/j/a1" and result.result["duration"] == 2.0
    [m, v] = result.outputs
    assert (m.kind, m.key, m.bandwidth) == ("hls_master", "videos/v/j/a1/master.m3u8", 900)
    assert (v.width, v.height, v.codecs, v.sha256) == (640, 360, "avc1.64001e", variant.sha256)

    manifest["outputs"][1]["sha256"] = SHA  # the manifest disagrees with the file
    bad = write(tmp_path, "manifest.json", json.dumps(manifest).encode())
    with pytest.raises(RunnerResultRefused, match="does not match"):
        describe(tmp_path, [master, variant, bad], "p")
    manifest["outputs"][1]["path"] = "missing.m3u8"
    bad = write(tmp_path, "manifest.json", json.dumps(manifest).encode())
    with pytest.raises(RunnerResultRefused, match="does not list"):
        describe(tmp_path, [master, variant, bad], "p")


def test_foreign_result_outputs_from_file_names(tmp_path: Path) -> None:
    files = [
        write(tmp_path, "livestream.m3u8", b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p.m3u8\n"),
        write(tmp_path, "360p.m3u8", b"#EXTM3U\n#EXTINF:2,\n360p_0.ts\n"),
        write(tmp_path, "360p_0.ts", b"\x47" * 188),
        write(tmp_path, "720p.mp4", b"mp4"),
        write(tmp_path, "audio_192k.mp3", b"mp3"),
        write(tmp_path, "thumbnail_1.jpg", b"jpg"),
        write(tmp_path, "info_video.json", b'{"duration": 12.5}'),
    ]
    result = describe(tmp_path, files, "p")
    kinds = {o.key: (o.kind, o.height) for o in result.outputs}
    assert kinds == {
        "p/livestream.m3u8": ("hls_master", None),
        "p/360p.m3u8": ("hls_variant", 360),
        "p/720p.mp4": ("mp4", 720),
        "p/audio_192k.mp3": ("audio", None),
        "p/thumbnail_1.jpg": ("thumbnail", None),
    }
    assert result.result["duration"] == 12.5 and result.result["derived_from_file_names"]
