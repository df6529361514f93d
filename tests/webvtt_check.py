"""A strict little WebVTT reader for tests: header, cue timings, text."""

from __future__ import annotations

import re
from pathlib import Path

STAMP = r"((?:\d{2,}:)?\d{2}:\d{2}\.\d{3})"
TIMING = re.compile(rf"^{STAMP} --> {STAMP}")


def normalise(stamp: str) -> str:
    """WebVTT allows the hours to be left out; compare stamps in their long form."""
    return stamp if stamp.count(":") == 2 else f"00:{stamp}"


def cues(path: Path) -> list[tuple[str, str, str]]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("WEBVTT"), "missing WEBVTT header"
    found: list[tuple[str, str, str]] = []
    for block in re.split(r"\n\s*\n", text.strip())[1:]:
        lines = block.splitlines()
        for i, line in enumerate(lines):
            match = TIMING.match(line)
            if match:
                found.append(
                    (
                        normalise(match.group(1)),
                        normalise(match.group(2)),
                        "\n".join(lines[i + 1 :]),
                    )
                )
                break
    return found
