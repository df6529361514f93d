"""Alternate renditions of an HLS master: embedded subtitles and extra audio tracks.

The served master gains transcriptions later (api/media.py adds them to the same "subs"
group); what the source itself carries is known at encode time, so it is written into the
master here and every player, native or hls.js, sees it without the API's help.
"""

from __future__ import annotations

from pathlib import Path

from vidfarm.media.hls import Media, language_tag, unique_names
from vidfarm.media.plan import EncodePlan
from vidfarm.media.subtitles import GROUP_ID, LANGUAGE_NAMES, subtitle_playlist

SUBTITLE_PLAYLIST_KIND = "subtitle-playlist"  # the kind transcriptions' playlists have too
AUDIO_GROUP = "audio"


def audio_media(plan: EncodePlan) -> list[Media]:
    """The AUDIO group when the source has several audio tracks (none otherwise): the first
    track rides in the variants (no URI, DEFAULT), each other one is its own playlist."""
    if not plan.extra_audio or plan.info.main_audio is None:
        return []
    tracks = [(plan.info.main_audio, None), *((s, f"{name}.m3u8") for s, name in plan.extra_audio)]
    labels = unique_names(
        [_label(s.title, s.language, f"Audio {n}") for n, (s, _) in enumerate(tracks, 1)]
    )
    return [
        Media(
            type="AUDIO",
            group=AUDIO_GROUP,
            name=label,
            language=language_tag(stream.language),
            uri=uri,
            default=uri is None,
        )
        for (stream, uri), label in zip(tracks, labels, strict=True)
    ]


def subtitle_media(plan: EncodePlan, folder: Path) -> list[Media]:
    """One SUBTITLES rendition per extracted WebVTT file, its media playlist written beside it.

    A subtitle stream ffmpeg could not turn into WebVTT (no file) is left out.
    """
    found = [(stream, name) for stream, name in plan.subtitles if (folder / name).exists()]
    labels = unique_names([_label(s.title, s.language, "Subtitles") for s, _ in found])
    media: list[Media] = []
    for (stream, name), label in zip(found, labels, strict=True):
        playlist = subtitle_playlist_name(name)
        (folder / playlist).write_text(subtitle_playlist(name, plan.duration), encoding="utf-8")
        media.append(
            Media(
                type="SUBTITLES",
                group=GROUP_ID,
                name=label,
                language=language_tag(stream.language),
                uri=playlist,
            )
        )
    return media


def subtitle_playlist_name(vtt_name: str) -> str:
    return vtt_name.removesuffix(".vtt") + ".m3u8"


def _label(title: str | None, language: str | None, fallback: str) -> str:
    """NAME: the stream's title, else its language's name, else `fallback`."""
    if title and title.strip():
        return title.strip().replace('"', "'")
    tag = language_tag(language)
    if tag:
        return LANGUAGE_NAMES.get(tag, tag)
    return fallback
