"""Caption rules on hand-made word timings: line length, lines per cue, pauses, durations."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from vidfarm.media.subtitles import (
    add_subtitles,
    relative_uri,
    subtitle_playlist,
    with_timestamp_map,
)
from vidfarm.transcribe.captions import (
    CaptionRules,
    Cue,
    build_cues,
    timestamp,
    to_srt,
    to_webvtt,
    word_error_rate,
    wrap,
)
from vidfarm.transcribe.engines import Word
from webvtt_check import cues as read_cues


def speech(text: str, *, start: float = 0.0, word: float = 0.3, gap: float = 0.1) -> list[Word]:
    words, t = [], start
    for token in text.split():
        words.append(Word(text=token, start=t, end=t + word, confidence=0.9))
        t += word + gap
    return words


def seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def check_rules(cues: list[Cue], rules: CaptionRules, duration: float) -> None:
    previous_end = 0.0
    for i, cue in enumerate(cues):
        assert 1 <= len(cue.lines) <= rules.max_lines
        assert all(0 < len(line) <= rules.max_line_length for line in cue.lines), cue.lines
        assert previous_end <= cue.start <= cue.end <= duration
        assert cue.end - cue.start <= rules.max_seconds + 1e-9
        room_before = cue.start - previous_end
        room_after = (cues[i + 1].start if i + 1 < len(cues) else duration) - cue.end
        # Shorter than the minimum only when neighbours (or the media's ends) leave no room.
        if cue.end - cue.start < rules.min_seconds - 1e-9:
            assert room_before < 1e-9 and room_after < 1e-9, (cue, room_before, room_after)
        previous_end = cue.end


LONG_TEXT = (
    "in this lecture we will look at how video platforms turn a single upload into many "
    "renditions and why captions matter for every viewer including those who cannot hear "
    "the sound or who watch in a noisy place or in a language that is not their own"
)


@pytest.mark.parametrize("rules", [CaptionRules(), CaptionRules.strict()], ids=["42", "strict"])
def test_continuous_speech_respects_every_rule(rules: CaptionRules) -> None:
    words = speech(LONG_TEXT)
    duration = words[-1].end + 2
    cues = build_cues(words, duration=duration, rules=rules)
    check_rules(cues, rules, duration)
    assert " ".join(" ".join(c.lines) for c in cues) == LONG_TEXT  # nothing lost or reordered
    assert max(len(line) for c in cues for line in c.lines) > rules.max_line_length - 12


def test_a_pause_starts_a_new_cue() -> None:
    words = speech("hello there", start=1.0) + speech("general kenobi", start=3.0)
    cues = build_cues(words, duration=10)
    assert [c.text for c in cues] == ["hello there", "general kenobi"]
    short = build_cues(
        speech("hello there", start=1.0) + speech("general kenobi", start=1.9), duration=10
    )
    assert len(short) == 1  # 0.2 s between words is not a pause


def test_cues_last_between_one_and_seven_seconds() -> None:
    lone = build_cues([Word(text="yes", start=2.0, end=2.2, confidence=1)], duration=5)
    assert (lone[0].start, lone[0].end) == (2.0, 3.0)  # stretched to the minimum
    slow = speech(" ".join(["word"] * 12), word=0.8, gap=0.2)  # 12 s without a pause
    cues = build_cues(slow, duration=20)
    assert len(cues) >= 2 and all(c.end - c.start <= 7.0 for c in cues)
    at_end = build_cues([Word(text="bye", start=9.8, end=9.95, confidence=1)], duration=10)
    assert at_end[0].end == 10 and at_end[0].end - at_end[0].start == pytest.approx(1.0)


def test_timestamps_are_monotonic_and_inside_the_media() -> None:
    rng = random.Random(5)
    words = [
        Word(text=f"w{i}", start=s, end=s + rng.uniform(-0.2, 0.6), confidence=0.5)
        for i, s in enumerate(sorted(rng.uniform(-1, 31) for _ in range(200)))
    ]
    cues = build_cues(words, duration=30)
    check_rules(cues, CaptionRules(), 30)
    assert all(w.start >= 0 for c in cues for w in c.words)


def test_a_word_longer_than_a_line_is_cut() -> None:
    url = "https://example.org/" + "x" * 80
    cues = build_cues([Word(text=url, start=0, end=3, confidence=1)], duration=5)
    check_rules(cues, CaptionRules(), 5)
    assert "".join(line for c in cues for line in c.lines) == url


def test_wrap_balances_two_lines() -> None:
    assert wrap(["aaa", "bbb", "ccc", "ddd"], 10, 2) == ["aaa bbb", "ccc ddd"]
    assert wrap(["aaaa", "bbbb", "cccc", "dddd", "eeee"], 9, 2) is None


def test_webvtt_and_srt_read_back(tmp_path: Path) -> None:
    words = speech("one two three", start=0.5) + speech("four five", start=3605.0)
    cues = build_cues(words, duration=3700)
    vtt = tmp_path / "a.vtt"
    vtt.write_text(to_webvtt(cues, language="en"))
    parsed = read_cues(vtt)
    assert [(seconds(a), seconds(b), t) for a, b, t in parsed] == [
        (pytest.approx(c.start), pytest.approx(c.end), c.text) for c in cues
    ]
    assert parsed[1][0] == "01:00:05.000"
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:00,500 --> 00:00:01,") and "\n\n2\n01:00:05,000 --> " in srt


def test_no_words_is_a_valid_empty_webvtt(tmp_path: Path) -> None:
    vtt = tmp_path / "silence.vtt"
    vtt.write_text(to_webvtt([], language="en"))
    assert read_cues(vtt) == [] and vtt.read_text().startswith("WEBVTT\n")
    assert to_srt([]) == ""


def test_timestamp_floors_to_the_millisecond() -> None:
    assert timestamp(59.9996) == "00:00:59.999"  # floored: never past the media's end
    assert timestamp(0.3) == "00:00:00.300"
    assert timestamp(3723.0406, separator=",") == "01:02:03,040"


def test_word_error_rate() -> None:
    assert word_error_rate("The cat sat.", "the cat sat") == 0
    assert word_error_rate("the cat sat", "the dog sat down") == pytest.approx(2 / 3)
    assert word_error_rate("a b c d", "") == 1


MASTER = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2"
360p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1400000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"
720p/index.m3u8
"""


def test_master_gets_a_subtitles_rendition() -> None:
    m3u8 = pytest.importorskip("m3u8")
    uri = relative_uri("videos/v/e/a1/master.m3u8", "videos/v/t/a1/subtitle_en.m3u8")
    assert uri == "../../t/a1/subtitle_en.m3u8"
    updated = add_subtitles(MASTER, uri, "en")
    assert add_subtitles(updated, uri, "en") == updated  # idempotent
    both = add_subtitles(updated, "fr.m3u8", "fr")
    playlist = m3u8.loads(both)
    subs = [m for m in playlist.media if m.type == "SUBTITLES"]
    assert [(m.language, m.uri, m.group_id) for m in subs] == [
        ("en", uri, "subs"),
        ("fr", "fr.m3u8", "subs"),
    ]
    assert [p.stream_info.subtitles for p in playlist.playlists] == ["subs", "subs"]
    assert [p.uri for p in playlist.playlists] == ["360p/index.m3u8", "720p/index.m3u8"]
    with pytest.raises(ValueError, match="not a master playlist"):
        add_subtitles("#EXTM3U\n#EXTINF:1,\na.ts\n", uri, "en")


def test_subtitle_media_playlist_parses() -> None:
    m3u8 = pytest.importorskip("m3u8")
    playlist = m3u8.loads(subtitle_playlist("subtitle_en.vtt", 61.25))
    assert playlist.is_endlist and playlist.target_duration == 62
    assert [(s.uri, s.duration) for s in playlist.segments] == [("subtitle_en.vtt", 61.25)]


def test_timestamp_map_is_added_once() -> None:
    vtt = to_webvtt(build_cues(speech("hello there"), duration=3), language="en")
    mapped = with_timestamp_map(with_timestamp_map(vtt, 90000), 126000)
    lines = mapped.splitlines()
    assert lines[:3] == [
        "WEBVTT",
        "X-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000",
        "Language: en",
    ]
    assert mapped.count("X-TIMESTAMP-MAP") == 1 and "hello there" in mapped
