"""A task's result as Pod reads it (info_video.json, file lookup), old tasks' cleanup, and
the runner's settings and start-up refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm.config import Settings, load_settings
from vidfarm.errors import ConfigError, InvalidParameters, NotFound
from vidfarm.models import RunnerTask, Video
from vidfarm.runner_service import results, tasks
from vidfarm.runner_service.cleanup import purge_old_tasks
from vidfarm.storage import LocalStorage
from vidfarm.videos import add_video

RESULT: dict[str, Any] = {
    "duration": 12.48,
    "prefix": "videos/v/j/a1",
    "source": {"video": [{"index": 0}], "audio": [{"index": 1}]},
    "outputs": [
        {"kind": "hls_master", "path": "master.m3u8", "sha256": "m", "size": 1},
        {"kind": "hls_variant", "path": "360p.m3u8", "width": 640, "height": 360,
         "sha256": "a", "size": 1,
         "segments": [{"path": "360p_00000.ts", "sha256": "s", "size": 9}]},
        {"kind": "hls_variant", "path": "720p.m3u8", "width": 1280, "height": 720,
         "sha256": "b", "size": 1, "segments": []},
        {"kind": "mp4", "path": "360p.mp4", "width": 640, "height": 360, "sha256": "c", "size": 1},
        {"kind": "audio", "path": "audio.mp3", "sha256": "d", "size": 1},
        {"kind": "thumbnail", "path": "thumbnail_1.jpg", "sha256": "e", "size": 1},
        {"kind": "overview_sprite", "path": "overview.png", "sha256": "f", "size": 1},
        {"kind": "overview_vtt", "path": "overview.vtt", "sha256": "g", "size": 1},
        {"kind": "subtitle", "path": "subtitle_0_fra.vtt", "language": "fra", "sha256": "h",
         "size": 1},
    ],
}  # fmt: skip


def a_task(rendition: Any) -> RunnerTask:
    return RunnerTask(id="0" * 32, request={"parameters": {"rendition": rendition}})


def test_info_video_in_pods_shape() -> None:
    rendition = '{"360": {"resolution": "640x360"}, "720": {"resolution": "1280x720"}}'
    info = results.info_video(a_task(rendition), RESULT)
    assert info["duration"] == 12
    assert (info["has_stream_video"], info["has_stream_audio"]) == (True, True)
    assert info["has_stream_thumbnail"] is True
    assert [
        (v["encoding_format"], v["filename"], v["rendition"]) for v in info["encode_video"]
    ] == [
        ("video/mp2t", "360p.m3u8", "640x360"),
        ("video/mp2t", "720p.m3u8", "1280x720"),
        ("video/mp4", "360p.mp4", "640x360"),
    ]
    assert info["encode_audio"] == [{"encoding_format": "audio/mp3", "filename": "audio.mp3"}]
    assert info["encode_thumbnail"] == [{"filename": "thumbnail_1.jpg"}]
    assert info["encode_subtitle"] == [{"filename": "subtitle_0_fra.vtt", "language": "fra"}]
    assert info["overview"] == {"image": "overview.png", "vtt": "overview.vtt"}
    assert info["master_playlist"] == "master.m3u8"
    # Without Pod's rendition labels (default ladder), Pod's default table names the nominal
    # height, whatever the real size (Pod looks renditions up by "x<height>").
    portrait = {**RESULT, "outputs": [{**RESULT["outputs"][1], "width": 202}]}
    unlabelled = results.info_video(a_task(None), portrait)
    assert unlabelled["encode_video"][0]["rendition"] == "640x360"
    assert results.pod_rendition(1080, {}) == "1920x1080"
    assert results.info_video(a_task("{broken"), RESULT)["encode_video"][1]["rendition"] == (
        "1280x720"
    )


@pytest.mark.parametrize(
    "path", ["../vidfarm.db", "a/../../b", "/etc/passwd", "a//b", "./x", "..\\x", "a\0b", ""]
)
def test_find_file_refuses_escapes(path: str) -> None:
    listed = [results.ResultFile("a/b", "x", 1, key="videos/v/j/a1/a/b")]
    with pytest.raises(InvalidParameters, match="invalid file path"):
        results.find_file(listed, path)


def test_find_file_only_finds_listed_files() -> None:
    listed = [results.ResultFile("360p.mp4", "x", 1, key="videos/v/j/a1/360p.mp4")]
    assert results.find_file(listed, "360p.mp4") is listed[0]
    with pytest.raises(NotFound):
        results.find_file(listed, "manifest.json")


def test_purge_old_tasks_deletes_rows_and_files(
    session_factory: sessionmaker[Session], small_clip: Path, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "media")
    settings = Settings(data_dir=tmp_path, runner_allow_private_urls=True)
    made: dict[str, str] = {}
    with session_factory() as session:
        for name, age_days, notify in (
            ("old", 10, "sent"),
            ("new", 1, "sent"),
            ("due", 10, "pending"),
        ):
            video, _ = add_video(session, storage, small_clip)
            request = tasks.TaskRequest(task_type="encoding", source_url=f"http://127.0.0.1/{name}")
            task, _ = tasks.submit(session, settings, request, token_sha256="a" * 64, capacity=9)
            tasks.finish(session, task.id, tasks.COMPLETED)
            with session.begin():
                session.execute(
                    update(RunnerTask)
                    .where(RunnerTask.id == task.id)
                    .values(
                        video_id=video.id,
                        notify_state=notify,
                        finished_at=tasks.utcnow() - timedelta(days=age_days),
                    )
                )
            made[name] = task.id
            made[name + "-video"] = video.id
        assert purge_old_tasks(session, storage, 0) == []  # <= 0: never
        assert purge_old_tasks(session, storage, 5) == [made["old"]]
        assert session.get(RunnerTask, made["old"]) is None
        assert session.get(Video, made["old-video"]) is None
        assert not (tmp_path / "media" / "sources" / made["old-video"]).exists()
        for kept in ("new", "due"):  # too young, or its notification is still being retried
            assert session.get(RunnerTask, made[kept]) is not None
            assert (tmp_path / "media" / "sources" / made[kept + "-video"]).is_dir()


def test_runner_tokens_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDFARM_RUNNER_TOKENS", " one , two ,")
    assert [t.get_secret_value() for t in load_settings().runner_tokens] == ["one", "two"]
    monkeypatch.setenv("VIDFARM_RUNNER_TOKENS", '["a,b", "c"]')
    assert [t.get_secret_value() for t in load_settings().runner_tokens] == ["a,b", "c"]
    monkeypatch.setenv("VIDFARM_RUNNER_TOKENS", '["secret-value",')
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "VIDFARM_RUNNER_TOKENS" in str(raised.value)
    assert "secret-value" not in str(raised.value)  # a secret is never echoed back


def test_runner_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VIDFARM_RUNNER_TOKENS"}
    result = subprocess.run(
        [sys.executable, "-m", "vidfarm", "runner", "--port", "9"],
        env={**env, "VIDFARM_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("vidfarm: error: VIDFARM_RUNNER_TOKENS is empty")
