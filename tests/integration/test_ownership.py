"""Roles and ownership over every route: no token, a bad one, worker, user A, user B, admin.

A user token reaches only its own videos and jobs (another's answer 404, like unknown ids); an
admin reaches all; a worker token reaches the worker API and nothing of the users' API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from test_api import Api, make_settings, start_api

from vidfarm.auth import create_token

WHO = ("none", "bad", "worker", "a", "b", "admin")
BAD = "vf_abcdefghijkl_" + "x" * 43


@pytest.fixture
def world(
    tmp_path: Path, pg_database: str, small_clip: Path
) -> Iterator[tuple[Api, dict[str, Any]]]:
    client, api = start_api(make_settings(tmp_path, database_url=pg_database))
    with client:
        with api.runtime.sessions() as session:
            api.tokens["b"], _ = create_token(session, role="user", name="user B")
        api.tokens["a"] = api.tokens["user"]
        body = api.upload(small_clip, "a").json()
        assert api.wait_task(body["job_id"])["state"] == "SUCCESS"
        yield api, body
    api.runtime.engine.dispose()


def call(api: Api, who: str, method: str, url: str, **kwargs: Any) -> Any:
    token = {"none": None, "bad": BAD}.get(who, api.tokens.get(who))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return api.client.request(method, url, headers=headers, follow_redirects=False, **kwargs)


def test_roles_and_ownership_matrix(world: tuple[Api, dict[str, Any]]) -> None:
    api, body = world
    video, job, source = body["file_id"], body["job_id"], body["filename"]
    #            (method, url, json), expected status for: none, bad, worker, a, b, admin
    matrix: list[tuple[str, str, Any, tuple[int, ...]]] = [
        ("GET", "/api/v1/me", None, (401, 401, 200, 200, 200, 200)),
        ("GET", "/api/v1/videos", None, (401, 401, 403, 200, 200, 200)),
        ("GET", f"/api/v1/videos/{video}", None, (401, 401, 403, 200, 404, 200)),
        ("GET", f"/api/v1/videos/{video}/playback", None, (401, 401, 403, 200, 404, 200)),
        ("GET", "/api/v1/jobs", None, (401, 401, 403, 200, 200, 200)),
        ("GET", f"/api/v1/jobs/{job}", None, (401, 401, 403, 200, 404, 200)),
        ("GET", f"/api/v1/jobs/events?job_id={job}", None, (401, 401, 403, 200, 404, 200)),
        ("POST", f"/api/v1/jobs/{job}/cancel", None, (401, 401, 403, 409, 404, 409)),
        ("GET", f"/videos/task/{job}", None, (401, 401, 403, 200, 404, 200)),
        ("GET", f"/videos/status/{video}", None, (401, 401, 403, 200, 404, 200)),
        ("GET", f"/videos/stream/{source}", None, (401, 401, 404, 200, 404, 200)),
        ("HEAD", f"/videos/stream/{source}", None, (401, 401, 404, 200, 404, 200)),
        (
            "GET",
            f"/videos/download/{video}/{job}/master.m3u8",
            None,
            (401, 401, 404, 200, 404, 200),
        ),
        ("GET", "/api/v1/workers", None, (401, 401, 403, 403, 403, 200)),
        ("GET", "/api/v1/runners", None, (401, 401, 403, 403, 403, 200)),
        ("GET", "/api/v1/xapi/dead", None, (401, 401, 403, 403, 403, 200)),
        ("GET", "/api/v1/xapi/status", None, (401, 401, 200, 200, 200, 200)),
        ("GET", "/api/v1/worker/ping", None, (401, 401, 200, 403, 403, 200)),
        ("GET", "/metrics", None, (401, 401, 200, 200, 200, 200)),
        ("POST", f"/api/v1/jobs/{job}/restart", None, (401, 401, 403, 403, 403, None)),
        ("POST", f"/videos/transcode/{video}", {"format": "mp4"}, (401, 401, 403, 200, 404, 200)),
        (
            "POST",
            f"/api/v1/videos/{video}/encode",
            {"formats": ["mp4"]},
            (401, 401, 403, 202, 404, 202),
        ),
        (
            "PATCH",
            f"/api/v1/videos/{video}",
            {"visibility": "private"},
            (401, 401, 403, 200, 404, 200),
        ),
        ("GET", f"/embed/{video}", None, (404, 404, 404, 404, 404, 404)),  # private: no embed
        ("GET", f"/embed/{video}/playback", None, (404, 404, 404, 404, 404, 404)),
        ("DELETE", f"/api/v1/videos/{video}", None, (401, 401, 403, None, 404, None)),
    ]
    for method, url, payload, expected in matrix:
        for who, status in zip(WHO, expected, strict=True):
            if status is None:
                continue
            got = call(api, who, method, url, **({"json": payload} if payload else {}))
            assert got.status_code == status, (method, url, who, got.text)
    # Lists hold only what the caller may see.
    assert [v["id"] for v in call(api, "a", "GET", "/api/v1/videos").json()["items"]] == [video]
    assert call(api, "b", "GET", "/api/v1/videos").json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }
    assert call(api, "b", "GET", "/api/v1/jobs").json()["items"] == []
    mine = {j["id"] for j in call(api, "a", "GET", "/api/v1/jobs").json()["items"]}
    assert (
        job in mine and len(mine) == 5
    )  # the upload's, and a transcode and an encode each by A and admin
    everything = {j["id"] for j in call(api, "admin", "GET", "/api/v1/jobs").json()["items"]}
    assert everything == mine
    # The owner deletes it; then it is gone for everyone.
    assert call(api, "a", "DELETE", f"/api/v1/videos/{video}").status_code == 204
    assert call(api, "admin", "GET", f"/api/v1/videos/{video}").status_code == 404


def test_every_route_is_in_the_matrix_or_has_its_own_test(
    world: tuple[Api, dict[str, Any]],
) -> None:
    """A new route must be classified: add it to the matrix above or to this list with why."""
    api, _ = world
    own_test = {
        "/": "the dashboard shell (no data)",
        "/ui": "a redirect to /",
        "/ui/static/{name}": "static files",
        "/ui/vendor/hls.min.js": "static file",
        "/healthz": "open by design",
        "/docs": "open by design: the API's own documentation (test_web: under a CSP)",
        "/readyz": "open by design",
        "/media/s/{expires}/{signature}/{video_id}/{path:path}": "signature: test_playback",
        "/runner/notify_task_end/": "per-assignment secret: test_runner_dispatch",
        "/runner/notify_task_end": "same",
        "/runner/source/{assignment_id}/{secret}/{name}": "per-assignment secret",
        "/xapi/video/": "anonymous viewers allowed: test_xapi",
        "/xapi/video": "same",
        "/videos/upload": "test_api.test_tokens_and_roles (worker 403)",
        "/api/v1/videos/{video_id}/transcribe": "same checks as encode (access.own_video)",
        "/api/v1/worker/jobs/{job_id}/claim": "worker API: test_farm",
        "/api/v1/worker/jobs/{job_id}/progress": "worker API",
        "/api/v1/worker/jobs/{job_id}/complete": "worker API",
        "/api/v1/worker/jobs/{job_id}/fail": "worker API",
        "/api/v1/worker/jobs/{job_id}/release": "worker API",
        "/api/v1/worker/xapi/claim": "worker API",
        "/api/v1/worker/xapi/record": "worker API",
        "/api/v1/runners/{runner_id}": "admin only, like /api/v1/runners",
        "/api/v1/runners/{runner_id}/test": "admin only",
        "/api/v1/xapi/dead/redeliver": "admin only, like /api/v1/xapi/dead",
        "/api/v1/videos/{video_id}": "matrix (GET, PATCH, DELETE)",
        "/embed/{video_id}": "matrix (private); unlisted, public: test_embed",
        "/embed/{video_id}/playback": "same",
        "/api/v1/public/videos": "open by design (public videos only): test_embed",
        "/videos/stream/{path:path}": "matrix",
        "/videos/download/{path:path}": "matrix",
    }
    in_matrix = {
        "/api/v1/me",
        "/api/v1/videos",
        "/api/v1/videos/{video_id}/playback",
        "/api/v1/jobs",
        "/api/v1/jobs/{job_id}",
        "/api/v1/jobs/events",
        "/api/v1/jobs/{job_id}/cancel",
        "/api/v1/jobs/{job_id}/restart",
        "/videos/task/{task_id}",
        "/videos/status/{file_id}",
        "/api/v1/workers",
        "/api/v1/runners",
        "/api/v1/xapi/dead",
        "/api/v1/xapi/status",
        "/api/v1/worker/ping",
        "/metrics",
        "/videos/transcode/{file_id}",
        "/api/v1/videos/{video_id}/encode",
    }
    routes = {r.path for r in api.client.app.routes if isinstance(r, APIRoute)}  # type: ignore[attr-defined]
    assert routes - in_matrix - set(own_test) == set()
