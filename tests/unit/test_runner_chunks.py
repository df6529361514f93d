"""Chunks on runner managers (issue 17): what a `vidfarm runner` accepts as a chunk or a
stitch, how it fetches a stitch's chunks, and the control plane's side (who is offered a
chunk, the `/runner/input` files). The whole path with real processes is in
tests/integration/test_runner_dispatch.py."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from vidfarm import jobs
from vidfarm.api.app import create_app
from vidfarm.config import Settings
from vidfarm.dispatch.runners import registry as runner_registry
from vidfarm.dispatch.runners.assignments import RUNNING, hash_secret
from vidfarm.dispatch.runners.dispatcher import RunnersDispatcher
from vidfarm.dispatch.runners.request import task_request
from vidfarm.errors import InvalidParameters
from vidfarm.media.profiles import load_profile, profile_for_params
from vidfarm.models import Job, RunnerAssignment, RunnerManager, Video
from vidfarm.runner_service import chunks, tasks
from vidfarm.runner_service.app import create_runner_app
from vidfarm.runner_service.assets import Fetcher
from vidfarm.runner_service.results import result_files
from vidfarm.runner_service.service import RunnerService
from vidfarm.runtime import Runtime, open_runtime
from vidfarm.videos import runners_take_chunks

SHA = "ab" * 32
PLANE_PROFILE = load_profile("default").model_copy(update={"preset": "veryfast", "crf": 23})


def chunk_body(**changes: Any) -> dict[str, Any]:
    parameters = {
        "profile_spec": PLANE_PROFILE.model_dump(mode="json"),
        "index": 1,
        "start_at": 60.0,
        "end_at": 120.0,
        "weight": 60.0,
        "formats": ["hls", "mp4"],
        **changes,
    }
    return {
        "task_type": "vidfarm_encode_chunk",
        "source_url": "http://127.0.0.1:8000/runner/source/a/s/lecture.mp4",
        "parameters": parameters,
    }


def stitch_body(**child_changes: Any) -> dict[str, Any]:
    child = {
        "index": 0,
        "start_at": 0.0,
        "end_at": 60.0,
        "files": ["video_360.mp4", "thumbnail_0.jpg"],
        "sums": {
            "video_360.mp4": {"size": 1000, "sha256": SHA},
            "thumbnail_0.jpg": {"size": 10, "sha256": SHA},
        },
        "cpu_seconds": 12.5,
        "files_url": "http://127.0.0.1:8000/runner/input/a/s/0/",
        **child_changes,
    }
    return {
        "task_type": "vidfarm_stitch",
        "source_url": "http://127.0.0.1:8000/runner/source/a/s/lecture.mp4",
        "parameters": {"profile_spec": PLANE_PROFILE.model_dump(mode="json"), "children": [child]},
    }


def store(runtime: Runtime, key: str, data: bytes) -> None:
    path = runtime.settings.media_dir / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def job_for(body: dict[str, Any], **settings: Any) -> tuple[str, dict[str, Any]]:
    options = {"runner_allow_private_urls": True, **settings}
    return tasks.job_for(tasks.TaskRequest.model_validate(body), Settings(**options))


def test_a_chunk_task_becomes_a_chunk_job_with_the_planes_profile() -> None:
    job_type, params = job_for(chunk_body())
    assert job_type == "encode_chunk"
    assert (params["index"], params["start_at"], params["end_at"]) == (1, 60.0, 120.0)
    # The plane's profile wins over the runner's own default, whatever it is.
    profile = profile_for_params(params, "default", None)
    assert profile == PLANE_PROFILE and profile.preset == "veryfast"


def test_a_stitch_task_lists_its_chunks_and_where_to_fetch_them() -> None:
    job_type, params = job_for(stitch_body())
    assert job_type == "stitch"
    (child,) = params["children"]
    assert child["result"] == {
        "files": ["thumbnail_0.jpg", "video_360.mp4"],
        "encode": {"cpu_seconds": 12.5},
    }
    (remote,) = params["remote_chunks"]
    assert remote["url"] == "http://127.0.0.1:8000/runner/input/a/s/0/"
    assert remote["sums"]["video_360.mp4"] == {"size": 1000, "sha256": SHA}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (chunk_body(profile_spec={"name": "x"}), "profile_spec.renditions: Field required"),
        (chunk_body(profile_spec="default"), "profile_spec: expected an object"),
        (chunk_body(end_at=60.0), "end_at must be after start_at"),
        (chunk_body(index=True), "parameters.index: expected a chunk number"),
        (chunk_body(start_at=float("nan")), "start_at: expected a number of seconds"),
        (chunk_body(formats=["hls", "avi"]), "avi"),
        (stitch_body(files=["../../etc/passwd"]), "is not a plain file name"),
        (stitch_body(files=["video_360.mp4", "other.mp4"]), "sums.other.mp4: expected a size"),
        (stitch_body(sums={"video_360.mp4": {"size": 1, "sha256": "no"}}), "expected a sha256"),
        (stitch_body(files_url="file:///etc/passwd"), "only http and https URLs"),
        (stitch_body(files=[]), "expected 1 to 1000 file names"),
    ],
)
def test_bad_chunk_and_stitch_tasks_are_refused_in_one_line(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParameters, match=None) as refused:
        job_for(body)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_stitch_may_not_fetch_from_a_private_address_unless_allowed() -> None:
    with pytest.raises(InvalidParameters, match="files_url"):
        job_for(stitch_body(), runner_allow_private_urls=False)


@pytest.fixture
def runner_client(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    settings = Settings(
        data_dir=tmp_path / "runner",
        runner_tokens=[SecretStr("t0ken")],
        runner_allow_private_urls=True,
    )
    runtime = open_runtime(settings)
    app = create_runner_app(RunnerService(runtime, capacity=1), run_farm=False)
    try:
        with TestClient(app, headers={"Authorization": "Bearer t0ken"}) as client:
            yield client, runtime
    finally:
        runtime.engine.dispose()


def test_the_runners_health_answer_announces_chunks(
    runner_client: tuple[TestClient, Runtime],
) -> None:
    client, _ = runner_client
    refused = client.post("/task/execute", json=chunk_body(end_at=1.0))
    assert refused.status_code == 422
    assert refused.json() == {"detail": "parameters: end_at must be after start_at"}
    announced = client.get("/manager/health").json()["task_types"]
    assert {"encoding", "studio", "transcription", "vidfarm_encode_chunk", "vidfarm_stitch"} == set(
        announced
    )


def test_a_finished_chunks_result_lists_its_files_with_their_checksums(
    runner_client: tuple[TestClient, Runtime],
) -> None:
    _, runtime = runner_client
    files = {"video_360.mp4": b"v" * 50, "preview_360_00000.ts": b"p" * 20}
    prefix = "videos/v/j/a1"
    sums = {}
    for name, data in files.items():
        store(runtime, f"{prefix}/{name}", data)
        sums[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    result = {"outputs": [], "prefix": prefix, "files": sorted(files), "sums": sums}
    job = Job(id="c" * 32, type="encode_chunk", status="completed", params={}, result=result)
    task = tasks.RunnerTask(id="d" * 32, status=tasks.COMPLETED, job_id=job.id, request={})
    with runtime.sessions() as session:
        session.add(job)
        session.commit()
        listed = {f.path: f for f in result_files(session, runtime.storage, task)}
    assert set(listed) == {"video_360.mp4", "preview_360_00000.ts", "manifest.json"}
    assert listed["video_360.mp4"].sha256 == sums["video_360.mp4"]["sha256"]
    assert listed["video_360.mp4"].key == f"{prefix}/video_360.mp4"


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *_: None  # type: ignore[attr-defined,method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()


def test_a_stitch_fetches_its_chunks_verified_and_refuses_a_wrong_one(
    tmp_path: Path, file_server: tuple[str, Path]
) -> None:
    url, served = file_server
    (served / "video_360.mp4").write_bytes(b"x" * 4096)
    good = {"size": 4096, "sha256": hashlib.sha256(b"x" * 4096).hexdigest()}
    runtime = open_runtime(Settings(data_dir=tmp_path / "runner"))
    fetcher = Fetcher(
        folder=tmp_path / "incoming",
        max_bytes=1 << 20,
        allow_private=True,
        should_stop=lambda: False,
    )
    try:
        remote = [
            {"index": 3, "url": url, "files": ["video_360.mp4"], "sums": {"video_360.mp4": good}}
        ]
        prefixes = chunks.fetch_chunks(remote, "vid", runtime.storage, fetcher)
        assert prefixes == {3: "sources/vid/chunks/00003"}
        stored = runtime.storage.local_path("sources/vid/chunks/00003/video_360.mp4")
        assert stored is not None and stored.read_bytes() == b"x" * 4096
        remote[0]["index"] = 4
        remote[0]["sums"] = {"video_360.mp4": {**good, "sha256": SHA}}
        with pytest.raises(chunks.ChunkInputRefused, match="does not match its sha256"):
            chunks.fetch_chunks(remote, "vid", runtime.storage, fetcher)
        assert not runtime.storage.exists("sources/vid/chunks/00004/video_360.mp4")
        assert not [p for p in (tmp_path / "incoming").rglob("*") if p.is_file()]
    finally:
        runtime.engine.dispose()


# --- the control plane's side -------------------------------------------------------------------


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path / "plane", dispatcher="runners", runners_allow_private_urls=True
    )
    runtime = open_runtime(settings)
    yield runtime
    runtime.engine.dispose()


def add_manager(runtime: Runtime, name: str, task_types: list[str] | None) -> RunnerManager:
    with runtime.sessions() as session:
        manager = runner_registry.add_manager(
            session, runtime.settings, name=name, url="http://127.0.0.1:9", token="tok"
        )
        manager.task_types = task_types
        session.commit()
        session.refresh(manager)
        session.expunge(manager)
    return manager


def add_video(runtime: Runtime) -> str:
    with runtime.sessions() as session:
        video = Video(filename="lecture.mp4", source_key="sources/v/lecture.mp4", duration=180.0)
        session.add(video)
        session.commit()
        return video.id


def test_chunks_are_offered_only_to_managers_announcing_them(plane: Runtime) -> None:
    add_manager(plane, "foreign", None)
    video_id = add_video(plane)
    with plane.sessions() as session:
        assert not runners_take_chunks(session)
        job = jobs.create_job(
            session,
            job_type="encode_chunk",
            video_id=video_id,
            params={"index": 0, "start_at": 0.0, "end_at": 60.0, "weight": 60.0},
            max_attempts=3,
        )
        job_id = job.id
    dispatcher = RunnersDispatcher(plane.sessions, plane.settings, plane.storage)
    assert dispatcher.submit([job_id]) == []
    with plane.sessions() as session:
        waiting = session.get(Job, job_id)
        assert waiting is not None and waiting.status == "pending"
        assert waiting.error_class == "waiting"
        assert "no active runner manager announces 'vidfarm_encode_chunk'" in str(waiting.error)
        assert not session.query(RunnerAssignment).filter_by(job_id=job_id).count()
    add_manager(plane, "vidfarm", ["encoding", "vidfarm_encode_chunk", "vidfarm_stitch"])
    with plane.sessions() as session:
        assert runners_take_chunks(session)


def test_a_stitch_request_carries_the_planes_profile_and_its_chunks_checksums(
    plane: Runtime,
) -> None:
    video_id = add_video(plane)
    sums = {
        "video_360.mp4": {"size": 5, "sha256": SHA},
        "preview_360_00000.ts": {"size": 1, "sha256": SHA},
    }
    child = {
        "index": 0, "start_at": 0.0, "end_at": 90.0, "weight": 90.0,
        "result": {"prefix": "videos/v/c/a1", "files": sorted(sums), "sums": sums,
                   "encode": {"cpu_seconds": 40.0}},
    }  # fmt: skip
    job = Job(id="e" * 32, type="stitch", video_id=video_id, params={"children": [child]})
    with plane.sessions() as session:
        video = session.get(Video, video_id)
        assert video is not None
        body = task_request(job, video, plane.settings, source="http://x/s", inputs="http://x/in")
    assert body["task_type"] == "vidfarm_stitch"
    parameters = body["parameters"]
    expected = profile_for_params(
        {}, plane.settings.default_profile, plane.settings.user_profiles_dir
    )
    assert parameters["profile_spec"] == expected.model_dump(mode="json")
    (sent,) = parameters["children"]
    assert sent["files"] == ["video_360.mp4"]  # previews stay on the plane
    assert sent["files_url"] == "http://x/in/0/" and sent["cpu_seconds"] == 40.0
    # ...and a vidfarm runner accepts exactly what the plane sends.
    accepted = {
        **body,
        "parameters": {**parameters, "children": [{**sent, "files_url": "http://127.0.0.1/in/0/"}]},
    }
    assert job_for(accepted)[0] == "stitch"


def test_runner_input_serves_only_a_listed_chunk_file_with_the_secret(plane: Runtime) -> None:
    video_id = add_video(plane)
    manager = add_manager(plane, "vidfarm", ["vidfarm_stitch"])
    store(plane, "videos/v/c/a1/video_360.mp4", b"chunk video")
    store(plane, "videos/v/c/a1/secret.txt", b"not listed")
    child = {
        "index": 2, "start_at": 0.0, "end_at": 60.0,
        "result": {"prefix": "videos/v/c/a1", "files": ["video_360.mp4"]},
    }  # fmt: skip
    with plane.sessions() as session:
        job = Job(type="stitch", video_id=video_id, params={"children": [child]}, status="running")
        session.add(job)
        session.flush()
        assignment = RunnerAssignment(
            job_id=job.id, manager_id=manager.id, task_type="vidfarm_stitch",
            source_secret_sha256=hash_secret("s3cret"), state=RUNNING,
        )  # fmt: skip
        session.add(assignment)
        session.commit()
        base = f"/runner/input/{assignment.id}"
        assignment_id = assignment.id
    with TestClient(create_app(plane, run_farm=False)) as client:
        served = client.get(f"{base}/s3cret/2/video_360.mp4")
        assert served.status_code == 200 and served.content == b"chunk video"
        for wrong in (
            f"{base}/wrong/2/video_360.mp4",  # not the secret
            f"{base}/s3cret/1/video_360.mp4",  # not that chunk
            f"{base}/s3cret/2/secret.txt",  # stored, but not listed
            f"{base}/s3cret/2/..%2Fa1%2Fsecret.txt",  # a path trick
        ):
            refused = client.get(wrong)
            assert refused.status_code == 404, wrong
            assert b"chunk video" not in refused.content and b"not listed" not in refused.content
        with plane.sessions() as session:
            ended = session.get(RunnerAssignment, assignment_id)
            assert ended is not None
            ended.state = "completed"
            session.commit()
        assert client.get(f"{base}/s3cret/2/video_360.mp4").status_code == 404  # ended
