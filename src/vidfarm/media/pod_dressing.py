"""Pod's two dressing wire formats, read into one `Dressing` (see docs/pod-compose.md).

Celery (`start_encoding_task`): `json_dressing` is `Dressing.to_json()` and `dressing_input`
is ready ffmpeg text, ` -i "<abs path>"` per file (watermark, opening, ending). That text is
never run: it is split like a shell would (shlex) and every token pair must be `-i <path>`
to an existing file under an allowed folder. Runner (`POST /task/execute`):
`parameters.dressing` is a JSON string of URLs; `RemoteDressing` names them, the adapter
fetches them, `resolve()` makes the `Dressing`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidParameters
from vidfarm.media.compose import Corner, Dressing, Watermark

#: Pod's display labels (English, French) for each position, which older payloads carry.
POSITION_LABELS = {
    "top right": Corner.TOP_RIGHT,
    "top left": Corner.TOP_LEFT,
    "bottom right": Corner.BOTTOM_RIGHT,
    "bottom left": Corner.BOTTOM_LEFT,
    "en haut à droite": Corner.TOP_RIGHT,
    "en haut à gauche": Corner.TOP_LEFT,
    "en bas à droite": Corner.BOTTOM_RIGHT,
    "en bas à gauche": Corner.BOTTOM_LEFT,
}
ROLES = ("watermark", "opening", "ending")
_PERCENT = re.compile(r"^\d{1,3}$")


def check_local_file(value: str, roots: Sequence[Path], role: str) -> Path:
    """An absolute path, resolved (symlinks followed), to a regular file under one root."""
    if not roots:
        raise InvalidParameters(f"{role}: no folder is allowed for Pod's files (configuration)")
    if "\x00" in value or not value.startswith("/"):
        raise InvalidParameters(f"{role}: {value!r} is not an absolute path")
    path = Path(value).resolve()
    if not any(path.is_relative_to(Path(root).resolve()) for root in roots):
        raise InvalidParameters(f"{role}: {value!r} is outside the allowed folders")
    if not path.is_file():
        raise InvalidParameters(f"{role}: {value!r} is not an existing file")
    return path


def parse_dressing_input(text: str, roots: Sequence[Path]) -> list[Path]:
    """Pod's ` -i "<path>"` pieces as checked paths; anything else is refused."""
    try:
        tokens = shlex.split(text or "", comments=False, posix=True)
    except ValueError as error:
        raise InvalidParameters(f"dressing_input: not Pod's -i list ({error})") from None
    if len(tokens) % 2:
        raise InvalidParameters("dressing_input: expected pairs of -i <path>")
    paths = []
    for flag, value in zip(tokens[::2], tokens[1::2], strict=True):
        if flag != "-i":
            raise InvalidParameters(f"dressing_input: only -i <path> is accepted, not {flag!r}")
        paths.append(check_local_file(value, roots, "dressing_input"))
    return paths


def dressing_from_celery(
    json_dressing: Mapping[str, Any] | None, dressing_input: str, roots: Sequence[Path]
) -> Dressing | None:
    """`start_encoding_task`'s `json_dressing` + `dressing_input` kwargs; None when absent."""
    if json_dressing is None:
        if (dressing_input or "").strip():
            raise InvalidParameters("dressing_input: given without json_dressing")
        return None
    if not isinstance(json_dressing, Mapping):
        raise InvalidParameters("json_dressing: expected an object (Dressing.to_json())")
    wanted = {
        "watermark": bool(json_dressing.get("watermark")),
        "opening": bool(json_dressing.get("opening_credits")),
        "ending": bool(json_dressing.get("ending_credits")),
    }
    paths = parse_dressing_input(dressing_input, roots)
    if len(paths) != sum(wanted.values()):
        expected = ", ".join(role for role in ROLES if wanted[role]) or "none"
        raise InvalidParameters(
            f"dressing_input: {len(paths)} file(s) for json_dressing's {expected}"
        )
    files = dict(zip([role for role in ROLES if wanted[role]], paths, strict=True))
    _same_file(files.get("watermark"), json_dressing.get("watermark_path"), "watermark_path")
    _same_file(files.get("opening"), json_dressing.get("opening_credits_video"), "opening")
    _same_file(files.get("ending"), json_dressing.get("ending_credits_video"), "ending")
    watermark = None
    if "watermark" in files:
        watermark = Watermark(
            image=files["watermark"],
            position=parse_position(
                json_dressing.get("position_orig") or json_dressing.get("position")
            ),
            opacity=parse_opacity(json_dressing.get("opacity")),
        )
    dressing = Dressing(
        watermark=watermark, opening=files.get("opening"), ending=files.get("ending")
    )
    return None if dressing.empty else dressing


@dataclass(frozen=True, kw_only=True)
class RemoteDressing:
    """The runner path's dressing: what to fetch (URLs by role) and how to show it."""

    watermark_url: str | None = None
    position: Corner = Corner.TOP_RIGHT
    opacity: int = 100
    opening_url: str | None = None
    ending_url: str | None = None

    def urls(self) -> dict[str, str]:
        """role -> URL for the adapter to fetch (with its SSRF guard), e.g. into the workspace."""
        found = {"watermark": self.watermark_url, "opening": self.opening_url}
        found["ending"] = self.ending_url
        return {role: url for role, url in found.items() if url}

    def resolve(self, files: Mapping[str, Path]) -> Dressing:
        missing = sorted(set(self.urls()) - set(files))
        if missing:
            raise InvalidParameters(f"dressing: {', '.join(missing)} was not fetched")
        watermark = None
        if "watermark" in files:
            watermark = Watermark(
                image=files["watermark"], position=self.position, opacity=self.opacity
            )
        return Dressing(
            watermark=watermark, opening=files.get("opening"), ending=files.get("ending")
        )


def dressing_from_runner(value: object) -> RemoteDressing | None:
    """`parameters.dressing`: a JSON string (Pod), an object, or empty for none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise InvalidParameters(f"parameters.dressing: not JSON ({error.msg})") from None
    if not isinstance(value, Mapping):
        raise InvalidParameters("parameters.dressing: expected a JSON object")
    if not value:
        return None
    remote = RemoteDressing(
        watermark_url=_url(value, "watermark"),
        position=parse_position(
            value.get("watermark_position_orig") or value.get("watermark_position")
        ),
        opacity=parse_opacity(value.get("watermark_opacity")),
        opening_url=_url(value, "opening_credits_video"),
        ending_url=_url(value, "ending_credits_video"),
    )
    return remote if remote.urls() else None


def parse_position(value: object) -> Corner:
    """Pod's code (`top_right`) or display label; unset means Pod's default, top right."""
    if value is None or value == "":
        return Corner.TOP_RIGHT
    text = str(value).strip().lower()
    try:
        return Corner(text)
    except ValueError:
        pass
    if text in POSITION_LABELS:
        return POSITION_LABELS[text]
    allowed = ", ".join(corner.value for corner in Corner)
    raise InvalidParameters(f"dressing position {value!r} is not one of {allowed}")


def parse_opacity(value: object) -> int:
    """Percent, 0-100, as an integer or a string of digits; unset means opaque (Pod's 100)."""
    if value is None or value == "":
        return 100
    if isinstance(value, bool) or not _PERCENT.match(str(value).strip()):
        raise InvalidParameters(f"dressing opacity {value!r} is not a percentage")
    opacity = int(str(value).strip())
    if opacity > 100:
        raise InvalidParameters(f"dressing opacity {opacity} is not within 0-100")
    return opacity


def _url(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidParameters(f"parameters.dressing.{key}: expected an http(s) URL")
    return value


def _same_file(path: Path | None, declared: object, key: str) -> None:
    """dressing_input must name the files json_dressing describes (Pod builds both)."""
    if path is None or not declared:
        return
    # Compared by name: the media root may be a symlink, and the credits' name is relative.
    if path.name != Path(str(declared)).name and path != Path(str(declared)).resolve():
        raise InvalidParameters(f"dressing_input does not match json_dressing's {key}")
