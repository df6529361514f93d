"""Runner tasks against real SQLite and PostgreSQL: accepting, deduplicating, capacity,
mapping Pod's parameters to a job, and following the job to the task's end."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.errors import InvalidParameters, InvalidTransition, NotFound
from vidfarm.media.profiles import load_profile, profile_for_params, profile_from_rendition_json
from vidfarm.models import Job, RunnerTask
from vidfarm.runner_service import tasks

POD_RENDITIONS = {
    "360": {"resolution": "640x360", "video_bitrate": "750k", "audio_bitrate": "96k",
            "encode_mp4": True},
    "720": {"resolution": "1280x720", "video_bitrate": "2000k", "audio_bitrate": "128k",
            "encode_mp4": True},
    "1080": {"resolution": "1920x1080", "video_bitrate": "3000k", "audio_bitrate": "192k",
             "encode_mp4": False},
}  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, runner_allow_private_urls=True)


def request(**changes: Any) -> tasks.TaskRequest:
    body: dict[str, Any] = {
        "etab_name": "U",
        "app_name": "Esup-Pod",
        "app_version": "4.2",
        "task_type": "encoding",
        "source_url": "http://127.0.0.1:8123/media/video.mp4",
        "affiliation": "student",
        "notify_url": "http://127.0.0.1:8000/runner/notify_task_end/",
        "parameters": {"rendition": json.dumps(POD_RENDITIONS), "cut": "{}", "dressing": ""},
    }
    body.update(changes)
    return tasks.TaskRequest.model_validate(body)


def test_pods_rendition_json_becomes_pods_ladder() -> None:
    default = load_profile("default")
    profile = profile_from_rendition_json(json.dumps(POD_RENDITIONS), default)
    assert profile.renditions == default.renditions  # min/max rates from Pod's own table
    custom = profile_from_rendition_json(
        '{"480": {"resolution": "854x480", "video_bitrate": "1200k", "audio_bitrate": "128k"}}',
        default,
    )
    [spec] = custom.renditions
    assert (spec.height, spec.min_video_bitrate, spec.max_video_bitrate) == (
        480,
        800_000,
        1_800_000,
    )
    assert spec.mp4 is False and custom.preset == default.preset


def test_an_older_pods_renditions_without_bitrates_get_the_profiles() -> None:
    """Pods before the bitrate fields send only resolution and encode_mp4 (was a 422)."""
    default = load_profile("default")
    old = {
        "360": {"resolution": "640x360", "encode_mp4": True},
        "480": {"resolution": "854x480", "encode_mp4": False, "video_bitrate": ""},
        "1080": {"resolution": "1920x1080", "encode_mp4": False},
    }
    profile = profile_from_rendition_json(json.dumps(old), default)
    by_height = {spec.height: spec for spec in profile.renditions}
    assert by_height[360] == default.renditions[0]  # Pod's own table, to the bit
    assert by_height[1080].video_bitrate == 3_000_000 and by_height[1080].audio_bitrate == 192_000
    # 480 is nearest to 360: its bitrate scaled by the pixel count, its audio the same.
    assert by_height[480].video_bitrate == round(750_000 * (480 / 360) ** 2)
    assert by_height[480].audio_bitrate == 96_000 and by_height[360].mp4 is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{oops", "rendition: not valid JSON"),
        ("[]", "expected a non-empty JSON object"),
        ('{"360": {"resolution": "360p", "video_bitrate": "1k", "audio_bitrate": "1k"}}',
         "resolution must read WIDTHxHEIGHT"),
        ('{"360": {"resolution": "640x360", "video_bitrate": "fast", "audio_bitrate": "96k"}}',
         "not a bitrate: 'fast'"),
        ('{"a": {"resolution": "640x360", "video_bitrate": "1M", "audio_bitrate": "96k"},'
         ' "b": {"resolution": "600x360", "video_bitrate": "1M", "audio_bitrate": "96k"}}',
         "two renditions have the same height"),
    ],
)  # fmt: skip
def test_bad_rendition_json_is_one_line(text: str, message: str) -> None:
    with pytest.raises(InvalidParameters) as raised:
        profile_from_rendition_json(text, load_profile("default"))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_job_params_carry_the_inline_ladder(settings: Settings) -> None:
    cut = json.dumps({"start": "00:00:01.5", "end": 3, "initial_duration": 10})
    job_type, params = tasks.job_for(
        request(parameters={"rendition": json.dumps({"360": POD_RENDITIONS["360"]}), "cut": cut}),
        settings,
    )
    assert job_type == "encode" and params["start"] == 1.5 and params["end"] == 3.0
    profile = profile_for_params(params, "default", None)
    assert [r.height for r in profile.ladder] == [360]
    assert profile.hls_single_file  # Pod's runner import needs <h>p.m3u8 + <h>p.ts
    assert tasks.job_for(request(parameters={}), settings) == ("encode", {"hls_single_file": True})


def test_transcription_language(settings: Settings) -> None:
    def language(parameters: dict[str, Any]) -> Any:
        return tasks.job_for(request(task_type="transcription", parameters=parameters), settings)

    assert language({"language": "EN"}) == ("transcription", {"language": "en"})
    assert language({"lang": "en"}) == ("transcription", {"language": "en"})  # older Pods
    assert language({"source_language": "auto"}) == ("transcription", {"language": "en"})
    assert language({}) == ("transcription", {"language": "en"})
    with pytest.raises(InvalidParameters, match=r"parameters\.language: no transcription engine"):
        language({"language": "xx"})
    with pytest.raises(InvalidParameters, match=r"parameters\.language: no transcription engine"):
        language({"lang": "xx", "source_language": "en"})  # the explicit language wins


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task_type": "render"}, "task_type: unsupported 'render' (this runner does: encoding"),
        ({"parameters": {"dressing": '{"watermark": "logo.png"}'}}, "parameters.dressing"),
        (
            {"parameters": {"dressing": '{"watermark": "http://169.254.169.254/logo.png"}'}},
            "parameters.dressing.watermark: host '169.254.169.254'",
        ),
        ({"parameters": {"dressing": '{"watermark_opacity": "x"}'}}, "opacity"),
        ({"task_type": "studio", "parameters": {"presenter": "side"}}, "presenter 'side'"),
        ({"parameters": {"cut": "[1, 2]"}}, "parameters.cut: expected an object"),
        ({"parameters": {"cut": '{"start": "soon"}'}}, "parameters.cut.start"),
        ({"parameters": {"rendition": "{}}"}}, "parameters.rendition: not valid JSON"),
    ],
)
def test_refused_requests(settings: Settings, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameters, match=message.replace("(", r"\(")):
        tasks.job_for(request(**changes), settings)


def test_fingerprint_is_what_makes_a_request_identical() -> None:
    base = tasks.fingerprint(request())
    assert tasks.fingerprint(request(affiliation="staff")) == base  # not part of identity
    assert tasks.fingerprint(request(source_url="http://127.0.0.1:8123/other.mp4")) != base
    assert tasks.fingerprint(request(notify_url="http://127.0.0.1/x")) != base
    assert tasks.fingerprint(request(app_version="4.3")) != base
    assert tasks.fingerprint(request(parameters={})) != base


def test_submit_deduplicates_and_respects_capacity(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory() as session:
        first, created = tasks.submit(
            session, settings, request(), token_sha256="a" * 64, capacity=2
        )
        assert created and first.status == "running" and first.job_id is None
        again, created = tasks.submit(
            session, settings, request(), token_sha256="a" * 64, capacity=2
        )
        assert (again.id, created) == (first.id, False)
        other = request(source_url="http://127.0.0.1:8123/b.mp4")
        second, _ = tasks.submit(session, settings, other, token_sha256="a" * 64, capacity=2)
        third = request(source_url="http://127.0.0.1:8123/c.mp4")
        with pytest.raises(tasks.NoCapacity, match="No runners available"):
            tasks.submit(session, settings, third, token_sha256="a" * 64, capacity=2)
        assert tasks.finish(session, second.id, tasks.FAILED, error_message="boom")
        assert not tasks.finish(session, second.id, tasks.COMPLETED)  # ends once
        tasks.submit(session, settings, third, token_sha256="a" * 64, capacity=2)
        stored = tasks.get_task(session, first.id)
        assert stored.request["job"]["type"] == "encode"
        assert "token" not in json.dumps(stored.request)
        # Another client's identical request is never handed this client's task.
        theirs, created = tasks.submit(
            session, settings, request(), token_sha256="b" * 64, capacity=3
        )
        assert created and theirs.id != first.id
        # Once finished, the same request is a new task.
        tasks.finish(session, first.id, tasks.COMPLETED)
        fresh, created = tasks.submit(
            session, settings, request(), token_sha256="a" * 64, capacity=5
        )
        assert created and fresh.id != first.id


def test_concurrent_submissions_never_exceed_capacity(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    accepted: list[str] = []
    refused: list[str] = []

    def submit(n: int) -> None:
        with session_factory() as session:
            body = request(source_url=f"http://127.0.0.1:8123/{n}.mp4")
            try:
                task, _ = tasks.submit(session, settings, body, token_sha256="a" * 64, capacity=3)
                accepted.append(task.id)
            except tasks.NoCapacity:
                refused.append(str(n))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(accepted) == 3 and len(refused) == 5


def attach_job(session: Session, task_id: str) -> str:
    job = jobs.create_job(session, job_type="encode", video_id=None, max_attempts=1)
    with session.begin():
        session.execute(update(RunnerTask).where(RunnerTask.id == task_id).values(job_id=job.id))
    return job.id


def test_job_outcomes_become_task_statuses(
    session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with session_factory() as session:
        made: dict[str, tuple[str, str]] = {}
        for outcome in ("completed", "failed", "timeout", "cancelled", "running"):
            body = request(source_url=f"http://127.0.0.1:8123/{outcome}.mp4")
            task, _ = tasks.submit(session, settings, body, token_sha256="a" * 64, capacity=9)
            made[outcome] = (task.id, attach_job(session, task.id))
            with session.begin():
                session.execute(
                    update(Job)
                    .where(Job.id == made[outcome][1])
                    .values(status=outcome, error=None if outcome == "completed" else "bad input")
                )
        finished = tasks.sync_finished(session)
        assert sorted(finished) == sorted(made[o][0] for o in made if o != "running")
        assert tasks.sync_finished(session) == []  # once
        got = {o: tasks.get_task(session, made[o][0]) for o in made}
        assert {o: t.status for o, t in got.items()} == {
            "completed": "completed",
            "failed": "failed",
            "timeout": "timeout",
            "cancelled": "failed",
            "running": "running",
        }
        assert got["failed"].error_message == "bad input"
        assert got["cancelled"].error_message == "stopped by the client"
        assert got["completed"].error_message is None
        assert got["completed"].notify_state == "pending"
        assert got["running"].notify_state == "none"
        view = tasks.view(session, got["completed"])
        assert view["status"] == "completed" and view["progress"] == 100.0


def test_stop(session_factory: sessionmaker[Session], settings: Settings) -> None:
    with session_factory() as session:
        task, _ = tasks.submit(
            session, settings, request(notify_url=None), token_sha256="a" * 64, capacity=9
        )
        job_id = attach_job(session, task.id)
        stopped = tasks.stop(session, task.id)
        assert stopped.status == "failed" and stopped.error_message == "stopped by the client"
        assert stopped.notify_state == "none"  # nobody to tell
        assert jobs.get_job(session, job_id).status == "cancelled"
        with pytest.raises(InvalidTransition, match="has already ended"):
            tasks.stop(session, task.id)
        with pytest.raises(NotFound):
            tasks.stop(session, "../etc")


def test_timecodes() -> None:
    assert tasks.parse_timecode("00:01:02.5", "start") == 62.5
    assert tasks.parse_timecode("1:02", "start") == 62.0
    assert tasks.parse_timecode(7, "end") == 7.0
    assert tasks.parse_timecode("", "end") is None
    with pytest.raises(InvalidParameters, match=r"parameters\.cut\.end"):
        tasks.parse_timecode("tomorrow", "end")


def test_dressing_and_studio_become_what_the_runner_fetches(settings: Settings) -> None:
    """Checked at submission; fetched with the source (assets.py), never by the worker."""
    dressing = json.dumps({"watermark": "http://93.184.215.14/logo.png",
                           "watermark_position": "bottom_left", "watermark_opacity": "40",
                           "ending_credits_video": "http://93.184.215.14/end.mp4"})  # fmt: skip
    _, params = tasks.job_for(request(parameters={"dressing": dressing}), settings)
    assert params["remote"] == {
        "dressing": {
            "watermark_url": "http://93.184.215.14/logo.png",
            "position": "bottom_left",
            "opacity": 40,
            "opening_url": None,
            "ending_url": "http://93.184.215.14/end.mp4",
        }
    }
    job_type, params = tasks.job_for(request(task_type="studio", parameters={}), settings)
    assert job_type == "encode" and params["remote"] == {"studio": {"presenter": None}}
    _, params = tasks.job_for(request(parameters={"dressing": "{}"}), settings)
    assert "remote" not in params
