"""What the dashboard's everyday pages stand on: titles and descriptions, search and sort,
a playable flag and thumbnail in the list, jobs and dead letters named by title, pruning of
superseded encodes, runner managers deleted, and a token revoked by its holder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api import Api, make_settings, start_api

from fixtures_media import MakeMedia, video_args
from waiting import wait_until


@pytest.fixture
def api(tmp_path: Path, pg_database: str) -> Iterator[Api]:
    client, api = start_api(make_settings(tmp_path, database_url=pg_database))
    with client:
        yield api
    api.runtime.engine.dispose()


def patch(api: Api, url: str, json: object, role: str = "user") -> object:
    return api.client.patch(url, headers=api.headers(role), json=json)


def wait_status(api: Api, job_id: str, status: str) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        job = dict(api.get(f"/api/v1/jobs/{job_id}").json())
        return job if job["status"] == status else None

    return dict(wait_until(done, timeout=60, what=f"job {job_id} {status}"))


def test_title_defaults_to_the_file_name_is_editable_and_names_the_jobs(
    api: Api, make_media: MakeMedia
) -> None:
    lecture = make_media("lecture-one.mp4", *video_args(duration=1))
    body = api.upload(lecture).json()
    video = api.get(f"/api/v1/videos/{body['file_id']}").json()
    assert (video["title"], video["description"]) == ("lecture-one.mp4", None)

    answer = patch(
        api,
        f"/api/v1/videos/{video['id']}",
        {"title": "  Thermodynamics, week 1 ", "description": "First lecture"},
    )
    assert answer.status_code == 200, answer.text  # type: ignore[attr-defined]
    assert answer.json()["title"] == "Thermodynamics, week 1"  # type: ignore[attr-defined]
    assert api.get(f"/api/v1/videos/{video['id']}").json()["description"] == "First lecture"
    job = wait_status(api, body["job_id"], "completed")
    assert job["video_title"] == "Thermodynamics, week 1"
    assert job["video_duration"] == pytest.approx(1.0, abs=0.2)

    # Bad input: one line, 422, nothing changed.
    for bad in ({"title": ""}, {"title": None}, {}, {"title": "x" * 256}, {"colour": "red"}):
        refused = patch(api, f"/api/v1/videos/{video['id']}", bad)
        assert refused.status_code == 422, bad  # type: ignore[attr-defined]
    assert api.get(f"/api/v1/videos/{video['id']}").json()["title"] == "Thermodynamics, week 1"
    # Another user's token cannot rename it (404, as if it did not exist).
    assert patch(api, f"/api/v1/videos/{video['id']}", {"title": "mine"}, "worker").status_code in (
        403,
        404,
    )


def test_search_sort_playable_and_thumbnail(api: Api, make_media: MakeMedia) -> None:
    short = api.upload(make_media("short.mp4", *video_args(duration=1))).json()
    long = api.upload(make_media("long.mp4", *video_args(duration=3))).json()
    wait_status(api, short["job_id"], "completed")
    wait_status(api, long["job_id"], "completed")
    patch(api, f"/api/v1/videos/{long['file_id']}", {"title": "Organic chemistry 100%_done"})

    def ids(query: str) -> list[str]:
        return [v["id"] for v in api.get(f"/api/v1/videos?{query}").json()["items"]]

    assert ids("q=CHEMISTRY") == [long["file_id"]]
    assert ids("q=organic%20100%25_") == [long["file_id"]]  # % and _ are literal
    assert ids("q=100%25x") == []
    assert ids("q=short.mp4") == [short["file_id"]]  # the file name is searched too
    assert ids("sort=longest") == [long["file_id"], short["file_id"]]
    assert ids("sort=shortest") == [short["file_id"], long["file_id"]]
    assert ids("sort=oldest") == [short["file_id"], long["file_id"]]
    assert ids("sort=newest") == [long["file_id"], short["file_id"]]
    assert api.get("/api/v1/videos?sort=sideways").status_code == 422

    # A later encode cancelled: the video still plays, its thumbnail is a signed URL.
    again = api.post(f"/api/v1/videos/{short['file_id']}/encode", json={}).json()
    api.post(f"/api/v1/jobs/{again['id']}/cancel")
    item = next(v for v in api.get("/api/v1/videos").json()["items"] if v["id"] == short["file_id"])
    assert item["playable"] is True
    picture = api.client.get(item["thumbnail"])  # no token: the signature is the key
    assert picture.status_code == 200 and picture.content[:3] == b"\xff\xd8\xff"
    assert ids("sort=state")[-1] in (short["file_id"], long["file_id"])


def test_prune_keeps_the_newest_encode_and_frees_the_others(
    api: Api, make_media: MakeMedia
) -> None:
    body = api.upload(make_media("twice.mp4", *video_args(duration=1))).json()
    first = wait_status(api, body["job_id"], "completed")
    second = api.post(f"/api/v1/videos/{body['file_id']}/encode", json={}).json()
    wait_status(api, second["id"], "completed")
    media = api.runtime.settings.data_dir / "media" / "videos" / body["file_id"]
    assert (media / str(first["id"])).is_dir()

    answer = api.post(f"/api/v1/videos/{body['file_id']}/prune").json()
    assert answer["pruned"] == 1 and answer["freed_bytes"] > 0
    assert not (media / str(first["id"])).exists()
    assert (media / second["id"]).is_dir()
    playback = api.get(f"/api/v1/videos/{body['file_id']}/playback").json()
    assert playback["master"] and all(o["job_id"] == second["id"] for o in playback["outputs"])
    assert api.post(f"/api/v1/videos/{body['file_id']}/prune").json()["pruned"] == 0


def test_runner_manager_delete_last_contact_and_private_url_hint(
    api: Api, tmp_path: Path, pg_database: str
) -> None:
    refused = api.post(
        "/api/v1/runners",
        "admin",
        json={"name": "lan", "url": "http://127.0.0.1:9", "token": "secret"},
    )
    assert refused.status_code == 422
    assert "VIDFARM_RUNNERS_ALLOW_PRIVATE_URLS" in refused.json()["detail"]
    assert "Traceback" not in refused.text

    (tmp_path / "lan").mkdir()
    settings = make_settings(tmp_path / "lan", database_url=pg_database)
    client, lan = start_api(settings.model_copy(update={"runners_allow_private_urls": True}))
    with client:
        lan_manager(lan)
    lan.runtime.engine.dispose()


def lan_manager(api: Api) -> None:
    """On a farm that allows managers on its network: listed, then deleted by an admin."""
    added = api.post(
        "/api/v1/runners",
        "admin",
        json={"name": "lan", "url": "http://127.0.0.1:9", "token": "secret"},
    ).json()
    [listed] = api.get("/api/v1/runners", "admin").json()
    assert listed["last_used_at"] is None and "token" not in listed
    assert api.client.delete(f"/api/v1/runners/{added['id']}", headers=api.headers()).status_code
    assert api.get("/api/v1/runners", "admin").json() == [listed]  # a user cannot delete
    gone = api.client.delete(f"/api/v1/runners/{added['id']}", headers=api.headers("admin"))
    assert gone.status_code == 204
    assert api.get("/api/v1/runners", "admin").json() == []
    again = api.client.delete(f"/api/v1/runners/{added['id']}", headers=api.headers("admin"))
    assert again.status_code == 404


def test_log_out_everywhere_revokes_the_callers_token(api: Api) -> None:
    assert api.get("/api/v1/me").status_code == 200
    assert api.post("/api/v1/me/revoke").status_code == 204
    assert api.get("/api/v1/me").status_code == 401
    assert api.get("/api/v1/me", "admin").status_code == 200  # only the caller's token
