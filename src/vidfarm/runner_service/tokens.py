"""The runner's client tokens: configured secrets, compared by SHA-256 in constant time.

A task remembers only the digest of the token that created it. Its end notification is sent
with that same token (Esup-Pod checks it against the token it uses for this runner), looked
up among the configured tokens at send time: no secret is ever written to the database.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

TOKEN_MAX_CHARS = 1024


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def match(configured: list[SecretStr], presented: str) -> str | None:
    """The digest of the configured token equal to `presented`, or None.

    Every configured token is compared (no early exit), each with hmac.compare_digest.
    """
    if not presented or len(presented) > TOKEN_MAX_CHARS:
        return None
    wanted = digest(presented)
    found: str | None = None
    for token in configured:
        candidate = digest(token.get_secret_value())
        if hmac.compare_digest(candidate, wanted):
            found = candidate
    return found


def secret_for(configured: list[SecretStr], token_sha256: str) -> str | None:
    """The configured token whose digest is `token_sha256` (None if it was removed)."""
    for token in configured:
        value = token.get_secret_value()
        if hmac.compare_digest(digest(value), token_sha256):
            return value
    return None
