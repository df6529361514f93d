"""`vidfarm transcribe INPUT --lang en -o out.vtt`: captions for one file, with a progress bar.

cli/app.py registers it wrapped in `guarded`, so vidfarm's errors become one line on stderr and
an exit code, like every other command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vidfarm.cli.support import console, progress_bar
from vidfarm.config import load_settings
from vidfarm.errors import InvalidParameters
from vidfarm.transcribe.captions import to_srt, words_json
from vidfarm.transcribe.engines import resolve
from vidfarm.transcribe.job import audio_info, transcribe_file

FORMATS = {".vtt": "vtt", ".srt": "srt", ".json": "json"}


def transcribe(
    source: Annotated[Path, typer.Argument(help="The video or audio file to transcribe.")],
    lang: Annotated[str, typer.Option("--lang", "-l", help="Spoken language, e.g. en.")] = "en",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write: .vtt, .srt or .json (words)."),
    ] = None,
    strict: Annotated[
        bool | None,
        typer.Option(help="Strict accessibility mode: 32-character lines."),
    ] = None,
    loudnorm: Annotated[
        bool | None, typer.Option(help="EBU R128 loudness normalisation first.")
    ] = None,
) -> None:
    """Transcribe SOURCE's speech into WebVTT (default), SRT or a JSON list of words."""
    settings = load_settings()
    target = output or source.with_suffix(".vtt")
    kind = FORMATS.get(target.suffix.lower())
    if kind is None:
        raise InvalidParameters(f"{target.name}: the output must end in .vtt, .srt or .json")
    resolve(lang, settings)  # refuse an unsupported language before the bar shows
    audio_info(source)
    with progress_bar() as bar:
        task = bar.add_task(f"transcribing {source.name}", total=100)

        def on_progress(percent: float) -> bool:
            bar.update(task, completed=percent)
            return True

        transcript = transcribe_file(
            source,
            language=lang,
            settings=settings,
            on_progress=on_progress,
            strict=strict,
            loudnorm=loudnorm,
        )
        bar.update(task, completed=100)
    if kind == "vtt":
        text = transcript.webvtt()
    elif kind == "srt":
        text = to_srt(transcript.cues)
    else:
        text = json.dumps(words_json(transcript.words), indent=1) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.part")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)  # never leave half a caption file under the real name
    console.print(
        f"{target}: {len(transcript.cues)} cues, {len(transcript.words)} words; "
        f"{transcript.duration:.1f} s of audio in {transcript.wall_seconds:.1f} s "
        f"(real-time factor {transcript.real_time_factor:.2f}, {transcript.engine})"
    )
