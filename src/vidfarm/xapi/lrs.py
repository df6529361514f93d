"""A small httpx client for a Learning Record Store's statements resource (xAPI 1.0.3).

It never raises on what the LRS answers: the outbox decides per status what happens to the
statements (delivered, dead, paused, retried), so the client only reports it faithfully.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from vidfarm.xapi.statements import XAPI_VERSION

NO_ANSWER = 0  # the status we record when the LRS did not answer (timeout, refused, reset)
_REASON_MAX_CHARS = 500


@dataclass(frozen=True, slots=True)
class LrsAnswer:
    status: int  # HTTP status, or NO_ANSWER
    reason: str  # one line: the LRS's own words, or the transport error


class LrsClient:
    """POSTs statements (one JSON array per request) and reads them back by id."""

    def __init__(self, *, url: str, login: str, password: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            auth=httpx.BasicAuth(login, password) if login or password else None,
            headers={"X-Experience-API-Version": XAPI_VERSION},
            timeout=timeout,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LrsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def post_statements(self, statements: list[dict[str, Any]]) -> LrsAnswer:
        try:
            response = self._client.post(f"{self.url}/statements", json=statements)
        except httpx.HTTPError as error:
            return LrsAnswer(NO_ANSWER, _one_line(f"{type(error).__name__}: {error}"))
        return LrsAnswer(response.status_code, _reason(response))

    def get_statement(self, statement_id: str) -> dict[str, Any] | None:
        """The stored statement, or None (fetched by statementId: works on every backend)."""
        response = self._client.get(f"{self.url}/statements", params={"statementId": statement_id})
        if response.status_code == 404:
            return None
        response.raise_for_status()
        body = response.json()
        if isinstance(body, dict) and "statements" in body:  # Ralph's fs backend answers a list
            found = [s for s in body["statements"] if s.get("id") == statement_id]
            return found[0] if found else None
        return body if isinstance(body, dict) else None

    def all_statements(self, *, page: int = 500) -> list[dict[str, Any]]:
        """Every statement the LRS holds, following `more` links."""
        statements: list[dict[str, Any]] = []
        response = self._client.get(f"{self.url}/statements", params={"limit": page})
        while True:
            response.raise_for_status()
            body = response.json()
            statements.extend(body.get("statements", []))
            more = body.get("more")
            if not more:
                return statements
            base = httpx.URL(self.url)
            response = self._client.get(base.join(more) if more.startswith("/") else more)


_WORDS = ("message", "error", "reason", "detail")


def _reason(response: httpx.Response) -> str:
    if response.status_code < 300:
        return ""
    try:
        body: Any = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _one_line(response.text or response.reason_phrase)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, dict):  # {"message": ...} and the like: its words, not a repr
        detail = next((detail[k] for k in _WORDS if isinstance(detail.get(k), str)), None) or (
            json.dumps(detail, ensure_ascii=False)
        )
    if isinstance(detail, list):  # FastAPI validation errors: say where and what
        detail = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', ()))}: {item.get('msg')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail[:3]
        )
    return _one_line(str(detail))


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _REASON_MAX_CHARS else line[: _REASON_MAX_CHARS - 1] + "…"
