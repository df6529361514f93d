"""Pod's `start_transcripting_task`: the mp3 Pod names, vidfarm's engine, Pod's callback.

The audio streams through ffmpeg to the engine (constant memory, where Pod's worker loaded it
whole); the WebVTT is written to `MEDIA_ROOT/temp/tmpXXXXXXXX.vtt` (Pod reads the same file
name under its own MEDIA_ROOT: the folder is shared) and Pod is told with
`store_remote_transcripted_video`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from vidfarm.config import Settings
from vidfarm.errors import ConfigError
from vidfarm.media.pod_dressing import check_local_file
from vidfarm.pod_worker.callbacks import PodApi
from vidfarm.pod_worker.settings import PodSettings
from vidfarm.transcribe.job import transcribe_file

log = logging.getLogger(__name__)

CALLBACK = "store_remote_transcripted_video"


def engine_settings(settings: Settings, pod: PodSettings) -> Settings:
    """vidfarm's engines, plus Pod's TRANSCRIPTION_MODEL_PARAM where it names a usable model.

    Vosk model folders map as they are. Pod's WHISPER models are openai-whisper checkpoints
    (`<download_root>/<model>.pt`), which faster-whisper cannot load: a Whisper language maps
    only when `<download_root>/<model>` is a CTranslate2 model folder (docs/pod.md says how to
    convert one); otherwise vidfarm's own VIDFARM_TRANSCRIPTION_* settings decide.
    """
    engines = dict(settings.transcription_engines)
    vosk = dict(settings.transcription_vosk_models)
    whisper = dict(settings.transcription_whisper_models)
    for language, param in pod.transcription_models.items():
        lang = str(language).lower()
        model = Path(str(param.get("model") or ""))
        if pod.transcription_type == "VOSK" and model.is_dir():
            engines.setdefault(lang, "vosk")
            vosk.setdefault(lang, model)
        elif pod.transcription_type == "WHISPER":
            folder = Path(str(param.get("download_root") or "")) / model
            if (folder / "model.bin").is_file():
                engines.setdefault(lang, "whisper")
                whisper.setdefault(lang, folder)
    return settings.model_copy(
        update={
            "transcription_engines": engines,
            "transcription_vosk_models": vosk,
            "transcription_whisper_models": whisper,
            "transcription_loudnorm": settings.transcription_loudnorm
            or pod.transcription_normalize,
        }
    )


def transcribe_for_pod(
    pod: PodSettings,
    settings: Settings,
    api: PodApi,
    *,
    video_id: int,
    mp3_path: str,
    language: str,
) -> Path:
    """Transcribe, write the VTT where Pod reads it, call Pod back; returns the VTT's path."""
    if pod.media_root is None:
        raise ConfigError("MEDIA_ROOT is not set: Pod's files cannot be found")
    source = check_local_file(mp3_path, [pod.media_root], "mp3filepath")
    transcript = transcribe_file(source, language=language, settings=settings, name=source.name)
    temp = pod.media_root / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix="tmp", suffix=".vtt.part", dir=temp)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(transcript.webvtt())
    target = Path(partial.removesuffix(".part"))
    os.replace(partial, target)  # Pod never reads half a file
    message = (
        f"vidfarm {transcript.engine} ({transcript.language}): {len(transcript.cues)} cues, "
        f"{transcript.duration:.0f} s in {transcript.wall_seconds:.0f} s"
    )
    body = {"video_id": video_id, "msg": message, "temp_vtt_file": str(target)}
    api.post(CALLBACK, {"id": video_id}, body)
    log.info("video %s: transcription (%s) sent to Pod: %s", video_id, language, target.name)
    return target
