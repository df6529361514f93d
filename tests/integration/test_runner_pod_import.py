"""Esup-Pod's requests replayed against a real `vidfarm runner`, its result run through Pod's
import rules (runner_manager_utils: which files, which names, which info_video.json keys).

Pod imports, per HLS rendition, `<stem>.m3u8` and `<stem>.ts` (single-file HLS; segmented HLS
is "Wrong file or path" and breaks playback), names renditions by their nominal height
looked up in its rendition table (`resolution__contains="x<h>"`), and reads `duration` (int),
`has_stream_*` (bools), `encode_video` / `encode_audio` / `encode_thumbnail` from
`info_video.json`, each listed file existing and non-empty; `overview.vtt` at the root.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import m3u8
import pytest
from test_runner_service import Runner, World, pod_body

from fixtures_media import MakeMedia, video_args

#: Pod's VideoRendition fixture: nominal height -> resolution.
POD_TABLE = {360: "640x360", 720: "1280x720", 1080: "1920x1080"}
NEW_SHAPE = json.dumps(
    {"360": {"resolution": "640x360", "video_bitrate": "750k", "audio_bitrate": "96k",
             "encode_mp4": True},
     "720": {"resolution": "1280x720", "video_bitrate": "2000k", "audio_bitrate": "128k",
             "encode_mp4": True}}
)  # fmt: skip
OLD_SHAPE = json.dumps({"360": {"resolution": "640x360", "encode_mp4": True}})
INFO_KEYS = {
    "duration": int,
    "has_stream_video": bool,
    "has_stream_audio": bool,
    "has_stream_thumbnail": bool,
    "encode_video": list,
    "encode_audio": list,
    "encode_thumbnail": list,
}
_NOMINAL = re.compile(r"^(\d+)p\.(m3u8|mp4)$")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    import threading

    server = World(tmp_path_factory.mktemp("pod-world"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, pg_module_database: str) -> Iterator[Runner]:
    data_dir = tmp_path_factory.mktemp("pod-runner")
    (data_dir / "profiles").mkdir()
    # Pod's ladder at x264's fastest preset (the runner's default profile).
    (data_dir / "profiles" / "default.toml").write_text(
        'preset = "ultrafast"\n'
        '[[renditions]]\nheight = 360\nmin_video_bitrate = "500k"\nvideo_bitrate = "750k"\n'
        'max_video_bitrate = "1000k"\naudio_bitrate = "96k"\nmp4 = true\n'
        '[[renditions]]\nheight = 720\nmin_video_bitrate = "1000k"\nvideo_bitrate = "2000k"\n'
        'max_video_bitrate = "3000k"\naudio_bitrate = "128k"\nmp4 = true\n'
    )
    runner = Runner(data_dir, pg_module_database)
    runner.start()
    yield runner
    runner.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def lecture(make_media: MakeMedia, world: World) -> str:
    """10.5 s of 640x360 with sound (long enough for Pod's overview), served by the world."""
    source = make_media("pod-lecture.mp4", *video_args("640x360", 25, 10.5))
    (world.files / "lecture.mp4").write_bytes(source.read_bytes())
    return "lecture.mp4"


def fetch_result(runner: Runner, task_id: str, folder: Path) -> list[str]:
    """As Pod's importer: list the files, fetch each, check its SHA-256, keep it in `folder`."""
    listing = runner.call("GET", f"/task/result/{task_id}")
    assert listing.status_code == 200, listing.text
    names = []
    for entry in listing.json()["files"]:
        response = runner.call("GET", f"/task/result/{task_id}/file/{entry['file_path']}")
        assert response.status_code == 200, entry
        assert hashlib.sha256(response.content).hexdigest() == entry["sha256"], entry
        target = folder / entry["file_path"]
        assert target.resolve().is_relative_to(folder.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
        names.append(entry["file_path"])
    return names


def pod_import(folder: Path, table: dict[int, str]) -> dict[str, Any]:
    """Pod's import rules over a fetched result; returns info_video.json."""
    info = json.loads((folder / "info_video.json").read_text())
    for key, kind in INFO_KEYS.items():
        assert isinstance(info.get(key), kind), (key, info.get(key))
    assert info["encode_video"], "Pod would import no video"

    def present(name: str) -> Path:
        path = folder / name
        assert "/" not in name and path.is_file() and path.stat().st_size > 0, name
        return path

    for entry in info["encode_video"]:
        assert entry["encoding_format"] in ("video/mp4", "video/mp2t"), entry
        nominal = _NOMINAL.match(entry["filename"])
        assert nominal, f"{entry['filename']}: not a name Pod's rendition table knows"
        height = int(nominal.group(1))
        assert table.get(height) == entry["rendition"], entry
        path = present(entry["filename"])
        if entry["encoding_format"] == "video/mp2t":
            assert path.suffix == ".m3u8"
            ts = present(f"{path.stem}.ts")  # import_m3u8 / save_playlist_file
            playlist = m3u8.load(str(path))
            assert playlist.segments and {s.uri for s in playlist.segments} == {ts.name}
            assert all(s.byterange for s in playlist.segments)
            media = ts
        else:
            media = path
        with av.open(str(media)) as container:
            assert container.streams.video[0].codec_context.height <= height
            assert container.streams.audio or not info["has_stream_audio"]
    for entry in info["encode_audio"]:
        present(entry["filename"])
        assert entry["encoding_format"] in ("audio/mp3", "video/mp4")
    for entry in info["encode_thumbnail"]:
        present(entry["filename"])
    assert info["has_stream_thumbnail"] == bool(info["encode_thumbnail"])
    if info.get("overview"):
        present("overview.vtt")
        present("overview.png")
    return info


def run_task(runner: Runner, world: World, body: dict[str, Any]) -> str:
    accepted = runner.execute(body)
    assert accepted.status_code == 200, accepted.text
    task_id = str(accepted.json()["task_id"])
    notified = world.notification(task_id, timeout=180)["body"]
    assert notified["status"] == "completed", notified
    return task_id


@pytest.mark.parametrize(
    ("shape", "cut", "duration"),
    [
        ("new", None, 10),
        ("new", {"start": "00:00:02", "end": "00:00:06.5"}, 4),
        ("old", None, 10),
    ],
    ids=["new-shape", "new-shape-cut", "old-shape"],
)
def test_pod_imports_an_encoding_task(
    runner: Runner,
    world: World,
    lecture: str,
    tmp_path: Path,
    shape: str,
    cut: dict[str, str] | None,
    duration: int,
) -> None:
    rendition = NEW_SHAPE if shape == "new" else OLD_SHAPE
    body = pod_body(world, f"files/{lecture}", f"import-{shape}-{bool(cut)}", rendition=rendition)
    body["parameters"]["cut"] = json.dumps(cut or {})
    task_id = run_task(runner, world, body)
    names = fetch_result(runner, task_id, tmp_path)
    assert not [n for n in names if re.search(r"_\d{5}\.ts$", n)]  # no segmented HLS
    info = pod_import(tmp_path, POD_TABLE)
    assert info["duration"] == duration
    assert info["has_stream_video"] and info["has_stream_audio"]
    # A 360p source: 360p only (never upscaled), HLS and MP4, as Pod's table names them.
    assert sorted((v["filename"], v["rendition"]) for v in info["encode_video"]) == [
        ("360p.m3u8", "640x360"),
        ("360p.mp4", "640x360"),
    ]
    assert bool(info.get("overview")) == (duration >= 10)
    playlist = m3u8.load(str(tmp_path / "360p.m3u8"))
    assert sum(s.duration for s in playlist.segments) == pytest.approx(
        {10: 10.5, 4: 4.5}[duration], abs=0.1
    )
    with av.open(str(tmp_path / "360p.mp4")) as container:
        assert float(container.duration or 0) / 1e6 == pytest.approx(
            playlist_total(playlist), abs=0.15
        )


def playlist_total(playlist: m3u8.M3U8) -> float:
    return float(sum(s.duration for s in playlist.segments))


def test_pod_imports_a_transcription_task(
    runner: Runner, world: World, speech_clip: Path, tmp_path: Path
) -> None:
    """Pod's transcription import reads the result's WebVTT file."""
    (world.files / "speech.mkv").write_bytes(speech_clip.read_bytes())
    body = pod_body(world, "files/speech.mkv", "pod-speech")
    body["task_type"] = "transcription"
    body["parameters"] = {
        "lang": "en",
        "source_language": "auto",
        "duration": 12,
        "normalize": False,
        "model_type": "small",
    }  # fmt: skip (older Pod)
    task_id = run_task(runner, world, body)
    names = fetch_result(runner, task_id, tmp_path)
    vtts = [n for n in names if n.endswith(".vtt")]
    assert vtts
    for name in vtts:
        text = (tmp_path / name).read_text()
        assert text.startswith("WEBVTT") and "-->" in text
