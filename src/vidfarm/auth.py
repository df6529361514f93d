"""API tokens: create, verify, list and revoke; each token carries one role.

A token reads ``vf_<id>_<secret>``. The id is public and only finds the row; the secret is
``secrets.token_urlsafe(32)`` (256 random bits) and only its SHA-256 is stored. A slow KDF
(bcrypt, scrypt, argon2) exists to protect low-entropy passwords from guessing; against a
256-bit random secret a single SHA-256 is already out of reach, and it keeps a request cheap.

Writing functions commit their own transaction, like those of `vidfarm.jobs`; give
`verify_token` a session of its own (the API dependencies do).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
import string
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from vidfarm.db import write_transaction
from vidfarm.errors import InvalidParameters, NotFound
from vidfarm.models import Token

log = logging.getLogger(__name__)

TOKEN_PREFIX = "vf_"  # noqa: S105 - a public marker, not a secret
TOKEN_ID_LENGTH = 12
# No "_" or "-" in ids, so "vf_<id>_<secret>" splits at the first "_" after the prefix.
TOKEN_ID_ALPHABET = string.ascii_lowercase + string.digits
NAME_MAX_CHARS = 128
# Longer than any token we issue by far; refused before hashing, so junk costs nothing.
TOKEN_MAX_CHARS = 256
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_ID_CHARS = frozenset(TOKEN_ID_ALPHABET)
# Compared against when no row matches, so an unknown id costs the same hash and compare.
_DUMMY_SHA256 = hashlib.sha256(b"vidfarm: no such token").hexdigest()


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, including tokens and operator actions
    USER = "user"  # upload videos, submit and follow jobs
    WORKER = "worker"  # report progress, completion and failure as a remote worker


def allows(role: Role | str | None, needed: Role) -> bool:
    """Whether a holder of `role` may do what needs `needed` (admin may do everything)."""
    return role is not None and role in (needed, Role.ADMIN)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; we only ever store UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise InvalidParameters(f"unknown role {role!r} (one of: {choices})") from None


def parse_token(plaintext: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token string, else None; never raises."""
    if (
        not isinstance(plaintext, str)
        or len(plaintext) > TOKEN_MAX_CHARS
        or not plaintext.isascii()
        or not plaintext.startswith(TOKEN_PREFIX)
    ):
        return None
    token_id, sep, secret = plaintext[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not secret or len(token_id) != TOKEN_ID_LENGTH or not set(token_id) <= _ID_CHARS:
        return None
    return token_id, secret


def create_token(session: Session, *, role: Role | str, name: str) -> tuple[str, Token]:
    """Create a token; the returned plaintext is the only copy of its secret."""
    checked = _role(role)
    name = " ".join(name.split())
    if len(name) > NAME_MAX_CHARS:
        raise InvalidParameters(f"token name longer than {NAME_MAX_CHARS} characters")
    token_id = "".join(secrets.choice(TOKEN_ID_ALPHABET) for _ in range(TOKEN_ID_LENGTH))
    secret = secrets.token_urlsafe(32)
    token = Token(
        id=token_id,
        name=name,
        role=checked.value,
        secret_sha256=_sha256(secret),
        created_at=_utcnow(),
    )
    with write_transaction(session):
        session.add(token)
    return f"{TOKEN_PREFIX}{token_id}_{secret}", token


def verify_token(session: Session, plaintext: str) -> Token | None:
    """The live token `plaintext` names, or None (malformed, unknown, wrong secret, revoked).

    The hash compare is constant-time and also runs when the id is unknown or the string is
    malformed, so response times do not tell which ids exist.
    """
    parsed = parse_token(plaintext)
    token_id, secret = parsed if parsed is not None else ("", "")
    token = session.get(Token, token_id, populate_existing=True) if parsed is not None else None
    expected = token.secret_sha256 if token is not None else _DUMMY_SHA256
    matches = hmac.compare_digest(_sha256(secret).encode(), expected.encode())
    if token is None or not matches or token.revoked_at is not None:
        return None
    _touch(session, token)
    return token


def _touch(session: Session, token: Token) -> None:
    """Record use, at most once per LAST_USED_RESOLUTION: no write on every request."""
    now = _utcnow()
    cutoff = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and _as_utc(token.last_used_at) > cutoff:
        return
    try:
        with write_transaction(session):
            session.execute(
                update(Token)
                .where(
                    Token.id == token.id,
                    or_(Token.last_used_at.is_(None), Token.last_used_at <= cutoff),
                )
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
    except OperationalError as error:  # bookkeeping only: never refuse a valid token for it
        log.warning("could not record use of token %s: %s", token.id, error)
        return
    set_committed_value(token, "last_used_at", now)


def list_tokens(session: Session, *, include_revoked: bool = True) -> list[Token]:
    """Tokens, oldest first."""
    stmt = select(Token).order_by(Token.created_at, Token.id)
    if not include_revoked:
        stmt = stmt.where(Token.revoked_at.is_(None))
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def revoke_token(session: Session, token_id: str) -> Token:
    """Revoke a token for good; revoking it again keeps the first revocation time."""
    with write_transaction(session):
        token = session.get(Token, token_id, populate_existing=True, with_for_update=True)
        if token is None:
            raise NotFound(f"no token {token_id}")
        if token.revoked_at is None:
            token.revoked_at = _utcnow()
    return token


def has_admin_token(session: Session) -> bool:
    """Whether anyone can administer the farm yet (`vidfarm serve` hints when not)."""
    stmt = select(Token.id).where(Token.role == Role.ADMIN.value, Token.revoked_at.is_(None))
    return session.scalar(stmt.limit(1)) is not None
