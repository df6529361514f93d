"""Downloading a task's source from a real loopback server: limits, errors, redirects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vidfarm.errors import InvalidParameters, JobCancelled, TooLarge, VidfarmError
from vidfarm.runner_service.fetch import SourceRefused, SourceUnavailable, download

PAYLOAD = b"x" * 100_000
SECRET = "s3cr3t-in-the-link"


class Source(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path
        if path.startswith("/redirect-to-metadata"):
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif path.startswith("/redirect-to-file"):
            self._redirect("file:///etc/passwd")
        elif path.startswith("/redirect-to-secret"):
            self._redirect(f"ftp://user:{SECRET}@files.example.org/{SECRET}.mp4?sig={SECRET}")
        elif path.startswith("/redirect-ok"):
            self._redirect("/files/lecture%20one.mp4")
        elif path.startswith("/loop"):
            self._redirect("/loop")
        elif path.startswith("/status/"):
            self.send_response(int(path.rsplit("/", 1)[-1]))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/chunked"):  # no Content-Length: the limit is counted
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(PAYLOAD), PAYLOAD))
            self.wfile.write(b"0\r\n\r\n")
        else:
            data = b"" if path.startswith("/empty") else PAYLOAD
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            if path.startswith("/named"):
                self.send_header("Content-Disposition", 'attachment; filename="talk.mkv"')
            self.end_headers()
            self.wfile.write(data)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Source)
    httpd.daemon_threads = True
    httpd.handle_error = lambda *_: None  # type: ignore[method-assign]  # clients that quit early
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def fetch(url: str, target: Path, **kw: Any) -> str:
    options: dict[str, Any] = {"max_bytes": 500_000, "allow_private": True, "timeout": 10}
    return download(url, target, **{**options, **kw})


def test_download_and_file_name(server: str, tmp_path: Path) -> None:
    assert fetch(f"{server}/files/clip.mp4?x=1", tmp_path / "a") == "clip.mp4"
    assert (tmp_path / "a").read_bytes() == PAYLOAD
    assert fetch(f"{server}/named", tmp_path / "b") == "talk.mkv"
    assert fetch(f"{server}/redirect-ok", tmp_path / "c") == "lecture one.mp4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no .part left


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/status/404", SourceRefused, "source_url answered 404 Not Found"),
        ("/status/403", SourceRefused, "answered 403"),
        ("/status/503", SourceUnavailable, "answered 503"),
        ("/status/429", SourceUnavailable, "answered 429"),
        ("/empty", SourceRefused, "empty file"),
        ("/chunked", TooLarge, "more than the limit of 500000 bytes"),
        ("/redirect-to-metadata", InvalidParameters, "cloud metadata address"),
        ("/redirect-to-file", InvalidParameters, "only http and https"),
        ("/loop", SourceRefused, "more than 5 redirects"),
    ],
)
def test_failures_leave_nothing(
    server: str, tmp_path: Path, path: str, error: type[VidfarmError], message: str
) -> None:
    with pytest.raises(error) as raised:
        fetch(f"{server}{path}", tmp_path / "source")
    assert message in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_no_error_message_quotes_a_source_url(server: str, tmp_path: Path) -> None:
    """Source URLs are often signed links: an error names the scheme, never the URL."""
    with pytest.raises(InvalidParameters) as raised:
        fetch(f"{server}/redirect-to-secret", tmp_path / "source")
    assert str(raised.value) == "source_url: only http and https URLs are allowed, not 'ftp'"
    for url in (
        f"ftp://{SECRET}@x/{SECRET}",
        f"{SECRET}:/{SECRET}",
        f"http://127.0.0.1:9/{SECRET}",
    ):
        with pytest.raises(VidfarmError) as raised:
            fetch(url, tmp_path / "source")
        assert SECRET not in str(raised.value)


def test_declared_size_over_the_limit_is_refused_before_reading(
    server: str, tmp_path: Path
) -> None:
    with pytest.raises(TooLarge, match="100000 bytes, more than the limit of 1000"):
        fetch(f"{server}/files/x", tmp_path / "source", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_transient_and_loopback_refused_when_not_allowed(
    server: str, tmp_path: Path
) -> None:
    with pytest.raises(SourceUnavailable, match="download failed"):
        fetch("http://127.0.0.1:9/x", tmp_path / "source")
    with pytest.raises(InvalidParameters, match="loopback address: refused"):
        fetch(f"{server}/files/x", tmp_path / "source", allow_private=False)
    assert list(tmp_path.iterdir()) == []


def test_stop_while_downloading(server: str, tmp_path: Path) -> None:
    with pytest.raises(JobCancelled):
        fetch(f"{server}/chunked", tmp_path / "source", max_bytes=10**7, should_stop=lambda: True)
    assert list(tmp_path.iterdir()) == []
