"""Transcribe one media file: the CLI's `transcribe_file`, also run by the `transcription` kind.

Audio flows ffmpeg → pipe → engine chunk by chunk; only the words (a few bytes per second
of speech) are kept, so memory does not grow with the input's length.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from vidfarm.config import Settings
from vidfarm.errors import InvalidMedia, JobCancelled
from vidfarm.jobs import create_job
from vidfarm.media.probe import MediaInfo, probe
from vidfarm.media.subtitles import subtitle_playlist
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.models import Job, JobType, Video
from vidfarm.transcribe.audio import BYTES_PER_SECOND, stream_pcm
from vidfarm.transcribe.captions import (
    STRICT_LINE_LENGTH,
    CaptionRules,
    Cue,
    build_cues,
    to_srt,
    to_webvtt,
    words_json,
)
from vidfarm.transcribe.engines import Word, borrow_engine, resolve

#: Called with a percentage (0-100); returning False stops the transcription.
ProgressCallback = Callable[[float], bool]

#: Output kind of the HLS media playlist that wraps a transcription's WebVTT.
SUBTITLE_PLAYLIST = "subtitle-playlist"


@dataclass(kw_only=True)
class Transcript:
    language: str
    engine: str
    duration: float
    words: list[Word]
    cues: list[Cue]
    wall_seconds: float
    audio_seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)  # kind -> file name, once written

    @property
    def real_time_factor(self) -> float:
        """Processing time per second of audio: below 1 is faster than real time."""
        return self.wall_seconds / max(self.duration, 1e-6)

    def webvtt(self) -> str:
        return to_webvtt(self.cues, language=self.language)


def caption_rules(settings: Settings, *, strict: bool | None = None) -> CaptionRules:
    strict = settings.transcription_strict_accessibility if strict is None else strict
    return CaptionRules(
        max_line_length=STRICT_LINE_LENGTH if strict else settings.transcription_max_line_length,
        pause_seconds=settings.transcription_pause_seconds,
        min_seconds=settings.transcription_min_cue_seconds,
        max_seconds=settings.transcription_max_cue_seconds,
    )


def audio_info(source: Path, *, name: str | None = None) -> MediaInfo:
    """Probe `source` and refuse, in one line, a file without sound to transcribe."""
    info = probe(source, name=name)
    if not info.audio:
        raise InvalidMedia(f"{name or source.name}: no audio stream to transcribe")
    return info


def transcribe_file(
    source: Path,
    *,
    language: str,
    settings: Settings,
    on_progress: ProgressCallback | None = None,
    strict: bool | None = None,
    loudnorm: bool | None = None,
    name: str | None = None,
) -> Transcript:
    """Transcribe `source`'s first audio stream into words and caption cues."""
    language = resolve(language, settings).language  # unsupported: fails before any work
    info = audio_info(source, name=name)
    started = time.monotonic()
    chunk_bytes = max(2, int(settings.transcription_chunk_seconds * BYTES_PER_SECOND) // 2 * 2)
    limit = max(settings.time_limit_min_seconds, info.duration * settings.time_limit_factor)
    chunks = stream_pcm(
        ffmpeg_executable(settings.ffmpeg),
        source,
        chunk_bytes=chunk_bytes,
        loudnorm=settings.transcription_loudnorm if loudnorm is None else loudnorm,
        time_limit=limit,
    )
    counter = _Counter(chunks, info.duration, on_progress)
    try:
        with borrow_engine(language, settings) as engine:
            words = list(engine.transcribe(counter))
            engine_name = engine.name
    finally:
        counter.close()
    if counter.cancelled:
        raise JobCancelled("cancelled while transcribing")
    # ffmpeg's decoded length is the truth for timestamps; the container's may be rounded.
    duration = min(info.duration, counter.seconds) if counter.seconds else info.duration
    cues = build_cues(words, duration=duration, rules=caption_rules(settings, strict=strict))
    return Transcript(
        language=language,
        engine=engine_name,
        duration=duration,
        words=words,
        cues=cues,
        wall_seconds=time.monotonic() - started,
        audio_seconds=counter.seconds,
    )


class _Counter:
    """Pass chunks through, counting seconds for progress; stops the stream on cancel."""

    def __init__(
        self, chunks: Iterator[bytes], duration: float, on_progress: ProgressCallback | None
    ) -> None:
        self._chunks = chunks
        self._duration = duration
        self._on_progress = on_progress
        self.seconds = 0.0
        self.cancelled = False
        self._last = -1.0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.seconds += len(chunk) / BYTES_PER_SECOND
            if self._on_progress is not None and self.seconds - self._last >= 1.0:
                self._last = self.seconds
                percent = min(99.0, 100.0 * self.seconds / max(self._duration, 1e-6))
                if not self._on_progress(percent):
                    self.cancelled = True
                    return
            yield chunk

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()  # kills ffmpeg if the engine stopped before the end


def write_outputs(transcript: Transcript, folder: Path, *, stem: str | None = None) -> list[Path]:
    """Write the .vtt, .srt, words .json and the HLS subtitle playlist into `folder`."""
    stem = stem or f"subtitle_{transcript.language}"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "subtitle": (f"{stem}.vtt", transcript.webvtt()),
        "subtitle-srt": (f"{stem}.srt", to_srt(transcript.cues)),
        "transcript": (
            f"{stem}.json",
            json.dumps(
                {
                    "language": transcript.language,
                    "engine": transcript.engine,
                    "duration": round(transcript.duration, 3),
                    "words": words_json(transcript.words),
                },
                indent=1,
            )
            + "\n",
        ),
        SUBTITLE_PLAYLIST: (
            f"{stem}.m3u8",
            subtitle_playlist(f"{stem}.vtt", transcript.duration),
        ),
    }
    written = []
    for kind, (filename, text) in files.items():
        (folder / filename).write_text(text, encoding="utf-8")
        transcript.files[kind] = filename
        written.append(folder / filename)
    return written


def submit_transcription(
    session: Session, settings: Settings, video: Video, *, language: str, priority: int = 0
) -> Job:
    """Queue a `transcribe` job for `video` (the caller dispatches it, as for encodes).

    The language is checked first, so a request for an unconfigured one fails at once.
    """
    spec = resolve(language, settings)
    return create_job(
        session,
        job_type=JobType.TRANSCRIPTION.value,
        video_id=video.id,
        params={"language": spec.language},
        priority=priority,
        max_attempts=settings.max_attempts,
    )
