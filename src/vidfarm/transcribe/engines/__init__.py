"""Speech engines behind one interface, chosen per language in settings, cached per process.

An engine turns a stream of 16 kHz mono s16le PCM chunks into timed words. Loading a model
takes seconds and hundreds of megabytes, so loaded engines are kept for the life of the
worker process and lent to one job at a time (engines keep decoding state, so two threads
never share one; a second concurrent job gets its own copy, which is then kept too).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

from vidfarm.config import Settings
from vidfarm.errors import ConfigError, InvalidParameters


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word: seconds from the start of the audio, confidence in [0, 1]."""

    text: str
    start: float
    end: float
    confidence: float


class Engine(Protocol):
    name: str
    language: str

    def transcribe(self, chunks: Iterable[bytes]) -> Iterator[Word]:
        """Consume PCM chunks as they come and yield words in time order."""
        ...


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Which engine and model serve a language: the cache key."""

    engine: str
    language: str
    model: Path | None


EngineFactory = Callable[[EngineSpec, Settings], Engine]

#: Engine name -> dotted path of its module, which defines `load(spec, settings) -> Engine`.
#: Modules are imported on first use so an absent optional package only matters if chosen.
ENGINES: dict[str, str] = {
    "pocketsphinx": "vidfarm.transcribe.engines.pocketsphinx",
    "vosk": "vidfarm.transcribe.engines.vosk",
    "whisper": "vidfarm.transcribe.engines.whisper",
}
#: The setting that holds each engine's model folders, named in errors.
MODEL_SETTINGS: dict[str, str] = {
    "pocketsphinx": "transcription_pocketsphinx_models",
    "vosk": "transcription_vosk_models",
    "whisper": "transcription_whisper_models",
}


def env_name(setting: str) -> str:
    return f"VIDFARM_{setting.upper()}"


def resolve(language: str, settings: Settings) -> EngineSpec:
    """Pick the engine and model for `language`, or say which languages are configured."""
    lang = language.strip().lower()
    engine = settings.transcription_engines.get(lang)
    if engine is None:
        configured = ", ".join(sorted(settings.transcription_engines)) or "none"
        raise InvalidParameters(
            f"no transcription engine for language {language!r} (configured: {configured}; "
            f"see {env_name('transcription_engines')})"
        )
    if engine not in ENGINES:
        raise ConfigError(
            f"{env_name('transcription_engines')}: unknown engine {engine!r} for {lang!r} "
            f"(known: {', '.join(sorted(ENGINES))})"
        )
    models: dict[str, Path] = getattr(settings, MODEL_SETTINGS[engine])
    return EngineSpec(engine=engine, language=lang, model=models.get(lang))


def require_model(spec: EngineSpec, example: str) -> Path:
    """The model folder of `spec`, or a one-line error naming the setting to fix."""
    setting = env_name(MODEL_SETTINGS[spec.engine])
    if spec.model is None:
        raise ConfigError(
            f"no {spec.engine} model for {spec.language!r}: set {setting} to a local folder, "
            f'e.g. {{"{spec.language}": "{example}"}} (models are never downloaded)'
        )
    if not spec.model.is_dir():
        raise ConfigError(f"{setting}[{spec.language!r}]: {spec.model} is not a folder")
    return spec.model


def import_optional(module: str, package: str, engine: str) -> ModuleType:
    """Import an engine's package, or explain how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"the {engine} engine needs the {package!r} package: pip install {package}"
        ) from None


class _Cache:
    """Idle engines per spec; `borrow` hands one out exclusively and takes it back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[EngineSpec, list[Engine]] = {}
        self.loads = 0  # how many models this process loaded: tests check it stays at one

    @contextmanager
    def borrow(self, spec: EngineSpec, settings: Settings) -> Iterator[Engine]:
        with self._lock:
            idle = self._idle.setdefault(spec, [])
            engine = idle.pop() if idle else None
        if engine is None:
            module = importlib.import_module(ENGINES[spec.engine])
            engine = module.load(spec, settings)
            with self._lock:
                self.loads += 1
        try:
            yield engine
        finally:
            with self._lock:
                self._idle[spec].append(engine)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()


CACHE = _Cache()


def borrow_engine(language: str, settings: Settings) -> AbstractContextManager[Engine]:
    """`with borrow_engine("en", settings) as engine:` a loaded engine, cached per process."""
    return CACHE.borrow(resolve(language, settings), settings)
