"""Pod's `send_xapi_statement_task`: one statement to Pod's LRS, delivered, never dropped quietly.

Pod's worker POSTs once, without the `X-Experience-API-Version` header the xAPI spec requires,
and logs any failure. Here: the header, Basic auth, retries with backoff on no answer, 5xx and
429, 409 (the LRS has it already) counted as delivered; a statement the LRS refuses (400, 422)
is logged once with the LRS's reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from vidfarm.errors import PermanentError, TransientError
from vidfarm.jobs import backoff_delay
from vidfarm.pod_worker.settings import PodSettings
from vidfarm.xapi.lrs import NO_ANSWER, LrsClient

log = logging.getLogger(__name__)

DELIVERED = frozenset({200, 204, 409})


class StatementRefused(PermanentError):
    """The LRS refuses this statement: sending it again cannot help."""


class LrsUnavailable(TransientError):
    """No useful answer from the LRS within the tries."""


def lrs_base(url: str) -> str:
    """Pod's XAPI_LRS_URL is the statements resource itself (`…/xAPI/statements/`)."""
    base = url.strip().rstrip("/")
    return base.removesuffix("/statements")


def send_statement(
    pod: PodSettings,
    statement: dict[str, Any],
    *,
    tries: int = 6,
    retry_base: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST one statement; the LRS's status once delivered, else a classified error."""
    if not pod.lrs_url:
        raise PermanentError("XAPI_LRS_URL is not set: Pod's statements have nowhere to go")
    with LrsClient(
        url=lrs_base(pod.lrs_url), login=pod.lrs_login, password=pod.lrs_password
    ) as client:
        for attempt in range(1, tries + 1):
            answer = client.post_statements([statement])
            if answer.status in DELIVERED:
                return answer.status
            transient = answer.status in (NO_ANSWER, 408, 429) or answer.status >= 500
            if not transient:
                raise StatementRefused(
                    f"LRS refused statement: HTTP {answer.status} {answer.reason}"
                )
            if attempt < tries:
                sleep(backoff_delay(attempt, retry_base, 60.0))
    raise LrsUnavailable(f"LRS: HTTP {answer.status} {answer.reason} ({tries} tries)")
