"""Encoding profiles are data: TOML files shipped in the package or dropped in a folder."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vidfarm.errors import ConfigError, InvalidParameters

_BITRATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_bitrate(value: str | int) -> int:
    """'750k' -> 750000 bits per second."""
    if isinstance(value, int):
        return value
    match = _BITRATE.match(value)
    if not match:
        raise ValueError(f"not a bitrate: {value!r} (use e.g. 750k or 3M)")
    number, unit = float(match.group(1)), match.group(2).lower()
    return int(number * {"": 1, "k": 1_000, "m": 1_000_000}[unit])


Bitrate = Annotated[int, Field(gt=0)]


class RenditionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    height: Annotated[int, Field(ge=32, le=4320)]
    min_video_bitrate: Bitrate
    video_bitrate: Bitrate
    max_video_bitrate: Bitrate
    audio_bitrate: Bitrate
    mp4: bool = False

    @field_validator(
        "min_video_bitrate", "video_bitrate", "max_video_bitrate", "audio_bitrate", mode="before"
    )
    @classmethod
    def _bitrate(cls, value: str | int) -> int:
        return parse_bitrate(value)

    @model_validator(mode="after")
    def _ordered(self) -> RenditionSpec:
        if not self.min_video_bitrate <= self.video_bitrate <= self.max_video_bitrate:
            raise ValueError("bitrates must satisfy min <= video <= max")
        return self


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    preset: Literal[
        "ultrafast",
        "superfast",
        "veryfast",
        "faster",
        "fast",
        "medium",
        "slow",
        "slower",
        "veryslow",
    ] = "medium"
    crf: Annotated[int, Field(ge=0, le=51)] = 20
    x264_profile: Literal["baseline", "main", "high"] = "high"
    max_fps: Annotated[float, Field(gt=0, le=240)] = 60.0
    keyframe_interval: Annotated[float, Field(gt=0, le=10)] = 2.0
    segment_duration: Annotated[float, Field(ge=2, le=6)] = 4.0
    threshold: Annotated[float, Field(ge=0, le=100)] = 0
    audio_sample_rate: Literal[44100, 48000] = 48000
    #: Interlaced sources: "frame" makes one picture per frame (25i -> 25p), "field" one per
    #: field (25i -> 50p, smoother motion, more bits).
    deinterlace: Literal["frame", "field"] = "frame"
    #: One `<name>.ts` per HLS playlist, addressed by byte ranges (`-hls_flags single_file`):
    #: what Esup-Pod's runner import needs, and one object per rendition instead of hundreds.
    hls_single_file: bool = False
    audio_only_bitrate: Bitrate = 192_000
    mp3_quality: Annotated[int, Field(ge=0, le=9)] = 2
    renditions: Annotated[list[RenditionSpec], Field(min_length=1)]

    @field_validator("audio_only_bitrate", mode="before")
    @classmethod
    def _bitrate(cls, value: str | int) -> int:
        return parse_bitrate(value)

    @model_validator(mode="after")
    def _coherent(self) -> Profile:
        ratio = self.segment_duration / self.keyframe_interval
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError("segment_duration must be a multiple of keyframe_interval")
        heights = [r.height for r in self.renditions]
        if len(set(heights)) != len(heights):
            raise ValueError("two renditions have the same height")
        return self

    @property
    def ladder(self) -> list[RenditionSpec]:
        return sorted(self.renditions, key=lambda r: r.height)


def load_profile_file(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        data.setdefault("name", path.stem)
        return Profile.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"profile {path}: {error}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"profile {path}: {where}: {first['msg']}") from None


def available_profiles(user_dir: Path | None = None) -> dict[str, Path]:
    """Profile name -> file; a user's file overrides a built-in one of the same name."""
    found: dict[str, Path] = {}
    builtin = resources.files("vidfarm") / "profiles"
    for entry in builtin.iterdir():
        if entry.name.endswith(".toml"):
            found[entry.name[:-5]] = Path(str(entry))
    if user_dir and user_dir.is_dir():
        for path in sorted(user_dir.glob("*.toml")):
            found[path.stem] = path
    return found


def load_profile(name: str, user_dir: Path | None = None) -> Profile:
    if not _PROFILE_NAME.match(name):
        raise InvalidParameters(f"invalid profile name {name!r}")
    profiles = available_profiles(user_dir)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise InvalidParameters(f"unknown profile {name!r} (available: {known})")
    return load_profile_file(profiles[name])


_RESOLUTION = re.compile(r"^(\d{1,5}):(\d{1,5})$")


def parse_resolution(value: str) -> tuple[int, int]:
    """'1920:1080' -> (1920, 1080); anything else is refused with the expected form."""
    match = _RESOLUTION.match(value.strip())
    if not match or min(int(match.group(1)), int(match.group(2))) < 32:
        raise InvalidParameters(f"invalid resolution {value!r} (expected W:H, e.g. 1280:720)")
    width, height = int(match.group(1)), int(match.group(2))
    if max(width, height) > 8192:
        raise InvalidParameters(f"invalid resolution {value!r} (at most 8192 pixels a side)")
    return width, height


def rendition_for(profile: Profile, resolution: str | None) -> RenditionSpec | None:
    """One rendition asked by size: its short side, with the bitrates of the profile's
    rendition nearest in height (aspect ratio is kept and nothing is upscaled)."""
    if not resolution:
        return None
    short = min(parse_resolution(resolution))
    nearest = min(profile.ladder, key=lambda spec: abs(spec.height - short))
    return nearest.model_copy(update={"height": short})


_POD_RESOLUTION = re.compile(r"^\s*(\d{1,5})\s*[xX:]\s*(\d{1,5})\s*$")


def profile_from_rendition_json(text: str, base: Profile) -> Profile:
    """Esup-Pod's `rendition` parameter (a JSON string) as a ladder on top of `base`.

    `{"360": {"resolution": "640x360", "video_bitrate": "750k", "audio_bitrate": "96k",
    "encode_mp4": true}, ...}`: each entry becomes a rendition of the resolution's height.
    Missing min/max rates come from `base`'s rendition of the same height and bitrate (Pod's
    table), else 2/3 and 3/2 of the video bitrate. Unknown keys are ignored.
    """
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as error:
        raise InvalidParameters(f"rendition: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict) or not data:
        raise InvalidParameters("rendition: expected a non-empty JSON object of renditions")
    return profile_with_renditions(
        base, [_pod_rendition(key, entry, base) for key, entry in data.items()]
    )


def _pod_rendition(key: str, entry: object, base: Profile) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InvalidParameters(f"rendition {key!r}: expected an object")
    match = _POD_RESOLUTION.match(str(entry.get("resolution", "")))
    if not match:
        raise InvalidParameters(
            f"rendition {key!r}: resolution must read WIDTHxHEIGHT, e.g. 640x360"
        )
    height = int(match.group(2))
    try:
        video, audio = _pod_bitrates(entry, height, base)
        known = next(
            (r for r in base.renditions if r.height == height and r.video_bitrate == video), None
        )
        minimum = entry.get("minrate") or (known.min_video_bitrate if known else video * 2 // 3)
        maximum = entry.get("maxrate") or (known.max_video_bitrate if known else video * 3 // 2)
        min_rate, max_rate = parse_bitrate(str(minimum)), parse_bitrate(str(maximum))
    except ValueError as error:
        raise InvalidParameters(f"rendition {key!r}: {error}") from None
    return {
        "height": height,
        "min_video_bitrate": min(min_rate, video),
        "video_bitrate": video,
        "max_video_bitrate": max(max_rate, video),
        "audio_bitrate": audio,
        "mp4": bool(entry.get("encode_mp4", False)),
    }


def _pod_bitrates(entry: dict[str, Any], height: int, base: Profile) -> tuple[int, int]:
    """Video and audio bitrates of a Pod rendition; Pods before 3.8 send none.

    Missing ones come from `base`'s rendition nearest in height, the video bitrate scaled by
    the pixel count (as Esup-Runner infers them), so an old Pod's 480p gets a 480p bitrate.
    """
    nearest = min(base.renditions, key=lambda r: (abs(r.height - height), -r.height))
    given_video, given_audio = entry.get("video_bitrate"), entry.get("audio_bitrate")
    if given_video not in (None, ""):
        video = parse_bitrate(str(given_video))
    else:
        video = max(150_000, round(nearest.video_bitrate * (height / nearest.height) ** 2))
    audio = (
        parse_bitrate(str(given_audio)) if given_audio not in (None, "") else nearest.audio_bitrate
    )
    return video, audio


def profile_with_renditions(base: Profile, renditions: list[dict[str, Any]]) -> Profile:
    """`base` with its ladder replaced by `renditions` (RenditionSpec fields), validated."""
    try:
        return Profile.model_validate({**base.model_dump(), "renditions": renditions})
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidParameters(f"rendition: {where}: {first['msg']}") from None


def profile_from_spec(spec: object) -> Profile:
    """A whole profile given as data (JSON), checked like a profile file."""
    if not isinstance(spec, dict):
        raise InvalidParameters("profile_spec: expected an object")
    try:
        return Profile.model_validate(spec)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "profile_spec"
        raise InvalidParameters(f"profile_spec.{where}: {first['msg']}") from None


def profile_for_params(params: dict[str, Any], default_name: str, user_dir: Path | None) -> Profile:
    """The profile a job's params ask for: its named profile (or the default), with the
    inline `renditions` list (RenditionSpec fields) replacing the ladder when present.

    `profile_spec`, a whole profile, is how a vidfarm control plane hands its own profile to
    a `vidfarm runner` for chunks: every chunk and the stitch must encode alike, wherever
    they run, so the runner's own default profile must not apply."""
    spec = params.get("profile_spec")
    if spec is not None:
        profile = profile_from_spec(spec)
    else:
        profile = load_profile(str(params.get("profile") or default_name), user_dir)
    single_file = params.get("hls_single_file")
    if single_file is not None:
        if not isinstance(single_file, bool):
            raise InvalidParameters("hls_single_file: expected true or false")
        profile = profile.model_copy(update={"hls_single_file": single_file})
    inline = params.get("renditions")
    if inline:
        if not isinstance(inline, list):
            raise InvalidParameters("renditions: expected a list")
        return profile_with_renditions(profile, list(inline))
    return profile
