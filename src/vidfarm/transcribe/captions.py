"""Timed words to caption cues, and cues to WebVTT, SRT and a JSON list of words.

Rules (Pod's, with the accessibility guidance of 42/32 characters per line): at most two lines
per cue, each no longer than `max_line_length`; a pause between words starts a new cue; a cue
lasts between `min_seconds` and `max_seconds` where the neighbouring cues leave room; every
timestamp comes from the engine's word timings, is monotonic and lies inside the media.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vidfarm.transcribe.engines import Word

DEFAULT_LINE_LENGTH = 42
STRICT_LINE_LENGTH = 32


@dataclass(frozen=True, kw_only=True)
class CaptionRules:
    max_line_length: int = DEFAULT_LINE_LENGTH
    max_lines: int = 2
    pause_seconds: float = 0.5
    min_seconds: float = 1.0
    max_seconds: float = 7.0

    @classmethod
    def strict(cls) -> CaptionRules:
        return cls(max_line_length=STRICT_LINE_LENGTH)


@dataclass(kw_only=True)
class Cue:
    start: float
    end: float
    words: list[Word] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def clean_words(words: Iterable[Word], duration: float) -> list[Word]:
    """Words sorted, clamped inside [0, duration] and made monotonic: engines may overlap."""
    cleaned: list[Word] = []
    last_end = 0.0
    for word in sorted(words, key=lambda w: (w.start, w.end)):
        text = " ".join(word.text.split())
        if not text:
            continue
        start = min(max(word.start, last_end, 0.0), duration)
        end = min(max(word.end, start), duration)
        cleaned.append(Word(text=text, start=start, end=end, confidence=word.confidence))
        last_end = end
    return cleaned


def wrap(tokens: Sequence[str], width: int, max_lines: int) -> list[str] | None:
    """Balanced lines of at most `width` characters, or None if the tokens need more lines."""
    text = " ".join(tokens)
    if len(text) <= width:
        return [text]
    if max_lines < 2:
        return None
    best: list[str] | None = None
    for cut in range(1, len(tokens)):
        first = " ".join(tokens[:cut])
        if len(first) > width:
            break
        rest = wrap(tokens[cut:], width, max_lines - 1)
        if rest is not None:
            candidate = [first, *rest]
            if best is None or max(map(len, candidate)) < max(map(len, best)):
                best = candidate
    return best


def split_long(word: Word, width: int) -> list[Word]:
    """A token longer than a line (a URL, a run-on) is cut into line-sized pieces."""
    if len(word.text) <= width:
        return [word]
    pieces = [word.text[i : i + width] for i in range(0, len(word.text), width)]
    step = (word.end - word.start) / len(pieces)
    return [
        Word(
            text=piece,
            start=word.start + i * step,
            end=word.start + (i + 1) * step,
            confidence=word.confidence,
        )
        for i, piece in enumerate(pieces)
    ]


def build_cues(
    words: Iterable[Word], *, duration: float, rules: CaptionRules | None = None
) -> list[Cue]:
    """Group words into cues that follow `rules` (see the module docstring)."""
    rules = rules or CaptionRules()
    tokens = [
        piece
        for word in clean_words(words, duration)
        for piece in split_long(word, rules.max_line_length)
    ]
    cues: list[Cue] = []
    current: list[Word] = []
    for word in tokens:
        if current and _starts_new_cue(current, word, rules):
            cues.append(_cue(current, rules))
            current = []
        current.append(word)
    if current:
        cues.append(_cue(current, rules))
    _fit_durations(cues, duration, rules)
    return cues


def _starts_new_cue(current: list[Word], word: Word, rules: CaptionRules) -> bool:
    if word.start - current[-1].end >= rules.pause_seconds:
        return True
    if word.end - current[0].start > rules.max_seconds:
        return True
    texts = [w.text for w in current] + [word.text]
    return wrap(texts, rules.max_line_length, rules.max_lines) is None


def _cue(words: list[Word], rules: CaptionRules) -> Cue:
    lines = wrap([w.text for w in words], rules.max_line_length, rules.max_lines)
    assert lines is not None  # _starts_new_cue only lets fitting words in
    return Cue(start=words[0].start, end=words[-1].end, words=words, lines=lines)


def _fit_durations(cues: list[Cue], duration: float, rules: CaptionRules) -> None:
    """Stretch short cues into the following gap, cut long ones; never overlap a neighbour."""
    for i, cue in enumerate(cues):
        limit = cues[i + 1].start if i + 1 < len(cues) else duration
        if cue.end - cue.start < rules.min_seconds:
            cue.end = min(cue.start + rules.min_seconds, limit)
        if cue.end - cue.start < rules.min_seconds:  # no room after: take some before
            floor = cues[i - 1].end if i else 0.0
            cue.start = max(cue.end - rules.min_seconds, floor)
        cue.end = min(cue.end, cue.start + rules.max_seconds, duration)
        cue.end = max(cue.end, cue.start)


def timestamp(seconds: float, *, separator: str = ".") -> str:
    # Floored, not rounded: a cue ending at the media's last instant must not pass it.
    millis = math.floor(max(0.0, seconds) * 1000 + 1e-6)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_webvtt(cues: Sequence[Cue], *, language: str | None = None) -> str:
    """WebVTT text; an input without speech still gets a valid file with no cue."""
    header = "WEBVTT" + (f"\nLanguage: {language}" if language else "")
    blocks = [header]
    for number, cue in enumerate(cues, 1):
        blocks.append(f"{number}\n{timestamp(cue.start)} --> {timestamp(cue.end)}\n{cue.text}")
    return "\n\n".join(blocks) + "\n"


def to_srt(cues: Sequence[Cue]) -> str:
    blocks = [
        f"{number}\n{timestamp(cue.start, separator=',')} --> "
        f"{timestamp(cue.end, separator=',')}\n{cue.text}"
        for number, cue in enumerate(cues, 1)
    ]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def words_json(words: Sequence[Word]) -> list[dict[str, Any]]:
    """The words with times (seconds, to the millisecond) and confidence, for search or edit."""
    return [
        {
            "word": w.text,
            "start": round(w.start, 3),
            "end": round(w.end, 3),
            "confidence": round(w.confidence, 3),
        }
        for w in words
    ]


def normalise_text(text: str) -> list[str]:
    """Lower-case words without punctuation: how transcripts are compared."""
    return [
        w for w in "".join(c if c.isalnum() or c in " '" else " " for c in text.lower()).split()
    ]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words: the usual ASR metric."""
    ref, hyp = normalise_text(reference), normalise_text(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, expected in enumerate(ref, 1):
        current = [i]
        for j, got in enumerate(hyp, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (expected != got))
            )
        previous = current
    return previous[-1] / len(ref)
