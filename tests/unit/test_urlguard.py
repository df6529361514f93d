"""The SSRF guard: which URLs and addresses a runner may contact, checked for real."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from vidfarm.errors import InvalidParameters
from vidfarm.urlguard import address_problem, check_url, guarded_client, is_forbidden


@pytest.mark.parametrize(
    ("address", "private_ok", "problem"),
    [
        ("93.184.216.34", False, None),
        ("2606:4700::1111", False, None),
        ("127.0.0.1", False, "a loopback address"),
        ("127.0.0.1", True, None),
        ("::1", False, "a loopback address"),
        ("10.1.2.3", False, "a private address"),
        ("192.168.0.10", True, None),
        ("100.64.0.1", False, "a private address"),  # carrier-grade NAT
        ("fd12::1", False, "a private address"),
        ("169.254.169.254", True, "a cloud metadata address"),
        ("169.254.1.1", True, "a link-local address"),
        ("fe80::1", True, "a link-local address"),
        ("fd00:ec2::254", True, "a cloud metadata address"),
        ("224.0.0.1", True, "a multicast address"),
        ("0.0.0.0", True, "an unspecified address"),
        ("240.0.0.1", True, "a reserved address"),
        ("::ffff:127.0.0.1", False, "a loopback address"),  # IPv4-mapped IPv6
        ("::ffff:169.254.169.254", True, "a cloud metadata address"),
        # 6to4 (2002::/16) and Teredo (2001::/32) carry an IPv4 address: judged by it.
        ("2002:7f00:1::1", False, "a 6to4 address embedding a loopback address"),
        ("2002:a00:1::1", False, "a 6to4 address embedding a private address"),
        ("2002:a9fe:a9fe::1", True, "a 6to4 address embedding a cloud metadata address"),
        ("2002:5db8:d822::1", False, None),  # 6to4 of a public address
        ("2001:0:808:808::f5ff:fffe", False, "a Teredo address embedding a private address"),
    ],
)
def test_address_rules(address: str, private_ok: bool, problem: str | None) -> None:
    ip = ipaddress.ip_address(address)
    assert address_problem(ip, allow_private=private_ok) == problem


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https URLs are allowed"),
        ("ftp://example.org/x", "only http and https URLs are allowed"),
        ("gopher://127.0.0.1:70/", "only http and https URLs are allowed"),
        ("http:///nohost", "the URL has no host"),
        ("http://127.0.0.1:8000/", "127.0.0.1, a loopback address: refused"),
        ("http://localhost/", "a loopback address: refused"),
        ("http://[::1]/", "a loopback address: refused"),
        ("http://10.0.0.1/", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a cloud metadata address"),
        ("http://0x7f000001/", "loopback"),  # 127.0.0.1 spelt in hex
        ("http://host.invalid/", "cannot resolve host"),
        ("http://x:99999/", "not a valid URL"),
        ("", "a URL is required"),
    ],
)
def test_check_url_refuses(url: str, message: str) -> None:
    with pytest.raises(InvalidParameters) as raised:
        check_url(url, allow_private=False, name="source_url")
    text = str(raised.value)
    assert text.startswith("source_url: ") and message in text and "\n" not in text


def test_check_url_accepts() -> None:
    assert check_url(" http://127.0.0.1:8000/x ", allow_private=True) == "http://127.0.0.1:8000/x"
    assert check_url("https://93.184.216.34/video.mp4", allow_private=False).startswith("https")
    with pytest.raises(InvalidParameters, match=r"cloud metadata address"):
        check_url("http://169.254.169.254/", allow_private=True)  # never, whatever the setting


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_the_client_checks_again_when_it_connects(local_server: str) -> None:
    """A URL that passed (or skipped) the check, then resolved elsewhere, still cannot
    reach a forbidden address: the connection itself is refused."""
    with guarded_client(allow_private=True, timeout=5) as client:
        assert client.get(local_server).text == "hello"
    with (
        guarded_client(allow_private=False, timeout=5) as client,
        pytest.raises(httpx.ConnectError) as raised,
    ):
        client.get(local_server)
    assert is_forbidden(raised.value)
    assert "loopback address: refused" in str(raised.value)


def test_the_client_follows_no_redirect_and_ignores_proxies(
    local_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://169.254.169.254:3128")
    with guarded_client(allow_private=True, timeout=5) as client:
        assert client.follow_redirects is False
        assert client.get(local_server).status_code == 200  # not sent to the "proxy"
