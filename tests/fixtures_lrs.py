"""A stand-in LRS on loopback: answers each POST as a test says and keeps what it saw.

Ralph (fixtures_ralph.py) is the real LRS of the tests; this one exists for what Ralph cannot be
told to do: refuse a given statement, fail for a while, hold a request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class StandInLrs(ThreadingHTTPServer):
    """Answers each POST with `answer(statements)`; keeps the batches it saw."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], int]) -> None:
        self.answer = answer
        self.batches: list[list[str]] = []
        self.stored: set[str] = set()
        lrs = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                statements = json.loads(body)
                status = lrs.answer(statements) if self.headers["X-Experience-API-Version"] else 400
                lrs.batches.append([s["id"] for s in statements])
                if status == 200:
                    lrs.stored.update(s["id"] for s in statements)
                payload = json.dumps(
                    [s["id"] for s in statements] if status == 200 else {"detail": "no"}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/xAPI"


@pytest.fixture
def lrs_factory() -> Iterator[Callable[[Callable[[list[dict[str, Any]]], int]], StandInLrs]]:
    servers: list[StandInLrs] = []

    def make(answer: Callable[[list[dict[str, Any]]], int]) -> StandInLrs:
        servers.append(StandInLrs(answer))
        return servers[-1]

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()
