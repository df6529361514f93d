"""The task request sent to runner managers is the one Esup-Pod sends, key for key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidfarm import __version__
from vidfarm.config import Settings
from vidfarm.dispatch.runners import request as runner_request
from vidfarm.errors import InvalidParameters
from vidfarm.models import Job, Video

POD_KEYS = {
    "etab_name", "app_name", "app_version", "task_type", "source_url", "affiliation",
    "notify_url", "parameters",
}  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        runners_public_url="https://farm.example.org/",
        runners_etab_name="Université Exemple / vidfarm",
    )


def video() -> Video:
    return Video(
        id="a" * 32, filename="lecture-01.mp4", source_key="sources/x/x.mp4", duration=95.5,
        language="fr",
    )  # fmt: skip


def test_encoding_request_is_pods(settings: Settings) -> None:
    job = Job(id="j" * 32, type="encode", params={"affiliation": "student"})
    body = runner_request.task_request(job, video(), settings, source="https://src")
    assert set(body) == POD_KEYS
    assert body["etab_name"] == "Université Exemple / vidfarm"
    assert body["app_name"] == "vidfarm" and body["app_version"] == __version__
    assert body["task_type"] == "encoding" and body["affiliation"] == "student"
    assert body["notify_url"] == "https://farm.example.org/runner/notify_task_end/"
    parameters = body["parameters"]
    assert set(parameters) == {"rendition", "video_id", "video_slug", "video_title"}
    assert isinstance(parameters["rendition"], str)  # Pod sends a JSON string
    ladder = json.loads(parameters["rendition"])
    assert ladder == {
        "360": {"resolution": "640x360", "video_bitrate": "750k", "audio_bitrate": "96k",
                "encode_mp4": True, "minrate": "500k", "maxrate": "1000k"},
        "720": {"resolution": "1280x720", "video_bitrate": "2000k", "audio_bitrate": "128k",
                "encode_mp4": True, "minrate": "1000k", "maxrate": "3000k"},
        "1080": {"resolution": "1920x1080", "video_bitrate": "3000k", "audio_bitrate": "192k",
                 "encode_mp4": False, "minrate": "2000k", "maxrate": "4500k"},
    }  # fmt: skip
    assert parameters["video_slug"] == "lecture-01"
    assert parameters["video_title"] == "lecture-01.mp4"
    json.dumps(body)  # all of it is plain JSON


def test_one_resolution_and_a_cut(settings: Settings) -> None:
    job = Job(id="j" * 32, type="encode", params={"resolution": "1280:720", "start": 12.5})
    parameters = runner_request.task_request(job, video(), settings, source="s")["parameters"]
    assert list(json.loads(parameters["rendition"])) == ["720"]
    assert json.loads(parameters["cut"]) == {
        "start": "00:00:12.500000", "end": "00:01:35.500000", "initial_duration": "00:01:35.500000",
    }  # fmt: skip
    assert runner_request.timecode(3725.0) == "01:02:05"


def test_transcription_request(settings: Settings) -> None:
    job = Job(id="j" * 32, type="transcription", params={"language": "en"})
    body = runner_request.task_request(job, video(), settings, source="s")
    assert set(body) == POD_KEYS and body["task_type"] == "transcription"
    assert body["affiliation"] == "staff"
    assert body["parameters"] == {
        "language": "en", "source_language": "fr", "duration": 95.5, "normalize": False,
        "model_type": "pocketsphinx", "video_id": "a" * 32, "video_slug": "lecture-01",
        "video_title": "lecture-01.mp4",
    }  # fmt: skip


def test_refusals(settings: Settings) -> None:
    with pytest.raises(InvalidParameters, match="unknown profile"):
        runner_request.task_request(
            Job(id="j", type="encode", params={"profile": "nope"}), video(), settings, source="s"
        )
    with pytest.raises(InvalidParameters, match="do not run"):
        runner_request.task_request(
            Job(id="j", type="xapi", params={}), video(), settings, source="s"
        )


def test_urls(settings: Settings) -> None:
    url = runner_request.source_url(settings, "b" * 32, "secret", "x/../y.mp4")
    assert url == f"https://farm.example.org/runner/source/{'b' * 32}/secret/y.mp4"
    default = Settings(data_dir=settings.data_dir, host="10.0.0.2", port=8080)
    assert runner_request.notify_url(default) == "http://10.0.0.2:8080/runner/notify_task_end/"
