"""Statements per the xAPI Video Profile, actor rules, and the outbox's states in real SQL."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm.errors import InvalidParameters
from vidfarm.jobs import as_utc
from vidfarm.models import XapiStatement
from vidfarm.xapi import outbox
from vidfarm.xapi.outbox import Result
from vidfarm.xapi.statements import (
    ACTIVITY_TYPE,
    EXTENSION_PREFIX,
    PROFILE,
    SECRET_FILE,
    VERBS,
    ActorPolicy,
    VideoActivity,
    Viewer,
    build_statement,
    load_actor_secret,
    validate_event,
)

VIDEO = VideoActivity(id="https://farm.example/api/v1/videos/abc", name="lecture.mp4", duration=42)
POLICY = ActorPolicy(home_page="https://farm.example", secret=b"k" * 64)
ALICE = Viewer(user_id="tok-alice", username="alice@example.org")
BOB = Viewer(user_id="tok-bob", username="bob")
NOBODY = Viewer(user_id=None, username="anonymous")


def build(event: dict[str, Any], viewer: Viewer = ALICE, policy: ActorPolicy = POLICY) -> Any:
    checked = validate_event({"video_id": "abc", **event})
    actor = policy.actor(viewer, checked.get("session_id"))
    return build_statement(checked, actor=actor, video=VIDEO)


def test_a_seek_becomes_a_profile_statement() -> None:
    now = datetime.now(UTC)
    statement = build(
        {
            "verb": "seeked",
            "time_from": 12.5,
            "time_to": 30,
            "session_id": "s1",
            "registration": "6fbd600f-d17c-4c74-801a-2ec2e53231a1",
            "speed": 1.5,
            "full_screen": True,
            "cc_subtitle_lang": "fr",
        }
    )
    assert uuid.UUID(statement["id"]).version == 4
    assert statement["verb"]["id"] == "https://w3id.org/xapi/video/verbs/seeked"
    assert statement["object"] == {
        "objectType": "Activity",
        "id": VIDEO.id,
        "definition": {"type": ACTIVITY_TYPE, "name": {"und": "lecture.mp4"}},
    }
    assert statement["result"]["extensions"] == {
        EXTENSION_PREFIX + "time-from": 12.5,
        EXTENSION_PREFIX + "time-to": 30.0,
    }
    context = statement["context"]
    assert context["registration"] == "6fbd600f-d17c-4c74-801a-2ec2e53231a1"
    assert context["contextActivities"]["category"][0]["id"] == PROFILE
    assert context["extensions"] == {
        EXTENSION_PREFIX + "session-id": "s1",
        EXTENSION_PREFIX + "speed": "1.5",
        EXTENSION_PREFIX + "full-screen": True,
        EXTENSION_PREFIX + "cc-subtitle-lang": "fr",
        EXTENSION_PREFIX + "length": 42.0,  # from the video when the player does not say
    }
    stamped = datetime.fromisoformat(statement["timestamp"])
    assert abs((stamped - now).total_seconds()) < 5 and stamped.utcoffset() == timedelta(0)


def test_every_verb_maps_to_its_iri_and_ids_are_fresh() -> None:
    seen = set()
    for verb, iri in VERBS.items():
        event: dict[str, Any] = {"verb": verb, "time": 1, "time_from": 0, "time_to": 1}
        statement = build(event)
        assert statement["verb"]["id"] == iri
        seen.add(statement["id"])
    assert len(seen) == len(VERBS)
    completed = build({"verb": "completed", "progress": 1, "played_segments": "0[.]5.2[,]9[.]42"})
    assert completed["result"]["completion"] is True
    assert completed["result"]["extensions"][EXTENSION_PREFIX + "played-segments"] == (
        "0[.]5.2[,]9[.]42"
    )


def test_extensions_may_be_named_by_short_name_or_iri() -> None:
    statement = build(
        {
            "verb": "interacted",
            "extensions": {"volume": 0.5, EXTENSION_PREFIX + "screen-size": "1920x1080"},
        }
    )
    assert statement["context"]["extensions"][EXTENSION_PREFIX + "volume"] == 0.5
    assert statement["context"]["extensions"][EXTENSION_PREFIX + "screen-size"] == "1920x1080"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"verb": "jumped"}, "unknown verb 'jumped'"),
        ({"verb": "initialized", "colour": "red", "mood": 1}, "unknown fields: colour, mood"),
        ({"verb": "initialized", "actor": {"mbox": "mailto:x@y"}}, "actor cannot be set"),
        ({"verb": "initialized", "authority": {}, "stored": "x"}, "authority, stored cannot"),
        ({"verb": "initialized", "extensions": {"user-age": 3}}, "unknown extensions: user-age"),
        ({"verb": "initialized", "extensions": {"cc-enabled": True}}, "extensions: cc-enabled"),
        ({"verb": "played"}, "played needs time"),
        ({"verb": "seeked", "time_from": 1}, "seeked needs time_from and time_to"),
        ({"verb": "paused", "time": 1, "progress": 1.5}, "progress must be between 0 and 1"),
        ({"verb": "played", "time": -1}, "time must be at least 0"),
        ({"verb": "played", "time": "soon"}, "time must be a number"),
        ({"verb": "interacted", "full_screen": "yes"}, "full_screen must be true or false"),
        ({"verb": "paused", "time": 1, "played_segments": "0-5"}, "played_segments must read"),
        ({"verb": "initialized", "registration": "nope"}, "registration must be a UUID"),
    ],
)
def test_bad_events_are_refused_by_name(event: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameters, match=message.replace("(", r"\(")):
        build(event)


def test_video_id_is_required() -> None:
    with pytest.raises(InvalidParameters, match="video_id is required"):
        validate_event({"verb": "initialized"})


def test_anonymised_actor_is_a_stable_hmac_not_the_user() -> None:
    first = POLICY.actor(ALICE, None)
    assert first == POLICY.actor(ALICE, "another-session")  # per user, not per session
    name = first["account"]["name"]
    assert len(name) == 64 and "alice" not in name and "tok-alice" not in name
    assert first["account"]["homePage"] == "https://farm.example"
    assert POLICY.actor(BOB, None) != first
    other_secret = ActorPolicy(home_page="https://farm.example", secret=b"z" * 64)
    assert other_secret.actor(ALICE, None) != first


def test_anonymous_viewers_get_one_actor_per_session() -> None:
    one = POLICY.actor(NOBODY, "s1")
    assert one == POLICY.actor(NOBODY, "s1") != POLICY.actor(NOBODY, "s2")
    with pytest.raises(InvalidParameters, match="session_id is required"):
        POLICY.actor(NOBODY, None)


def test_named_actors_when_not_anonymised() -> None:
    def named(source: Any, viewer: Viewer) -> Any:
        policy = ActorPolicy(
            home_page="https://farm.example", secret=b"k" * 64, anonymize=False, name_source=source
        )
        return policy.actor(viewer, None)

    assert named("username", BOB)["account"]["name"] == "bob"
    assert named("uuid", BOB)["account"]["name"] == str(uuid.uuid3(uuid.NAMESPACE_DNS, "bob"))
    assert named("email", ALICE) == {"objectType": "Agent", "mbox": "mailto:alice@example.org"}
    assert named("email", BOB)["account"]["name"] == "bob"  # no address: the username


def test_actor_secret_is_generated_once_private_and_stable(tmp_path: Path) -> None:
    first = load_actor_secret("", tmp_path / "data")
    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert load_actor_secret("", tmp_path / "data") == first
    assert load_actor_secret("configured", tmp_path / "data") == b"configured"
    path.write_text("short\n")
    with pytest.raises(InvalidParameters, match="no usable secret"):
        load_actor_secret("", tmp_path / "data")


# --- the outbox on SQLite and PostgreSQL ------------------------------------------------------


@pytest.fixture
def sessions(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    with session_factory() as session:
        session.execute(delete(XapiStatement))
        session.commit()
    return session_factory


def enqueue(sessions: sessionmaker[Session], count: int) -> list[str]:
    statements = [(build({"verb": "initialized"}), "abc") for _ in range(count)]
    with sessions() as session:
        return outbox.enqueue(session, statements)


def test_claims_lease_statements_oldest_first(sessions: sessionmaker[Session]) -> None:
    ids = enqueue(sessions, 5)
    with sessions() as session:
        first = [row.id for row in outbox.claim_due(session, 3, lease_seconds=60)]
        second = [row.id for row in outbox.claim_due(session, 3, lease_seconds=60)]
        third = outbox.claim_due(session, 3, lease_seconds=60)
    assert sorted(first + second) == sorted(ids) and len(first) == 3 and not third
    with sessions() as session:  # a lease that ran out (a dead worker) hands them back
        session.execute(update(XapiStatement).values(next_attempt_at=datetime.now(UTC)))
        session.commit()
        assert len(outbox.claim_due(session, 10, lease_seconds=60)) == 5


def test_outcomes_move_statements_between_states(sessions: sessionmaker[Session]) -> None:
    a, b, c, d = enqueue(sessions, 4)
    with sessions() as session:
        outbox.record(
            session,
            {
                a: Result("delivered", 200, ""),
                b: Result("dead", 400, "bad actor"),
                c: Result("retry", 503, "LRS down"),
                d: Result("paused", 401, "Invalid authentication credentials"),
            },
            retry_base=30,
            retry_max=60,
        )
        state = outbox.outbox_status(session)
        rows = {r.id: r for r in session.scalars(select(XapiStatement))}
    assert (state.pending, state.delivered, state.dead, state.retrying) == (2, 1, 1, 1)
    assert (
        state.paused
        and state.pause_reason == "LRS answered 401: Invalid authentication credentials"
    )
    assert state.last_error == "LRS down"
    assert rows[c].attempts == 1 and rows[d].attempts == 0  # a pause is not the statement's fault
    wait = (as_utc(rows[c].next_attempt_at) - datetime.now(UTC)).total_seconds()
    assert 10 < wait <= 30  # the first retry waits half to all of the base step
    with sessions() as session:
        assert [row.id for row in outbox.list_dead(session)] == [b]
        assert outbox.redeliver_dead(session) == 1
        outbox.record(session, {c: Result("delivered", 200, "")}, retry_base=1, retry_max=1)
        state = outbox.outbox_status(session)
    assert (state.pending, state.delivered, state.dead) == (2, 2, 0)
    assert not state.paused  # a delivery lifts the pause
