"""Where the ffmpeg executable comes from: a setting, then PATH, then the imageio-ffmpeg wheel."""

from __future__ import annotations

import shutil
from functools import lru_cache

from vidfarm.errors import ConfigError


@lru_cache(maxsize=8)
def ffmpeg_executable(configured: str = "") -> str:
    if configured:
        found = shutil.which(configured)
        if not found:
            raise ConfigError(f"VIDFARM_FFMPEG={configured!r} is not an executable")
        return found
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - it is a declared dependency
        raise ConfigError("no ffmpeg on PATH and imageio-ffmpeg is not installed") from None
    return str(imageio_ffmpeg.get_ffmpeg_exe())
