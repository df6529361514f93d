"""One Settings class for the whole farm, read from VIDFARM_* environment variables.

Bad values fail at start with a single line (see `load_settings`), never later in a worker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vidfarm.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIDFARM_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path("vidfarm-data"), description="Folder for the database, media and profiles."
    )
    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty means SQLite in the data folder."
    )
    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1, description="Jobs the embedded worker pool runs at once."
    )
    default_profile: str = Field(
        default="default", description="Encoding profile used when a job names none."
    )
    profiles_dir: Path | None = Field(
        default=None, description="Extra profile TOML files; empty means <data_dir>/profiles."
    )
    ffmpeg: str = Field(
        default="", description="ffmpeg executable; empty means PATH, else the imageio-ffmpeg one."
    )
    lease_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0, description="How long a claimed job stays owned without a heartbeat."
    )
    max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description="Attempts per job before it fails for good."
    )
    retry_base_seconds: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=10.0, description="First retry delay; doubles per attempt, with jitter."
    )
    retry_max_seconds: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=900.0, description="Ceiling of the retry delay."
    )
    time_limit_factor: Annotated[float, Field(gt=0)] = Field(
        default=20.0, description="An encode may run this many times the media duration..."
    )
    time_limit_min_seconds: Annotated[float, Field(gt=0)] = Field(
        default=300.0, description="...but never less than this many seconds."
    )
    poll_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0, description="How often idle workers and the reconciler look at SQL."
    )
    storage: Literal["local", "s3"] = Field(
        default="local", description="Where media lives: a local folder or an S3 bucket."
    )
    s3_endpoint_url: str = Field(
        default="", description="S3 API endpoint (MinIO, Ceph, ...); empty means AWS."
    )
    s3_bucket: str = Field(default="vidfarm", description="S3 bucket holding all media.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_access_key_id: str = Field(
        default="", description="S3 access key; empty uses boto3's chain."
    )
    s3_secret_access_key: SecretStr = Field(
        default=SecretStr(""), description="S3 secret key; never printed."
    )
    s3_presign_seconds: Annotated[int, Field(ge=60, le=604800)] = Field(
        default=3600, description="Lifetime of presigned media URLs."
    )
    max_upload_bytes: Annotated[int, Field(ge=1)] = Field(
        default=20 * 1024**3, description="Largest accepted upload (bytes); larger is a 413."
    )
    transcription_engines: dict[str, str] = Field(
        default={"en": "pocketsphinx"},
        description='Engine per spoken language, e.g. {"en": "pocketsphinx", "fr": "vosk"}.',
    )
    transcription_pocketsphinx_models: dict[str, Path] = Field(
        default={},
        description="pocketsphinx model folders per language; English uses the bundled model.",
    )
    transcription_vosk_models: dict[str, Path] = Field(
        default={}, description="Vosk model folders per language (never downloaded)."
    )
    transcription_whisper_models: dict[str, Path] = Field(
        default={},
        description="faster-whisper (CTranslate2) model folders per language (never downloaded).",
    )
    transcription_whisper_compute_type: str = Field(
        default="int8", description="faster-whisper compute type on CPU (int8, float32, ...)."
    )
    transcription_loudnorm: bool = Field(
        default=False, description="EBU R128 loudness normalisation (-16 LUFS) before recognition."
    )
    transcription_chunk_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0, description="Seconds of PCM read from ffmpeg per chunk."
    )
    transcription_window_seconds: Annotated[float, Field(ge=5, le=600)] = Field(
        default=30.0, description="Audio window handed to window-based engines (faster-whisper)."
    )
    transcription_max_line_length: Annotated[int, Field(ge=10, le=200)] = Field(
        default=42, description="Longest caption line in characters."
    )
    transcription_strict_accessibility: bool = Field(
        default=False, description="Strict accessibility mode: lines of at most 32 characters."
    )
    transcription_pause_seconds: Annotated[float, Field(gt=0, le=10)] = Field(
        default=0.5, description="A silence this long between words starts a new cue."
    )
    transcription_min_cue_seconds: Annotated[float, Field(ge=0, le=10)] = Field(
        default=1.0, description="Shortest cue shown (stretched into the following gap)."
    )
    transcription_max_cue_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=7.0, description="Longest cue shown."
    )
    auto_encode: bool = Field(
        default=True, description="Start the default encode as soon as a video is uploaded."
    )
    public_media: bool = Field(default=False, description="Serve published media without a token.")
    xapi_enabled: bool = Field(
        default=False, description="Accept player events on /xapi/video/ and deliver them."
    )
    xapi_anonymize_actor: bool = Field(
        default=True, description="Actor name is an HMAC of the user id, not the user's name."
    )
    xapi_actor_name: Literal["username", "uuid", "email"] = Field(
        default="username", description="Actor name when not anonymised."
    )
    xapi_actor_secret: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC key for anonymised actors; empty: <data_dir>/xapi-actor-secret.",
    )
    xapi_base_url: str = Field(
        default="",
        description="Public URL of vidfarm (activity ids, actor homePage); empty: host:port.",
    )
    xapi_lrs_url: str = Field(
        default="", description="LRS xAPI endpoint (statements are POSTed to <url>/statements)."
    )
    xapi_lrs_login: str = Field(default="", description="LRS Basic auth user.")
    xapi_lrs_password: SecretStr = Field(
        default=SecretStr(""), description="LRS Basic auth password; never printed."
    )
    xapi_batch_size: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=100, description="Statements per POST to the LRS."
    )
    xapi_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        default=10.0, description="Time limit of one request to the LRS."
    )
    xapi_retry_base_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=2.0, description="First delay after a 5xx or timeout; doubles, with jitter."
    )
    xapi_retry_max_seconds: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=300.0, description="Ceiling of the retry delay."
    )
    xapi_pause_seconds: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=60.0, description="While the LRS refuses our credentials, try again this often."
    )
    host: str = Field(default="127.0.0.1", description="Address `vidfarm serve` listens on.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8000, description="Port `vidfarm serve` listens on."
    )

    @model_validator(mode="after")
    def _check_retry(self) -> Settings:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds must be >= retry_base_seconds")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'vidfarm.db').resolve()}"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def user_profiles_dir(self) -> Path:
        return self.profiles_dir or self.data_dir / "profiles"


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "settings"
    name = f"VIDFARM_{where.upper()}" if first["loc"] else "settings"
    return f"invalid setting {name}: {first['msg']} (got {first.get('input')!r})"


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one ConfigError."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
