"""Vosk (Kaldi): streams natively; the model comes only from a local folder in settings."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from vidfarm.config import Settings
from vidfarm.transcribe.audio import SAMPLE_RATE
from vidfarm.transcribe.engines import EngineSpec, Word, import_optional, require_model


class VoskEngine:
    name = "vosk"

    def __init__(self, language: str, model: Any, module: Any) -> None:
        self.language = language
        self._model = model
        self._module = module

    def transcribe(self, chunks: Iterable[bytes]) -> Iterator[Word]:
        recogniser = self._module.KaldiRecognizer(self._model, SAMPLE_RATE)
        recogniser.SetWords(True)
        for chunk in chunks:
            if recogniser.AcceptWaveform(chunk):
                yield from _words(recogniser.Result())
        yield from _words(recogniser.FinalResult())


def _words(result: str) -> Iterator[Word]:
    for item in json.loads(result).get("result", []):
        yield Word(
            text=str(item["word"]),
            start=float(item["start"]),
            end=float(item["end"]),
            confidence=max(0.0, min(1.0, float(item.get("conf", 1.0)))),
        )


def load(spec: EngineSpec, settings: Settings) -> VoskEngine:
    folder = require_model(spec, f"/models/vosk-model-small-{spec.language}")
    module = import_optional("vosk", "vosk", "vosk")
    module.SetLogLevel(-1)
    # Model(path) reads the folder; Model(lang=...) would download, which we never do.
    return VoskEngine(spec.language, module.Model(str(folder)), module)
