"""The load client of load_viewers.py: N simulated HLS viewers plus uploads and job polling.

Runs in its own process (`load_viewers.py --client SPEC`), prints one JSON object. Loopback
only: it refuses any host but 127.0.0.1. It stops by itself after `seconds`.

The HTTP client is a minimal keep-alive HTTP/1.1 GET over asyncio streams, one connection per
viewer as a browser would hold: httpx costs ~1 ms of client CPU per request, which on this
2-core machine would make the client, not the server, the bottleneck at a few hundred viewers.
Responses must carry Content-Length (vidfarm's and nginx's media answers do).
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

SEGMENT_EVERY = 4.0  # a player fetches the next 4 s segment every 4 s
TIMEOUT = 10.0


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: str = "") -> tuple[int, bytes]:
        for attempt in (1, 2):  # a keep-alive connection the server closed: reconnect once
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None and self.writer is not None
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n{headers}\r\n"
            try:
                self.writer.write(request.encode())
                await self.writer.drain()
                return await self._response(self.reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        closing = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                closing = True
        body = await reader.readexactly(length) if length else b""
        if closing:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Tally:
    segment_ms: list[float] = field(default_factory=list)
    playlist_ms: list[float] = field(default_factory=list)
    poll_ms: list[float] = field(default_factory=list)
    upload_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    late_ms: list[float] = field(default_factory=list)  # how late the client issued a segment
    requests: int = 0

    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1


def _relative(base: str, uri: str) -> str:
    return str(httpx.URL(base).join(uri).raw_path.decode())


async def _timed(tally: Tally, bucket: list[float], connection: Connection, path: str) -> bytes:
    start = time.perf_counter()
    tally.requests += 1
    try:
        status, body = await asyncio.wait_for(connection.get(path), TIMEOUT)
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
        connection.close()
        tally.error(type(error).__name__)
        return b""
    bucket.append((time.perf_counter() - start) * 1000)
    if status >= 400:
        tally.error(f"HTTP {status}")
        return b""
    return body


async def viewer(port: int, master: str, deadline: float, tally: Tally) -> None:
    await asyncio.sleep(random.uniform(0, SEGMENT_EVERY))  # viewers do not start in step
    connection = Connection(port)
    top = (await _timed(tally, tally.playlist_ms, connection, master)).decode()
    variants = [line for line in top.splitlines() if line.endswith(".m3u8")]
    if not variants:
        return
    variant = _relative(master, variants[0])
    playlist = (await _timed(tally, tally.playlist_ms, connection, variant)).decode()
    segments = [_relative(variant, x) for x in playlist.splitlines() if x and x[0] != "#"]
    index = random.randrange(len(segments)) if segments else 0
    due = time.perf_counter()
    while segments and due < deadline:
        tally.late_ms.append(max(0.0, time.perf_counter() - due) * 1000)
        await _timed(tally, tally.segment_ms, connection, segments[index % len(segments)])
        index += 1
        due += SEGMENT_EVERY
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    connection.close()


async def poller(port: int, path: str, token: str, deadline: float, tally: Tally) -> None:
    """A dashboard or platform polling a job's status once a second."""
    connection = Connection(port)
    auth = f"Authorization: Bearer {token}\r\n"
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        tally.requests += 1
        try:
            status, _ = await asyncio.wait_for(connection.get(path, auth), TIMEOUT)
            tally.poll_ms.append((time.perf_counter() - start) * 1000)
            if status >= 400:
                tally.error(f"poll HTTP {status}")
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as error:
            connection.close()
            tally.error(f"poll {type(error).__name__}")
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - start)))


async def uploader(
    base: str, token: str, clip: str, every: float, deadline: float, t: Tally
) -> None:
    """A platform sending a new video every `every` seconds (auto-encode is off in the bench)."""
    with open(clip, "rb") as handle:
        payload = handle.read()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=60) as client:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            t.requests += 1
            try:
                answer = await client.post(
                    f"{base}/videos/upload",
                    headers=headers,
                    files={"file": ("lecture.mp4", payload, "video/mp4")},
                )
                if answer.status_code >= 300:
                    t.error(f"upload HTTP {answer.status_code}")
            except httpx.HTTPError as error:
                t.error(f"upload {type(error).__name__}")
            t.upload_ms.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - start)))


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    base = spec["base"]
    parts = urlsplit(base)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise SystemExit("the load client only talks to 127.0.0.1:<port> (loopback)")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tally = Tally()
    deadline = time.perf_counter() + spec["seconds"]
    tasks = [viewer(parts.port, spec["master"], deadline, tally) for _ in range(spec["viewers"])]
    tasks += [
        poller(parts.port, spec["poll_path"], spec["token"], deadline, tally)
        for _ in range(spec["pollers"])
    ]
    if spec["upload_every"] > 0:
        tasks.append(
            uploader(
                base, spec["token"], spec["upload_file"], spec["upload_every"], deadline, tally
            )
        )
    began = time.perf_counter()
    await asyncio.gather(*tasks)
    return {**tally.__dict__, "elapsed": time.perf_counter() - began}
