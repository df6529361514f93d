"""Storage for tests, parametrised over a local folder and S3.

S3 is moto's server mode: a real S3-compatible HTTP server on a free loopback port, so boto3
goes through sockets, signing, multipart and presigned URLs exactly as against MinIO. It runs
as a subprocess (not ThreadedMotoServer) because moto keeps objects in RAM: in our process it
would spoil the constant-memory measurements. Each test gets a fresh bucket, emptied and
deleted afterwards so the server's memory does not grow over the session.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import free_port
from vidfarm.storage import LocalStorage, Storage

S3_ACCESS_KEY = "vidfarm-test"
S3_SECRET_KEY = "vidfarm-test-secret"
STORAGE_PARAMS = ["local", "s3"]


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"moto_server did not listen on 127.0.0.1:{port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server running for the whole test session."""
    if importlib.util.find_spec("moto") is None:
        message = "moto is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set: S3 tests are required)")
        pytest.skip(message)
    for _ in range(3):  # another process may take the free port before moto binds it
        port = free_port()
        log = tmp_path_factory.mktemp("moto") / "moto_server.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_listening(process, port, log)
        except pytest.fail.Exception:
            process.kill()
            process.wait()
            continue
        break
    else:
        pytest.fail("moto_server could not start on a free port")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_s3_storage(endpoint: str, bucket: str, **options: object) -> Storage:
    from vidfarm.storage.s3 import S3Storage

    return S3Storage(
        bucket=bucket,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id=S3_ACCESS_KEY,
        secret_access_key=S3_SECRET_KEY,
        **options,  # type: ignore[arg-type]
    )


def _empty_and_drop(storage: Storage) -> None:
    client = storage.client  # type: ignore[attr-defined]
    bucket = storage.bucket  # type: ignore[attr-defined]
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_storage(s3_endpoint: str) -> Iterator[Storage]:
    """An S3Storage on a bucket of its own, created for this test and dropped after it."""
    storage = make_s3_storage(s3_endpoint, f"vidfarm-test-{uuid.uuid4().hex[:12]}")
    storage.ensure_bucket()  # type: ignore[attr-defined]
    yield storage
    _empty_and_drop(storage)


@pytest.fixture(params=STORAGE_PARAMS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each test that takes `storage` runs once on a local folder and once on S3."""
    if request.param == "s3":
        s3: Storage = request.getfixturevalue("s3_storage")
        return s3
    return LocalStorage(tmp_path / "media")
