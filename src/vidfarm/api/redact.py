"""No secret in a log line: tokens, signatures and secret URL parts are masked at the source.

A log record factory (process-wide, so uvicorn's access log, httpx's request log and our own
loggers are all covered) rewrites each record's message once it is created.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "[redacted]"
_PATTERNS = (
    # A query parameter that carries a secret: ?token=..., X-Amz-Signature=...
    re.compile(
        r"(?i)([?&;](?:token|access_token|api_key|apikey|secret|signature|sig|md5"
        r"|x-amz-signature|x-amz-credential|x-amz-security-token)=)[^&\s\"'#]+"
    ),
    # vidfarm API tokens: vf_<id>_<secret> (the id is public and stays)
    re.compile(r"(vf_[a-z0-9]{12}_)[A-Za-z0-9_-]+"),
    # A signed media path: /media/s/<expires>/<signature>/
    re.compile(r"(/media/s/[0-9]{1,12}/)[A-Za-z0-9_-]+"),
    # A runner source or input link: /runner/source/<assignment>/<secret>/
    re.compile(r"(/runner/(?:source|input)/[A-Za-z0-9_-]+/)[A-Za-z0-9_-]+"),
    # Authorization headers quoted in a message
    re.compile(r"(?i)(\bBearer\s+)[^\s\"',]+"),
)
_installed = False


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    return text


def install() -> None:
    """Mask secrets in every log record created from now on (idempotent)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
