"""Reaching the real services of this machine (PostgreSQL, Redis, RabbitMQ).

A test that needs one skips with a visible reason when it is absent, and fails when CI is set:
CI must never pass by skipping what it was meant to check.
"""

from __future__ import annotations

import os
import socket

import pytest


def free_port() -> int:
    """A loopback port nobody listens on right now (for the servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: this service is required)")
    pytest.skip(message)
