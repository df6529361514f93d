"""Player events -> xAPI 1.0.3 statements per the xAPI Video Profile (w3id.org/xapi/video).

The server builds the whole statement: the client only describes what happened in the player.
Its actor comes from the server (never the client: Pod's weak point was copying the browser's
JSON over the statement), and any key we do not know is refused by name rather than dropped,
so a typo in a player integration shows up at once instead of as missing analytics.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from vidfarm.errors import InvalidParameters

XAPI_VERSION = "1.0.3"
PROFILE = "https://w3id.org/xapi/video"
ACTIVITY_TYPE = "https://w3id.org/xapi/video/activity-type/video"
PROFILE_TYPE = "http://adlnet.gov/expapi/activities/profile"
EXTENSION_PREFIX = "https://w3id.org/xapi/video/extensions/"
SECRET_FILE = "xapi-actor-secret"  # noqa: S105 - a file name, not a secret

VERBS: dict[str, str] = {
    "initialized": "http://adlnet.gov/expapi/verbs/initialized",
    "played": "https://w3id.org/xapi/video/verbs/played",
    "paused": "https://w3id.org/xapi/video/verbs/paused",
    "seeked": "https://w3id.org/xapi/video/verbs/seeked",
    "interacted": "http://adlnet.gov/expapi/verbs/interacted",
    "completed": "http://adlnet.gov/expapi/verbs/completed",
    "terminated": "http://adlnet.gov/expapi/verbs/terminated",
}

# Event field -> (extension name, where it goes, JSON type check).
_Kind = Literal["number", "fraction", "string", "bool"]
RESULT_EXTENSIONS: dict[str, tuple[str, _Kind]] = {
    "time": ("time", "number"),
    "time_from": ("time-from", "number"),
    "time_to": ("time-to", "number"),
    "progress": ("progress", "fraction"),
    "played_segments": ("played-segments", "string"),
}
CONTEXT_EXTENSIONS: dict[str, tuple[str, _Kind]] = {
    "session_id": ("session-id", "string"),
    "length": ("length", "number"),
    "completion_threshold": ("completion-threshold", "fraction"),
    "volume": ("volume", "fraction"),
    "speed": ("speed", "string"),
    "quality": ("quality", "string"),
    "screen_size": ("screen-size", "string"),
    "video_playback_size": ("video-playback-size", "string"),
    "frame_rate": ("frame-rate", "number"),
    "full_screen": ("full-screen", "bool"),
    "cc_subtitle_enabled": ("cc-subtitle-enabled", "bool"),
    "cc_subtitle_lang": ("cc-subtitle-lang", "string"),
    "track": ("track", "string"),
    "user_agent": ("user-agent", "string"),
}
OTHER_FIELDS = frozenset({"video_id", "verb", "registration", "extensions"})
EVENT_FIELDS = frozenset(RESULT_EXTENSIONS) | frozenset(CONTEXT_EXTENSIONS) | OTHER_FIELDS
#: Keys only the server (actor) or the LRS (authority, stored) may set: named in the refusal.
SERVER_ONLY = ("actor", "authority", "stored", "id", "timestamp", "object", "context", "result")
_BY_EXTENSION = {
    name: field for field, (name, _) in {**RESULT_EXTENSIONS, **CONTEXT_EXTENSIONS}.items()
}
_SEGMENTS = re.compile(r"^(\d+(\.\d+)?\[\.\]\d+(\.\d+)?)(\[,\]\d+(\.\d+)?\[\.\]\d+(\.\d+)?)*$")
_MAX_STRING = 1000


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who watched, as the server knows it: a token's principal, or a browser session."""

    user_id: str | None  # the API token id; None for an anonymous viewer
    username: str


@dataclass(frozen=True, slots=True)
class ActorPolicy:
    """How actors are written: the settings VIDFARM_XAPI_ANONYMIZE_ACTOR / _ACTOR_NAME."""

    home_page: str
    secret: bytes
    anonymize: bool = True
    name_source: Literal["username", "uuid", "email"] = "username"

    def actor(self, viewer: Viewer, session_id: str | None) -> dict[str, Any]:
        """An xAPI Agent; anonymous viewers get one per player session (HMAC of its id)."""
        if viewer.user_id is None:
            if not session_id:
                raise InvalidParameters("session_id is required for an anonymous viewer")
            return self._account(self._hmac(f"session:{session_id}"))
        if self.anonymize:
            return self._account(self._hmac(f"user:{viewer.user_id}"))
        if self.name_source == "uuid":
            return self._account(str(uuid.uuid3(uuid.NAMESPACE_DNS, viewer.username)))
        if self.name_source == "email" and "@" in viewer.username:
            return {"objectType": "Agent", "mbox": f"mailto:{viewer.username}"}
        return self._account(viewer.username)

    def _hmac(self, value: str) -> str:
        return hmac.new(self.secret, value.encode(), hashlib.sha256).hexdigest()

    def _account(self, name: str) -> dict[str, Any]:
        return {"objectType": "Agent", "account": {"homePage": self.home_page, "name": name}}


def load_actor_secret(configured: str, data_dir: Path) -> bytes:
    """The HMAC key: the setting, else a random one kept in <data_dir>/xapi-actor-secret (0600).

    Generated once and reused, so anonymised names stay stable across restarts; it lives with
    the data, never in the repository.
    """
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile
        return _read_secret(path)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    value = path.read_text().strip()
    if len(value) < 32:
        raise InvalidParameters(f"{path} holds no usable secret (expected 64 hex characters)")
    return value.encode()


def _check(field: str, value: Any, kind: _Kind) -> Any:
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidParameters(f"{field} must be true or false, got {value!r}")
        return value
    if kind == "string":
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # players send speed as 1.5 or "1.5x"
        if not isinstance(value, str) or not value or len(value) > _MAX_STRING:
            raise InvalidParameters(f"{field} must be a non-empty string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise InvalidParameters(f"{field} must be a number, got {value!r}")
    if value < 0 or (kind == "fraction" and value > 1):
        bounds = "between 0 and 1" if kind == "fraction" else "at least 0"
        raise InvalidParameters(f"{field} must be {bounds}, got {value!r}")
    return round(float(value), 3)


def _unknown(keys: set[str], what: str) -> None:
    if not keys:
        return
    server_only = sorted(keys & set(SERVER_ONLY))
    if server_only:
        raise InvalidParameters(
            f"{', '.join(server_only)} cannot be set by the client (the server sets them)"
        )
    raise InvalidParameters(f"unknown {what}: {', '.join(sorted(keys))}")


def validate_event(event: Any) -> dict[str, Any]:
    """Check one player event; returns it with typed values and extensions folded in."""
    if not isinstance(event, Mapping):
        raise InvalidParameters("an event must be a JSON object")
    _unknown(set(event) - EVENT_FIELDS, "fields")
    checked: dict[str, Any] = {}
    extensions = event.get("extensions") or {}
    if not isinstance(extensions, Mapping):
        raise InvalidParameters("extensions must be an object")
    for key, value in extensions.items():
        short = key.removeprefix(EXTENSION_PREFIX) if isinstance(key, str) else key
        if short not in _BY_EXTENSION:
            _unknown({str(key)}, "extensions")
        checked[_BY_EXTENSION[short]] = value
    for key, value in event.items():
        if key != "extensions" and value is not None:
            checked[key] = value
    for field, (_, kind) in {**RESULT_EXTENSIONS, **CONTEXT_EXTENSIONS}.items():
        if field in checked:
            checked[field] = _check(field, checked[field], kind)
    video_id = checked.get("video_id")
    if not isinstance(video_id, str) or not video_id:
        raise InvalidParameters("video_id is required")
    verb = checked.get("verb")
    if verb not in VERBS:
        raise InvalidParameters(f"unknown verb {verb!r} (allowed: {', '.join(VERBS)})")
    if verb == "seeked" and not {"time_from", "time_to"} <= set(checked):
        raise InvalidParameters("seeked needs time_from and time_to")
    if verb in ("played", "paused") and "time" not in checked:
        raise InvalidParameters(f"{verb} needs time")
    segments = checked.get("played_segments")
    if segments is not None and not _SEGMENTS.match(segments):
        raise InvalidParameters(
            f"played_segments must read like 0[.]5.2[,]9.1[.]12, got {segments!r}"
        )
    if "registration" in checked:
        try:
            checked["registration"] = str(uuid.UUID(str(checked["registration"])))
        except ValueError:
            raise InvalidParameters(
                f"registration must be a UUID, got {checked['registration']!r}"
            ) from None
    return checked


@dataclass(frozen=True, slots=True)
class VideoActivity:
    """What the statement's object says about the video."""

    id: str  # the video's canonical URL
    name: str
    duration: float | None = None


def build_statement(
    event: Mapping[str, Any],
    *,
    actor: dict[str, Any],
    video: VideoActivity,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One statement from one validated event: a fresh UUID, the server's actor and clock."""
    verb = str(event["verb"])
    result_ext = {
        EXTENSION_PREFIX + name: event[field]
        for field, (name, _) in RESULT_EXTENSIONS.items()
        if field in event
    }
    context_ext = {
        EXTENSION_PREFIX + name: event[field]
        for field, (name, _) in CONTEXT_EXTENSIONS.items()
        if field in event
    }
    if video.duration is not None and "length" not in event:
        context_ext[EXTENSION_PREFIX + "length"] = round(video.duration, 3)
    context: dict[str, Any] = {
        "contextActivities": {"category": [{"id": PROFILE, "definition": {"type": PROFILE_TYPE}}]},
        "extensions": context_ext,
    }
    if "registration" in event:
        context["registration"] = event["registration"]
    statement: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "actor": actor,
        "verb": {"id": VERBS[verb], "display": {"en-US": verb}},
        "object": {
            "objectType": "Activity",
            "id": video.id,
            "definition": {"type": ACTIVITY_TYPE, "name": {"und": video.name}},
        },
        "context": context,
        "timestamp": (now or datetime.now(UTC)).astimezone(UTC).isoformat(),
    }
    result: dict[str, Any] = {}
    if result_ext:
        result["extensions"] = result_ext
    if verb == "completed":
        result["completion"] = True
    if result:
        statement["result"] = result
    return statement
