"""Pod's own settings, by Pod's own names: from the environment or the site's settings_local.py.

A Pod site already has `pod/custom/settings_local.py`. It is Python, but it is never executed
here: only top-level assignments of literals (strings, numbers, booleans, None, lists, dicts)
are read, with `ast.literal_eval`; anything else is skipped. The environment wins over the file.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidfarm.errors import ConfigError

#: The settings Pod's workers read (shared/reference/pod-celery.md, section 6).
NAMES = (
    "ENCODING_TRANSCODING_CELERY_BROKER_URL",
    "XAPI_CELERY_BROKER_URL",
    "POD_API_URL",
    "POD_API_TOKEN",
    "MEDIA_ROOT",
    "USE_TRANSCRIPTION",
    "TRANSCRIPTION_TYPE",
    "TRANSCRIPTION_MODEL_PARAM",
    "TRANSCRIPTION_NORMALIZE",
    "XAPI_LRS_URL",
    "XAPI_LRS_LOGIN",
    "XAPI_LRS_PWD",
)


@dataclass(frozen=True, kw_only=True)
class PodSettings:
    encoding_broker: str = ""
    xapi_broker: str = ""
    api_url: str = ""
    api_token: str = field(default="", repr=False)
    media_root: Path | None = None
    use_transcription: bool = False
    transcription_type: str = "WHISPER"
    transcription_models: dict[str, dict[str, Any]] = field(default_factory=dict)
    transcription_normalize: bool = False
    lrs_url: str = ""
    lrs_login: str = ""
    lrs_password: str = field(default="", repr=False)

    def broker_for(self, queue: str) -> str:
        """Pod's `xapi` queue lives on XAPI_CELERY_BROKER_URL, the others on the encoding one."""
        return self.xapi_broker if queue == "xapi" else self.encoding_broker


def read_settings_local(path: Path) -> dict[str, Any]:
    """Literal top-level assignments of a settings_local.py, without executing it."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--pod-settings {path}: cannot read it ({error})") from None
    except SyntaxError as error:
        raise ConfigError(f"--pod-settings {path}: not Python (line {error.lineno})") from None
    found: dict[str, Any] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue  # an expression (os.environ[...], a call): not ours to evaluate
        for target in targets:
            if isinstance(target, ast.Name) and target.id in NAMES:
                found[target.id] = value
    return found


def load_pod_settings(environ: Mapping[str, str], settings_file: Path | None = None) -> PodSettings:
    """Pod's settings: settings_local.py's literals, overridden by the environment."""
    values: dict[str, Any] = read_settings_local(settings_file) if settings_file else {}
    for name in NAMES:
        if name in environ:
            values[name] = _from_environment(name, environ[name])
    models = values.get("TRANSCRIPTION_MODEL_PARAM") or {}
    if not isinstance(models, dict):
        raise ConfigError("TRANSCRIPTION_MODEL_PARAM: expected {TYPE: {lang: {model, ...}}}")
    kind = str(values.get("TRANSCRIPTION_TYPE") or "WHISPER").upper()
    media_root = values.get("MEDIA_ROOT")
    return PodSettings(
        encoding_broker=str(values.get("ENCODING_TRANSCODING_CELERY_BROKER_URL") or ""),
        xapi_broker=str(values.get("XAPI_CELERY_BROKER_URL") or ""),
        api_url=str(values.get("POD_API_URL") or ""),
        api_token=str(values.get("POD_API_TOKEN") or ""),
        media_root=Path(media_root) if media_root else None,
        use_transcription=bool(values.get("USE_TRANSCRIPTION", False)),
        transcription_type=kind,
        transcription_models=dict(models.get(kind) or {}),
        transcription_normalize=bool(values.get("TRANSCRIPTION_NORMALIZE", False)),
        lrs_url=str(values.get("XAPI_LRS_URL") or ""),
        lrs_login=str(values.get("XAPI_LRS_LOGIN") or ""),
        lrs_password=str(values.get("XAPI_LRS_PWD") or ""),
    )


def _from_environment(name: str, text: str) -> Any:
    """Booleans and the model table come as text: JSON (or Python's True/False) is accepted."""
    if name in ("USE_TRANSCRIPTION", "TRANSCRIPTION_NORMALIZE"):
        return text.strip().lower() in ("1", "true", "yes", "on")
    if name == "TRANSCRIPTION_MODEL_PARAM":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{name}: not valid JSON ({error.msg})") from None
    return text
