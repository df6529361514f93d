"""Log redaction: what a secret looks like in a log line, and that it is masked."""

from __future__ import annotations

import logging

import pytest

from vidfarm.api import redact


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '127.0.0.1 - "GET /videos/stream/a.mp4?token=vf_abcdefghijkl_S3cr3t-x HTTP/1.1" 200',
            '127.0.0.1 - "GET /videos/stream/a.mp4?token=[redacted] HTTP/1.1" 200',
        ),
        ("Authorization: Bearer vf_abcdefghijkl_S3cr3t", "Authorization: Bearer [redacted]"),
        ("token vf_abcdefghijkl_S3cr3t-_x refused", "token vf_abcdefghijkl_[redacted] refused"),
        (
            "GET /media/s/1700000000/AbC-_123/0123/j/master.m3u8",
            "GET /media/s/1700000000/[redacted]/0123/j/master.m3u8",
        ),
        ("GET /runner/source/abc/s3cret/x.mp4", "GET /runner/source/abc/[redacted]/x.mp4"),
        (
            "https://s3/b/k?X-Amz-Signature=ff00&a=1",
            "https://s3/b/k?X-Amz-Signature=[redacted]&a=1",
        ),
        ("nothing secret here: /videos/stream/a.mp4", "nothing secret here: /videos/stream/a.mp4"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact.redact(line) == expected


class Keep(logging.Handler):
    """The messages a logger hands its own handlers (whatever other tests did to propagation)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_every_log_record_is_redacted() -> None:
    redact.install()
    logger = logging.getLogger("uvicorn.access")  # uvicorn's own config stops its propagation
    keep, level, disabled = Keep(), logger.level, logger.disabled
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    try:
        logger.info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", "/x?token=vf_abcdefghijkl_S3", "1.1", 200
        )
    finally:
        logger.removeHandler(keep)
        logger.setLevel(level)
        logger.disabled = disabled
    assert keep.messages == ['127.0.0.1 - "GET /x?token=[redacted] HTTP/1.1" 200']
