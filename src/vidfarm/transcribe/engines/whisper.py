"""faster-whisper (CTranslate2): a local model folder only, fed in bounded windows.

Whisper decodes windows, not streams, so PCM is gathered into windows of
`transcription_window_seconds` and each is transcribed on its own; memory is bounded by
one window whatever the input length (Pod loaded the whole audio in RAM instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from vidfarm.config import Settings
from vidfarm.transcribe.audio import BYTES_PER_SECOND
from vidfarm.transcribe.engines import EngineSpec, Word, import_optional, require_model


class WhisperEngine:
    name = "whisper"

    def __init__(self, language: str, model: Any, window_seconds: float) -> None:
        self.language = language
        self._model = model
        self._window_bytes = int(window_seconds * BYTES_PER_SECOND) // 2 * 2

    def transcribe(self, chunks: Iterable[bytes]) -> Iterator[Word]:
        window = bytearray()
        offset = 0.0
        for chunk in chunks:
            window += chunk
            while len(window) >= self._window_bytes:
                yield from self._window(bytes(window[: self._window_bytes]), offset)
                del window[: self._window_bytes]
                offset += self._window_bytes / BYTES_PER_SECOND
        if window:
            yield from self._window(bytes(window), offset)

    def _window(self, pcm: bytes, offset: float) -> Iterator[Word]:
        import numpy as np

        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(
            audio,
            language=self.language,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        for segment in segments:
            for word in segment.words or []:
                text = str(word.word).strip()
                if text:
                    yield Word(
                        text=text,
                        start=offset + float(word.start),
                        end=offset + float(word.end),
                        confidence=max(0.0, min(1.0, float(word.probability))),
                    )


def load(spec: EngineSpec, settings: Settings) -> WhisperEngine:
    folder = require_model(spec, f"/models/faster-whisper-small-{spec.language}")
    module = import_optional("faster_whisper", "faster-whisper", "whisper")
    model = module.WhisperModel(
        str(folder),
        device="cpu",
        compute_type=settings.transcription_whisper_compute_type,
        local_files_only=True,  # a folder path is read as is; never reach a model hub
    )
    return WhisperEngine(spec.language, model, settings.transcription_window_seconds)
