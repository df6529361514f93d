"""xAPI end to end against a real LRS (Ralph): events in over HTTP, statements out in batches.

Ralph runs once per session; each test knows its own statement ids and counts only those.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from fixtures_ralph import RALPH_PASSWORD, RALPH_USER, Ralph
from vidfarm.api.app import create_app
from vidfarm.auth import Role, create_token
from vidfarm.config import Settings
from vidfarm.models import Video, XapiStatement
from vidfarm.runtime import Runtime, open_runtime
from vidfarm.xapi.delivery import XapiDelivery
from vidfarm.xapi.lrs import LrsClient
from vidfarm.xapi.outbox import outbox_status

LRS_ONLY = {"stored", "authority", "version"}  # what the LRS adds to what we sent


@dataclass
class Farm:
    client: TestClient
    runtime: Runtime
    tokens: dict[str, str]
    video_id: str
    ralph: Ralph

    def post(self, body: Any, role: str | None = "user", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return self.client.post("/xapi/video/", json=body, headers=headers, **kwargs)

    def get(self, url: str, role: str = "user") -> Any:
        return self.client.get(url, headers={"Authorization": f"Bearer {self.tokens[role]}"})

    def delivery(self, password: str = RALPH_PASSWORD, **overrides: Any) -> XapiDelivery:
        settings = self.runtime.settings.model_copy(update=overrides)
        return XapiDelivery(
            self.runtime.sessions, settings, client=self.ralph.client(password=password)
        )

    def status(self) -> dict[str, Any]:
        with self.runtime.sessions() as session:
            return outbox_status(session).as_dict()

    def events(self, count: int, verb: str = "played") -> list[str]:
        body = [
            {"video_id": self.video_id, "verb": verb, "time": i, "session_id": "s"}
            for i in range(count)
        ]
        response = self.post(body)
        assert response.status_code == 202, response.text
        ids: list[str] = response.json()["ids"]
        return ids


def farm_settings(tmp_path: Path, db_url: str, lrs_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": db_url,
        "xapi_enabled": True,
        "xapi_lrs_url": lrs_url,
        "xapi_lrs_login": RALPH_USER,
        "xapi_lrs_password": RALPH_PASSWORD,
        "xapi_base_url": "https://farm.example",
        "xapi_batch_size": 10,
        "xapi_retry_base_seconds": 0.05,
        "xapi_retry_max_seconds": 0.2,
        "xapi_pause_seconds": 0.2,
        "poll_seconds": 0.05,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
def farm(ralph: Ralph, db_url: str, tmp_path: Path) -> Iterator[Farm]:
    runtime = open_runtime(farm_settings(tmp_path, db_url, ralph.url))
    with runtime.sessions() as session:
        session.execute(delete(XapiStatement))  # PostgreSQL's database lives for the session
        video = Video(filename="lecture.mp4", source_key="sources/x.mp4", duration=42.0)
        session.add(video)
        session.commit()
        video_id = video.id
        tokens = {
            role.value: create_token(session, role=role, name=f"{role.value}@example.org")[0]
            for role in Role
        }
    app = create_app(runtime, run_farm=False)
    with TestClient(app) as client:
        yield Farm(client, runtime, tokens, video_id, ralph)
    runtime.engine.dispose()


def our_counts(ralph: Ralph, ids: list[str]) -> Counter[str]:
    wanted = set(ids)
    with ralph.client() as client:
        return Counter(s["id"] for s in client.all_statements() if s["id"] in wanted)


def test_events_become_statements_that_ralph_stores_as_built(farm: Farm) -> None:
    ids = farm.events(3)
    anonymous = farm.post(
        {
            "video_id": farm.video_id,
            "verb": "seeked",
            "time_from": 1,
            "time_to": 9,
            "session_id": "browser-1",
        },
        role=None,
    )
    assert anonymous.status_code == 202, anonymous.text
    ids += anonymous.json()["ids"]
    with farm.runtime.sessions() as session:
        built = {r.id: r.statement for r in session.scalars(select(XapiStatement))}
    assert set(built) == set(ids)
    delivery = farm.delivery()
    report = delivery.deliver_once()
    assert (report.claimed, report.requests, report.delivered) == (4, 1, 4)  # one batch
    with farm.ralph.client() as client:
        for statement_id in ids:
            stored = client.get_statement(statement_id)
            assert stored is not None
            assert {k: v for k, v in stored.items() if k not in LRS_ONLY} == built[statement_id]
    user_actor = built[ids[0]]["actor"]
    assert user_actor == built[ids[1]]["actor"]  # one user, one anonymised actor
    assert built[ids[3]]["actor"] != user_actor  # the anonymous viewer's session actor
    assert user_actor["account"]["homePage"] == "https://farm.example"
    assert built[ids[0]]["object"]["id"] == f"https://farm.example/api/v1/videos/{farm.video_id}"
    status = farm.get("/api/v1/xapi/status").json()
    assert (status["pending"], status["delivered"], status["dead"], status["paused"]) == (
        0,
        4,
        0,
        False,
    )


@pytest.mark.parametrize("key", ["actor", "authority", "stored"])
def test_a_client_cannot_set_what_the_server_or_lrs_sets(farm: Farm, key: str) -> None:
    event = {"video_id": farm.video_id, "verb": "initialized", key: {"mbox": "mailto:x@y.z"}}
    response = farm.post([{"video_id": farm.video_id, "verb": "initialized"}, event])
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"event 1: {key} cannot be set by the client (the server sets them)"
    )
    assert farm.status()["pending"] == 0  # the whole request is refused, nothing stored


def test_unknown_verbs_fields_videos_and_tokens_are_refused(farm: Farm) -> None:
    refused = {
        "unknown verb 'jumped'": {"video_id": farm.video_id, "verb": "jumped"},
        "unknown fields: colour": {"video_id": farm.video_id, "verb": "initialized", "colour": 1},
        "unknown extensions: user-age": {
            "video_id": farm.video_id,
            "verb": "initialized",
            "extensions": {"user-age": "x"},
        },
    }
    for message, event in refused.items():
        response = farm.post(event)
        assert response.status_code == 422 and message in response.json()["detail"]
    assert farm.post({"video_id": "nope", "verb": "initialized"}).status_code == 404
    bad_token = farm.client.post(
        "/xapi/video/",
        json={"video_id": farm.video_id, "verb": "initialized", "session_id": "s"},
        headers={"Authorization": "Bearer vf_nope_nope"},
    )
    assert bad_token.status_code == 401
    no_session = farm.post({"video_id": farm.video_id, "verb": "initialized"}, role=None)
    assert no_session.status_code == 422 and "session_id" in no_session.json()["detail"]


def test_lrs_stopped_mid_run_then_restarted_gets_everything_once(farm: Farm) -> None:
    delivery = farm.delivery()
    ids = farm.events(40)
    delivery.start()
    try:
        deadline = time.monotonic() + 30
        while farm.status()["delivered"] < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        farm.ralph.stop()
        ids += farm.events(40)  # players go on while the LRS is down
        deadline = time.monotonic() + 30
        while farm.status()["retrying"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        down = farm.status()
        assert down["pending"] > 0 and down["retrying"] > 0 and down["last_error"]
        farm.ralph.start()
        ids += farm.events(20)
        deadline = time.monotonic() + 60
        while farm.status()["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        delivery.stop()
        if farm.ralph.process is None:
            farm.ralph.start()
    assert farm.status()["delivered"] == len(ids) == 100
    counts = our_counts(farm.ralph, ids)
    assert set(counts) == set(ids) and set(counts.values()) == {1}


def test_wrong_credentials_pause_delivery_and_lose_nothing(farm: Farm) -> None:
    ids = farm.events(15)
    wrong = farm.delivery(password="not-the-password")
    report = wrong.deliver_once()
    assert report.paused and report.requests == 1 and report.delivered == 0
    status = farm.get("/api/v1/xapi/status").json()
    assert status["paused"] and status["pending"] == 15
    assert status["pause_reason"].startswith("LRS answered 401")
    runner = CliRunner()
    from vidfarm.cli.xapi import xapi_app

    env = {
        "VIDFARM_DATA_DIR": str(farm.runtime.settings.data_dir),
        "VIDFARM_DATABASE_URL": farm.runtime.settings.resolved_database_url,
    }
    shown = runner.invoke(xapi_app, ["status"], env=env)
    assert shown.exit_code == 0 and "PAUSED: LRS answered 401" in shown.output
    with farm.runtime.sessions() as session:
        assert {r.attempts for r in session.scalars(select(XapiStatement))} == {0}
    wrong_env = {
        **env,
        "VIDFARM_XAPI_LRS_URL": farm.ralph.url,
        "VIDFARM_XAPI_LRS_LOGIN": RALPH_USER,
    }
    refused = runner.invoke(
        xapi_app, ["deliver"], env={**wrong_env, "VIDFARM_XAPI_LRS_PASSWORD": "nope"}
    )
    assert refused.exit_code == 2 and "delivery paused: LRS answered 401" in refused.output
    fixed = runner.invoke(
        xapi_app, ["deliver"], env={**wrong_env, "VIDFARM_XAPI_LRS_PASSWORD": RALPH_PASSWORD}
    )
    assert fixed.exit_code == 0 and "delivered 15, dead 0" in fixed.output
    status = farm.status()
    assert (status["pending"], status["delivered"], status["paused"]) == (0, 15, False)
    assert set(our_counts(farm.ralph, ids).values()) == {1}


def test_a_bad_statement_goes_dead_without_holding_back_its_batch(farm: Farm) -> None:
    ids = farm.events(10)
    bad = ids[6]
    with farm.runtime.sessions() as session:  # as if built by a buggy version: no actor
        row = session.get(XapiStatement, bad)
        assert row is not None
        row.statement = {k: v for k, v in row.statement.items() if k != "actor"}
        session.commit()
    report = farm.delivery().deliver_once()
    assert (report.claimed, report.delivered, report.dead) == (10, 9, 1)
    assert report.requests <= 1 + 2 * 4  # bisected, not retried one by one
    dead = farm.get("/api/v1/xapi/dead", role="admin").json()["items"]
    assert [d["id"] for d in dead] == [bad] and dead[0]["status"] == 422
    assert "actor" in dead[0]["reason"]
    assert dead[0]["video_title"] == "lecture.mp4"  # named as people know it (no title: file)
    assert farm.get("/api/v1/xapi/dead").status_code == 403  # dead letters are admin-only
    counts = our_counts(farm.ralph, ids)
    assert set(counts) == set(ids) - {bad}
    refused = farm.client.post(
        "/api/v1/xapi/dead/redeliver",
        json={},
        headers={"Authorization": f"Bearer {farm.tokens['user']}"},
    )
    assert refused.status_code == 403
    again = farm.client.post(
        "/api/v1/xapi/dead/redeliver",
        json={"ids": [bad]},
        headers={"Authorization": f"Bearer {farm.tokens['admin']}"},
    )
    assert again.json() == {"redelivered": 1}
    assert (farm.status()["pending"], farm.status()["dead"]) == (1, 0)


def test_a_409_for_an_id_the_lrs_has_counts_as_delivered(farm: Farm) -> None:
    (statement_id,) = farm.events(1)
    delivery = farm.delivery()
    delivery.deliver_once()
    with farm.runtime.sessions() as session:  # resent with different content: the LRS says 409
        row = session.get(XapiStatement, statement_id)
        assert row is not None
        row.statement = {**row.statement, "timestamp": "2020-01-01T00:00:00+00:00"}
        session.execute(
            update(XapiStatement)
            .where(XapiStatement.id == statement_id)
            .values(state="pending", statement=row.statement, next_attempt_at=datetime.now(UTC))
        )
        session.commit()
    report = delivery.deliver_once()
    assert report.delivered == 1 and report.results[statement_id].status == 409
    assert farm.status()["delivered"] == 1


def test_the_lrs_client_reports_no_answer_as_status_0() -> None:
    with LrsClient(url="http://127.0.0.1:9/xAPI", login="u", password="p", timeout=2) as client:
        answer = client.post_statements([{"id": "x"}])
    assert answer.status == 0 and "ConnectError" in answer.reason


def test_a_silent_lrs_times_out_and_statements_back_off(farm: Farm) -> None:
    farm.events(3)
    settings = farm.runtime.settings.model_copy(
        update={"xapi_retry_base_seconds": 30.0, "xapi_retry_max_seconds": 60.0}
    )
    with socket.socket() as hole:  # accepts connections, never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen()
        url = f"http://127.0.0.1:{hole.getsockname()[1]}/xAPI"
        client = LrsClient(url=url, login=RALPH_USER, password=RALPH_PASSWORD, timeout=0.3)
        report = XapiDelivery(farm.runtime.sessions, settings, client=client).deliver_once()
        client.close()
    assert (report.requests, report.retried, report.delivered) == (1, 3, 0)
    status = farm.status()
    assert (status["pending"], status["retrying"], status["paused"]) == (3, 3, False)
    assert "ReadTimeout" in status["last_error"]
    wait = datetime.fromisoformat(status["next_attempt_at"]) - datetime.now(UTC)
    assert wait.total_seconds() > 10  # backing off: not due yet, even for a working LRS
    assert farm.delivery().deliver_once().claimed == 0


def test_the_farm_delivers_in_the_background(ralph: Ralph, db_url: str, tmp_path: Path) -> None:
    """With the farm running (as in `vidfarm serve`), events reach the LRS on their own."""
    runtime = open_runtime(farm_settings(tmp_path, db_url, ralph.url))
    with runtime.sessions() as session:
        session.execute(delete(XapiStatement))
        video = Video(filename="lecture.mp4", source_key="sources/x.mp4", duration=42.0)
        session.add(video)
        session.commit()
        video_id = video.id
        token = create_token(session, role=Role.USER, name="viewer")[0]
    with TestClient(create_app(runtime)) as client:  # run_farm: the delivery loop starts
        response = client.post(
            "/xapi/video/",
            json=[{"video_id": video_id, "verb": "played", "time": 1.5, "session_id": "s"}],
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 202, response.text
        ids = response.json()["ids"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and our_counts(ralph, ids) != Counter(ids):
            time.sleep(0.2)
    assert our_counts(ralph, ids) == Counter(ids)
    runtime.engine.dispose()
