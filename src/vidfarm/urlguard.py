"""Server-side request forgery guard for URLs a client makes us fetch or call back.

A runner task names two URLs (`source_url`, `notify_url`) that this process will request. They
must not reach what only this machine can reach: loopback, the private network, link-local
addresses (the cloud metadata service lives there), multicast or reserved ranges.

Two layers: `check_url` refuses a bad URL at once with one clear line (scheme, host, every
address the host resolves to), and `guarded_client` checks the address again at the moment a
connection is opened, so a redirect or a DNS answer that changed since the check (DNS
rebinding) cannot reach a forbidden address either.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from vidfarm.errors import InvalidParameters

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Cloud metadata endpoints (AWS, GCP, Azure; AWS over IPv6; Alibaba).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
MAX_URL_CHARS = 4096


class ForbiddenAddress(httpcore.ConnectError):
    """A connection was about to be opened to an address the guard refuses."""


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why `address` may not be contacted, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 carried inside IPv6 (mapped ::ffff:a.b.c.d, 6to4 2002::/16, Teredo 2001::/32)
        # is judged as the IPv4 address it reaches.
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.sixtofour is not None:
            embedded = address_problem(address.sixtofour, allow_private=allow_private)
            if embedded:
                return f"a 6to4 address embedding {embedded}"
        elif address.teredo is not None:
            for inner in address.teredo:  # (server, client)
                embedded = address_problem(inner, allow_private=allow_private)
                if embedded:
                    return f"a Teredo address embedding {embedded}"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_loopback:
        return None if allow_private else "a loopback address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:
        return None if allow_private else "a private address"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise InvalidParameters(f"cannot resolve host {host!r}: {error}") from None
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise InvalidParameters(f"cannot resolve host {host!r}: no address")
    return found


def check_addresses(host: str, addresses: Iterable[IPAddress], *, allow_private: bool) -> None:
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            raise InvalidParameters(f"host {host!r} resolves to {address}, {problem}: refused")


def check_url(url: str, *, allow_private: bool, name: str = "url") -> str:
    """Return `url` if it is http(s) and every address its host resolves to is allowed.

    Raises InvalidParameters with one line naming `name` (e.g. "source_url") otherwise.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidParameters(f"{name}: a URL is required")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise InvalidParameters(f"{name}: URL longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidParameters(f"{name}: not a valid URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        # A short scheme only: the rest of a URL (a signed link, user:password@) may be secret.
        scheme = f", not {parts.scheme!r}" if 0 < len(parts.scheme) <= 8 else ""
        raise InvalidParameters(f"{name}: only http and https URLs are allowed{scheme}")
    host = parts.hostname
    if not host:
        raise InvalidParameters(f"{name}: the URL has no host")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        check_addresses(host, resolve(host, port), allow_private=allow_private)
    except InvalidParameters as error:
        raise InvalidParameters(f"{name}: {error}") from None
    return url


class GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, checks every address, then connects to an allowed one."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port)
            check_addresses(host, addresses, allow_private=self.allow_private)
        except InvalidParameters as error:
            raise ForbiddenAddress(str(error)) from None
        # TLS still verifies (and sends SNI for) the URL's host name, not this address.
        return super().connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guarded connection backend; environment proxies ignored."""

    def __init__(self, *, allow_private: bool) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def guarded_client(*, allow_private: bool, timeout: httpx.Timeout | float) -> httpx.Client:
    """An httpx client that never opens a connection to a forbidden address.

    It does not follow redirects: callers check each hop with `check_url` (for a clear
    error) and follow it themselves.
    """
    return httpx.Client(
        transport=GuardedTransport(allow_private=allow_private),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def is_forbidden(error: BaseException) -> bool:
    """Whether an httpx error came from the guard refusing an address."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ForbiddenAddress):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def redact_url(url: str) -> str:
    """The origin of a URL, for logs: its path and query may hold a secret (a signed link)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    return f"{parts.scheme}://{host}{port}/…"
