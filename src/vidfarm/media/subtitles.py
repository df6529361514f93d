"""Reference a subtitle from an HLS master playlist as a SUBTITLES rendition.

HLS wants a media playlist for a subtitle, not the .vtt itself: `subtitle_playlist` makes a
one-segment VOD playlist for the whole file, and `add_subtitles` adds an EXT-X-MEDIA entry
(group "subs") to a published master and points every variant at that group.
"""

from __future__ import annotations

import math
import posixpath
import re

GROUP_ID = "subs"
#: Display names for common languages; others show their code.
LANGUAGE_NAMES = {
    "en": "English",
    "fr": "Français",
    "de": "Deutsch",
    "es": "Español",
    "it": "Italiano",
    "nl": "Nederlands",
    "pt": "Português",
}
_SUBTITLES_ATTR = re.compile(r',SUBTITLES="[^"]*"')


def subtitle_playlist(vtt_uri: str, duration: float) -> str:
    """A VOD media playlist whose single segment is the whole WebVTT file."""
    length = max(duration, 0.001)
    return (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(length))}\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:{length:.3f},\n"
        f"{vtt_uri}\n"
        "#EXT-X-ENDLIST\n"
    )


def relative_uri(from_key: str, to_key: str) -> str:
    """The URI of storage key `to_key` as seen from the playlist stored at `from_key`."""
    return posixpath.relpath(to_key, posixpath.dirname(from_key) or ".")


def add_subtitles(master: str, playlist_uri: str, language: str, *, name: str | None = None) -> str:
    """`master` with a SUBTITLES rendition for `language`; replaces one already there."""
    lang = language.strip().lower()
    label = name or LANGUAGE_NAMES.get(lang, lang)
    media = (
        f'#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="{GROUP_ID}",NAME="{label}",'
        f'LANGUAGE="{lang}",DEFAULT=NO,AUTOSELECT=YES,FORCED=NO,URI="{playlist_uri}"'
    )
    lines = [
        line
        for line in master.splitlines()
        if not (
            line.startswith("#EXT-X-MEDIA:")
            and "TYPE=SUBTITLES" in line
            and f'GROUP-ID="{GROUP_ID}"' in line
            and f'LANGUAGE="{lang}"' in line
        )
    ]
    if not lines or lines[0].strip() != "#EXTM3U":
        raise ValueError("not an HLS playlist (no #EXTM3U header)")
    result: list[str] = []
    inserted = False
    for line in lines:
        if line.startswith("#EXT-X-STREAM-INF:"):
            if not inserted:
                result.append(media)
                inserted = True
            line = _SUBTITLES_ATTR.sub("", line) + f',SUBTITLES="{GROUP_ID}"'
        result.append(line)
    if not inserted:
        raise ValueError("not a master playlist (no #EXT-X-STREAM-INF)")
    return "\n".join(result) + "\n"


def with_timestamp_map(vtt: str, mpegts: int) -> str:
    """The WebVTT with X-TIMESTAMP-MAP: cue time 0 is the video's first MPEG-TS PTS (90 kHz).

    HLS players align subtitles with MPEG-TS segments through this header; ffmpeg's TS muxer
    starts the video at a non-zero PTS (1.4 s by default), which the header accounts for.
    """
    lines = vtt.splitlines()
    if not lines or not lines[0].startswith("WEBVTT"):
        raise ValueError("not a WebVTT file")
    kept = [line for line in lines[1:] if not line.startswith("X-TIMESTAMP-MAP=")]
    header = f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000"
    return "\n".join([lines[0], header, *kept]) + "\n"
