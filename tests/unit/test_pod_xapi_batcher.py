"""The Pod worker's xAPI sender: statements that queue up leave together, one bad one alone.

A real HTTP stand-in LRS on loopback records every POST; the batcher talks to it through the
same LrsClient as in production.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from fixtures_lrs import StandInLrs
from vidfarm.pod_worker.xapi import LrsUnavailable, StatementBatcher, StatementRefused
from vidfarm.xapi.lrs import LrsClient
from waiting import wait_until


def statement(marker: str = "ok") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "actor": {"mbox": "mailto:anon@pod.example"},
        "verb": {"id": "https://w3id.org/xapi/video/verbs/played"},
        "object": {"id": f"https://pod.example/video/{marker}/"},
    }


def send_all(batcher: StatementBatcher, statements: list[dict[str, Any]]) -> dict[str, Any]:
    """Each statement from its own thread, as Celery's threads do; id -> status or error."""
    outcomes: dict[str, Any] = {}

    def one(s: dict[str, Any]) -> None:
        try:
            outcomes[s["id"]] = batcher.send(s)
        except Exception as error:
            outcomes[s["id"]] = error

    threads = [threading.Thread(target=one, args=(s,)) for s in statements]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def test_statements_that_queue_up_while_the_lrs_is_down_leave_in_one_post(
    lrs_factory: Callable[..., StandInLrs],
) -> None:
    down = threading.Event()
    down.set()
    tried: list[int] = []

    def answer(statements: list[dict[str, Any]]) -> int:
        tried.append(len(statements))
        return 503 if down.is_set() else 200

    lrs = lrs_factory(answer)
    statements = [statement() for _ in range(20)]
    batcher: StatementBatcher

    def backoff(_seconds: float) -> None:
        # The LRS comes back once every other task has queued its statement behind the first.
        wait_until(lambda: tried[0] + batcher.waiting() == 20, 10, "all 20 statements sent")
        down.clear()

    batcher = StatementBatcher(LrsClient(url=lrs.url, login="u", password="p"), sleep=backoff)
    outcomes = send_all(batcher, statements)

    assert set(outcomes.values()) == {200}
    assert lrs.stored == {s["id"] for s in statements}
    # The failed first try, then the same batch with everything that queued meanwhile.
    assert [len(b) for b in lrs.batches] == [tried[0], 20]


def test_a_refused_statement_is_singled_out_and_the_rest_delivered(
    lrs_factory: Callable[..., StandInLrs],
) -> None:
    gate = threading.Event()
    first: list[int] = []

    def answer(statements: list[dict[str, Any]]) -> int:
        if not first:  # hold the first POST while the others queue up behind it
            first.append(len(statements))
            gate.wait(10)
        bad = any(s["object"]["id"].endswith("/bad/") for s in statements)
        return 400 if bad else 200

    lrs = lrs_factory(answer)
    batcher = StatementBatcher(LrsClient(url=lrs.url, login="u", password="p"))
    good = [statement() for _ in range(7)]
    bad = statement("bad")
    outcomes: dict[str, Any] = {}
    senders = [
        threading.Thread(target=lambda: outcomes.update(send_all(batcher, good))),
    ]
    senders[0].start()
    wait_until(lambda: first and first[0] + batcher.waiting() == 7, 10, "7 statements sent")
    senders.append(threading.Thread(target=lambda: outcomes.update(send_all(batcher, [bad]))))
    senders[1].start()
    wait_until(lambda: batcher.waiting() == 8 - first[0], 10, "the bad one queued too")
    gate.set()
    for sender in senders:
        sender.join(30)

    assert isinstance(outcomes[bad["id"]], StatementRefused)
    assert "HTTP 400" in str(outcomes[bad["id"]])
    assert {k: v for k, v in outcomes.items() if k != bad["id"]} == {s["id"]: 200 for s in good}
    assert lrs.stored == {s["id"] for s in good}
    # Everything that queued behind the first POST went out in the second, bad one included.
    assert len(lrs.batches[1]) == 8 - len(lrs.batches[0])


def test_conflict_is_delivered_and_no_answer_ends_in_lrs_unavailable(
    lrs_factory: Callable[..., StandInLrs],
) -> None:
    lrs = lrs_factory(lambda _s: 409)
    batcher = StatementBatcher(LrsClient(url=lrs.url, login="u", password="p"))
    assert batcher.send(statement()) == 409

    waits: list[float] = []
    gone = StatementBatcher(
        LrsClient(url="http://127.0.0.1:9/xAPI", login="u", password="p", timeout=2),
        tries=3,
        sleep=waits.append,
    )
    with pytest.raises(LrsUnavailable, match="3 tries"):
        gone.send(statement())
    assert len(waits) == 2 and waits[1] > waits[0] / 2  # backoff between the three tries


def test_wrong_credentials_keep_the_statement_and_name_the_settings(
    lrs_factory: Callable[..., StandInLrs],
) -> None:
    lrs = lrs_factory(lambda _s: 401)
    batcher = StatementBatcher(
        LrsClient(url=lrs.url, login="u", password="p"), tries=2, sleep=lambda _s: None
    )
    with pytest.raises(LrsUnavailable, match="XAPI_LRS_LOGIN"):
        batcher.send(statement())
    assert len(lrs.batches) == 1  # no retry here: the broker keeps it until the settings are fixed
