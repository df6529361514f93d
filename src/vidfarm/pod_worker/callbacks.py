"""Pod's REST callbacks, sent the way Pod's own worker should have sent them.

`POST {POD_API_URL}/store_remote_…/?id=N` with `Authorization: Token …` and a JSON body. Pod's
worker sends once and only logs a failure: the video then stays "encoding" forever. Here a
connection error or a 5xx is retried with backoff (Pod restarting, a proxy hiccup); a 4xx is
never retried: Pod has decided. A 400 to a repeated callback means Pod already imported the
result (`encoding_in_progress` is off): the work is done, not failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from vidfarm.errors import PermanentError, TransientError
from vidfarm.jobs import backoff_delay

log = logging.getLogger(__name__)


class PodRefused(PermanentError):
    """Pod answered a 4xx other than "already done": retrying cannot change its mind."""


class PodUnreachable(TransientError):
    """Pod did not answer usefully within the tries (connection errors, 5xx)."""


@dataclass(frozen=True)
class Answer:
    status: int
    already_done: bool  # 400 to a callback Pod has already taken


class PodApi:
    """Calls Pod's REST API back; one instance per worker process."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        tries: int = 8,
        retry_base: float = 2.0,
        retry_max: float = 120.0,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url.strip().rstrip("/")
        self._tries = tries
        self._retry_base, self._retry_max = retry_base, retry_max
        self._sleep = sleep
        self._client = httpx.Client(
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def post(self, endpoint: str, params: dict[str, Any], body: dict[str, Any]) -> Answer:
        """POST `body` to `{POD_API_URL}/{endpoint}/`, retrying what may pass on its own."""
        url = f"{self._url}/{endpoint}/"
        problem = ""
        for attempt in range(1, self._tries + 1):
            try:
                response = self._client.post(url, params=params, json=body)
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}".rstrip(": ")
            else:
                status = response.status_code
                if status < 300:
                    return Answer(status, already_done=False)
                detail = " ".join(response.text[:200].split())
                if status == 400:
                    log.info("Pod answered 400 to %s (already imported?): %s", endpoint, detail)
                    return Answer(status, already_done=True)
                if status < 500:
                    raise PodRefused(f"Pod refused {endpoint} {params}: HTTP {status} {detail}")
                problem = f"HTTP {status} {detail}"
            if attempt < self._tries:
                delay = backoff_delay(attempt, self._retry_base, self._retry_max)
                log.warning("Pod %s: %s; trying again in %.0f s", endpoint, problem, delay)
                self._sleep(delay)
        raise PodUnreachable(f"Pod {endpoint} {params}: {problem} ({self._tries} tries)")
