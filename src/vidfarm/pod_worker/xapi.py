"""Pod's `send_xapi_statement_task`: statements to Pod's LRS, delivered, batched, never dropped.

Pod's worker POSTs each statement alone, without the `X-Experience-API-Version` header the xAPI
spec requires, and logs any failure. Here every task of a worker process hands its statement to
one `StatementBatcher`: whatever has queued up (the worker reserves up to a batch of messages,
one per thread) leaves in one POST, with the header and Basic auth. 409 (the LRS has the id
already) counts as delivered; a batch the LRS refuses is halved until the statement it refuses
is alone, and only that one is reported refused; no answer, 408, 429 and 5xx are retried with
backoff, the statements that queue up meanwhile joining the next try, so the backlog drains in
full batches as soon as the LRS answers. After the tries the task hands its message back to the
broker for later (`LrsUnavailable`): statements wait in Redis, not in the worker, while the LRS
is down. 401/403/404/405 say the worker's settings are wrong, not the statement: the message
goes back to the broker at once, to wait for the fix.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram

from vidfarm.errors import PermanentError, TransientError
from vidfarm.jobs import backoff_delay
from vidfarm.pod_worker.settings import PodSettings
from vidfarm.xapi.lrs import NO_ANSWER, LrsAnswer, LrsClient
from vidfarm.xapi.outbox import CONFLICT, DELIVERED_STATUSES, PAUSE_STATUSES, REFUSED_STATUSES

log = logging.getLogger(__name__)

POSTS = Counter("vidfarm_pod_xapi_posts_total", "POSTs to the LRS, by HTTP status", ["status"])
BATCH = Histogram(
    "vidfarm_pod_xapi_batch_statements",
    "Statements per POST to the LRS",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)


class StatementRefused(PermanentError):
    """The LRS refuses this statement: sending it again cannot help."""


class LrsUnavailable(TransientError):
    """No useful answer from the LRS within the tries: the broker keeps the statement."""


def lrs_base(url: str) -> str:
    """Pod's XAPI_LRS_URL is the statements resource itself (`…/xAPI/statements/`)."""
    base = url.strip().rstrip("/")
    return base.removesuffix("/statements")


@dataclass(eq=False)
class _Waiting:
    """One task's statement, and the outcome its task waits for."""

    statement: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    status: int = 0
    error: Exception | None = None

    def finish(self, status: int = 0, error: Exception | None = None) -> None:
        self.status, self.error = status, error
        self.done.set()


class StatementBatcher:
    """One sender thread per process: the statements waiting at a POST go out together."""

    def __init__(
        self,
        client: LrsClient,
        *,
        batch_size: int = 50,
        tries: int = 6,
        retry_base: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.batch_size = batch_size
        self.tries = tries
        self.retry_base = retry_base
        self.sleep = sleep
        self._queue: queue.SimpleQueue[_Waiting] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pod-xapi-sender", daemon=True)
        self._thread.start()

    def send(self, statement: dict[str, Any]) -> int:
        """Deliver one statement (with whatever else is waiting); the LRS's status, or raise."""
        waiting = _Waiting(statement)
        self._queue.put(waiting)
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        return waiting.status

    def waiting(self) -> int:
        """Statements queued for the next POST."""
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            self._take_more(batch)
            try:
                self._deliver(batch)
            except Exception as error:  # a bug must not leave tasks waiting forever
                log.exception("xAPI sender failed")
                for waiting in batch:
                    if not waiting.done.is_set():
                        waiting.finish(error=LrsUnavailable(f"xAPI sender failed: {error}"))

    def _take_more(self, batch: list[_Waiting]) -> None:
        while len(batch) < self.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _deliver(self, batch: list[_Waiting], *, joinable: bool = True) -> None:
        """Send `batch` until it is delivered, refused or out of tries; newcomers may join."""
        for attempt in range(1, self.tries + 1):
            answer = self._post(batch)
            status = answer.status
            if status in DELIVERED_STATUSES or (status == CONFLICT and len(batch) == 1):
                for waiting in batch:
                    waiting.finish(status)
                return
            if status in REFUSED_STATUSES or status == CONFLICT:
                if len(batch) == 1:
                    batch[0].finish(
                        error=StatementRefused(f"LRS refused statement: {_says(answer)}")
                    )
                    return
                middle = len(batch) // 2
                self._deliver(batch[:middle], joinable=False)
                self._deliver(batch[middle:], joinable=False)
                return
            if status in PAUSE_STATUSES:  # our settings are wrong: trying again cannot help
                break
            if attempt < self.tries:
                self.sleep(backoff_delay(attempt, self.retry_base, 60.0))
                if joinable:  # what queued up meanwhile goes out with the next try
                    self._take_more(batch)
        hint = (
            " (check XAPI_LRS_URL, XAPI_LRS_LOGIN, XAPI_LRS_PWD)"
            if status in PAUSE_STATUSES
            else ""
        )
        for waiting in batch:
            waiting.finish(error=LrsUnavailable(f"LRS: {_says(answer)}{hint}, {attempt} tries"))

    def _post(self, batch: list[_Waiting]) -> LrsAnswer:
        answer = self.client.post_statements([waiting.statement for waiting in batch])
        POSTS.labels(str(answer.status) if answer.status != NO_ANSWER else "no answer").inc()
        BATCH.observe(len(batch))
        return answer


def _says(answer: LrsAnswer) -> str:
    return f"HTTP {answer.status} {answer.reason}" if answer.status else answer.reason


_batcher: StatementBatcher | None = None
_batcher_lock = threading.Lock()


def batcher_for(pod: PodSettings, batch_size: int) -> StatementBatcher:
    """The process's one batcher (made at the first statement, as the settings say)."""
    global _batcher
    with _batcher_lock:
        if _batcher is None:
            if not pod.lrs_url:
                raise PermanentError("XAPI_LRS_URL is not set: Pod's statements have nowhere to go")
            client = LrsClient(
                url=lrs_base(pod.lrs_url), login=pod.lrs_login, password=pod.lrs_password
            )
            _batcher = StatementBatcher(client, batch_size=batch_size)
        return _batcher
