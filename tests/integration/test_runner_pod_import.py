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
import numpy as np
import pytest
from test_runner_service import Runner, World, pod_body

from fixtures_media import MakeMedia, colour_clip, video_args

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


def serve(world: World, source: Path, name: str) -> str:
    (world.files / name).write_bytes(source.read_bytes())
    return f"{world.url}/files/{name}"


def picture(path: Path, at: float) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= at:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {at} s")


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 45) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tolerance))


def spans(path: Path) -> tuple[float, float]:
    """(video, audio) end times of a file, demuxed: equal when the sound is in sync."""
    ends: dict[str, float] = {}
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0], container.streams.audio[0]):
            if packet.pts is None or not packet.duration:
                continue
            end = float((packet.pts + packet.duration) * packet.stream.time_base)
            ends[packet.stream.type] = max(ends.get(packet.stream.type, 0.0), end)
    return ends["video"], ends["audio"]


def test_pod_imports_a_dressed_encoding_task(
    runner: Runner, world: World, make_media: MakeMedia, tmp_path: Path
) -> None:
    """Watermark (top right, opaque) + opening credits (4:3, with sound) + silent ending."""
    main = colour_clip(make_media, "pod-dress-main.mp4", "black", "640x360", 4, audio=True)
    logo = make_media(
        "pod-logo.png", "-f", "lavfi", "-i", "color=c=red:s=64x32,format=rgba", "-frames:v", "1"
    )
    opening = make_media(
        "pod-opening.mp4",
        *("-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=1"),
        *("-f", "lavfi", "-i", "sine=f=880:sample_rate=48000:d=1"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"),
        "-shortest",
    )  # fmt: skip
    ending = colour_clip(make_media, "pod-ending.mp4", "white", "640x360", 1, audio=False)
    dressing = {  # runner_manager.py _attach_dressing_info
        "watermark": serve(world, logo, "logo.png"),
        "watermark_position": "top_right",
        "watermark_opacity": "100",
        "opening_credits": "opening-slug",
        "opening_credits_video": serve(world, opening, "opening.mp4"),
        "ending_credits": "ending-slug",
        "ending_credits_video": serve(world, ending, "ending.mp4"),
    }
    body = pod_body(world, "files/" + serve(world, main, "dress-main.mp4").rsplit("/", 1)[1],
                    "dressed", rendition=OLD_SHAPE, dressing=json.dumps(dressing))  # fmt: skip
    task_id = run_task(runner, world, body)
    fetch_result(runner, task_id, tmp_path)
    info = pod_import(tmp_path, POD_TABLE)
    assert info["duration"] == 6  # 1 s opening + 4 s main + 1 s ending
    mp4 = tmp_path / "360p.mp4"
    video_end, audio_end = spans(mp4)
    assert video_end == pytest.approx(6.0, abs=0.1)
    assert audio_end == pytest.approx(video_end, abs=0.1)  # the silent ending got silence
    # Pod's watermark: 10 % of the height (36 px, 72 wide), 5 % (18 px) from the corner.
    logo_pixel = (18 + 18, 640 - 18 - 36)
    assert near(picture(mp4, 3.0)[logo_pixel], (255, 0, 0))
    opening_frame = picture(mp4, 0.5)  # credits: 4:3 padded to 16:9, no watermark on them
    assert near(opening_frame[logo_pixel], (0, 0, 0)) and near(opening_frame[180, 20], (0, 0, 0))
    assert near(picture(mp4, 5.5)[180, 320], (255, 255, 255))
    ts = tmp_path / "360p.ts"  # the HLS rendition is the same picture
    assert near(picture(ts, 3.0 + picture_origin(ts))[logo_pixel], (255, 0, 0))


def picture_origin(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.start_time or 0) / 1e6


def test_pod_imports_a_studio_task(
    runner: Runner, world: World, make_media: MakeMedia, tmp_path: Path
) -> None:
    """Opencast's mediapackage (piph), its SMIL cut; the presenter inset, the presenter's sound."""
    slides = colour_clip(make_media, "pod-slides.mp4", "blue", "640x360", 4, audio=False)
    camera = colour_clip(make_media, "pod-camera.mp4", "lime", "320x180", 4, audio=True)
    smil = tmp_path / "cut.smil"
    smil.write_text(
        '<smil xmlns="http://www.w3.org/ns/SMIL"><body><par>'
        '<video src="x" clipBegin="1s" clipEnd="3.5s"/></par></body></smil>'
    )
    xml = tmp_path / "mediapackage.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<mediapackage xmlns="http://mediapackage.opencastproject.org" id="mp1" presenter="piph">'
        f'<media><track type="presenter/source" id="t1"><url>{serve(world, camera, "cam.mp4")}'
        f'</url></track><track type="presentation/source" id="t2"><url>'
        f"{serve(world, slides, 'slides.mp4')}</url></track></media><metadata>"
        f'<catalog type="smil/cutting" id="c1"><url>{serve(world, smil, "cut.smil")}</url>'
        "</catalog></metadata></mediapackage>"
    )
    body = pod_body(world, "files/" + serve(world, xml, "mp.xml").rsplit("/", 1)[1], "studio")
    body["task_type"] = "studio"
    body["parameters"] = {"rendition": OLD_SHAPE}  # what Pod sends with a studio task
    task_id = run_task(runner, world, body)
    folder = tmp_path / "result"
    fetch_result(runner, task_id, folder)
    info = pod_import(folder, POD_TABLE)
    assert info["duration"] == 2  # 3.5 - 1 s, Pod keeps whole seconds
    mp4 = folder / "360p.mp4"
    video_end, audio_end = spans(mp4)
    assert video_end == pytest.approx(2.5, abs=0.1)
    assert audio_end == pytest.approx(video_end, abs=0.1)  # the presenter's sound
    frame = picture(mp4, 1.0)
    assert frame.shape[:2] == (360, 640)
    # piph: the presenter a quarter of the height (90 px, 160 wide), 10 px from the top right.
    assert near(frame[10 + 45, 640 - 10 - 80], (0, 255, 0))
    assert near(frame[300, 320], (0, 0, 255))
