"""The reconciler's cheap look at the xAPI outbox (Celery mode): due, and paused."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from vidfarm.xapi import outbox


def test_due_now_follows_next_attempt_and_pause(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        assert outbox.due_now(session) == (False, False)
        (first,) = outbox.enqueue(session, [({"id": str(uuid.uuid4())}, None)])
        now = outbox.utcnow()
        assert outbox.due_now(session, now + timedelta(seconds=1)) == (True, False)
        outbox.claim_due(session, 10, lease_seconds=60)  # leased: not due until it comes back
        assert outbox.due_now(session, now + timedelta(seconds=1)) == (False, False)
        assert outbox.due_now(session, now + timedelta(seconds=120))[0] is True
        outbox.record(
            session,
            {first: outbox.Result("paused", 401, "bad credentials")},
            retry_base=1,
            retry_max=1,
        )
        assert outbox.due_now(session, outbox.utcnow() + timedelta(seconds=1)) == (True, True)
        outbox.record(
            session, {first: outbox.Result("delivered", 200, "")}, retry_base=1, retry_max=1
        )
        assert outbox.due_now(session, outbox.utcnow() + timedelta(seconds=1)) == (False, False)


def test_a_success_brings_every_backing_off_statement_forward(
    session_factory: sessionmaker[Session],
) -> None:
    """The LRS is back: the backlog is due at once, in full batches, not at random times."""
    with session_factory() as session:
        ids = outbox.enqueue(session, [({"id": str(uuid.uuid4())}, None) for _ in range(5)])
        outbox.claim_due(session, 10, lease_seconds=60)
        down = outbox.Result("retry", 0, "connection refused")
        outbox.record(session, dict.fromkeys(ids, down), retry_base=600, retry_max=600)
        assert outbox.claim_due(session, 10, lease_seconds=60) == []  # all backing off
        (fresh,) = outbox.enqueue(session, [({"id": str(uuid.uuid4())}, None)])
        assert [row.id for row in outbox.claim_due(session, 10, lease_seconds=60)] == [fresh]
        up = outbox.Result("delivered", 200, "")
        outbox.record(session, {fresh: up}, retry_base=600, retry_max=600)
        assert {row.id for row in outbox.claim_due(session, 10, lease_seconds=60)} == set(ids)
