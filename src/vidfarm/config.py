"""One Settings class for the whole farm, read from VIDFARM_* environment variables.

Bad values fail at start with a single line (see `load_settings`), never later in a worker.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vidfarm.errors import ConfigError

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+/?$")
#: One CSP frame-ancestors source: a keyword, a scheme, or a host with optional scheme/port.
_ANCESTOR = re.compile(
    r"^(\*|'self'|'none'|https?:|(https?://)?(\*\.)?[A-Za-z0-9.-]+(:([0-9]{1,5}|\*))?)$"
)


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
    embedded_pool: bool = Field(
        default=True, description="Run the embedded pool in serve; false: API-only replica."
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
    chunk_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        default=60.0, description="Chunked encodes: media seconds per chunk (segment multiple)."
    )
    chunk_min_seconds: Annotated[float, Field(ge=0)] = Field(
        default=120.0, description="Media shorter than this is encoded in one pass."
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
    min_free_bytes: Annotated[int, Field(ge=0)] = Field(
        default=256 * 1024**2,
        description="Below this much free space in the data or work folder, /readyz says 503.",
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
    media_url_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = Field(
        default=6 * 3600, description="Lifetime of signed media URLs (/media/s/...)."
    )
    media_signing_key: SecretStr = Field(
        default=SecretStr(""),
        description="HMAC key of signed media URLs; empty: <data_dir>/media-signing-key.",
    )
    media_url_scheme: Literal["hmac", "nginx"] = Field(
        default="hmac", description="`nginx`: secure_link URLs nginx checks (deploy nginx)."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to call the API and load media from a browser; `*` "
        "applies to media only (signed URLs, public media, embeds), never to the API.",
    )
    embed_frame_ancestors: str = Field(
        default="*",
        description="CSP frame-ancestors of /embed/ pages, who may iframe them: `*`, `'self'`, "
        "`'none'` or origins like `https://pod.example.org https://*.example.org`.",
    )
    metrics_public: bool = Field(
        default=False, description="Serve /metrics without a token (else any valid token)."
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        """`https://a,https://b` from the environment; each an origin (scheme://host[:port])."""
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for origin in value:
                if origin != "*" and not _ORIGIN.match(str(origin)):
                    raise ValueError(f"{origin!r} is not an origin like https://pod.example.org")
            return [str(origin).rstrip("/") for origin in value]
        return value

    @field_validator("embed_frame_ancestors")
    @classmethod
    def _check_ancestors(cls, value: str) -> str:
        """Sources only: a `;` or a newline would smuggle other directives into the header."""
        sources = value.split()
        if not sources or not all(_ANCESTOR.match(source) for source in sources):
            raise ValueError(
                f"{value!r} is not a frame-ancestors list like 'self' https://pod.example.org"
            )
        return " ".join(sources)

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
    dispatcher: Literal["auto", "local", "celery", "runners"] = Field(
        default="auto",
        description="Job transport: auto = celery when VIDFARM_BROKER_URL is set, else local.",
    )
    broker_url: str = Field(
        default="", description="Celery broker (redis://... or amqp://...); empty: embedded pool."
    )
    result_backend: str = Field(
        default="",
        description="Celery result backend (redis://...): live PROGRESS for Flower; empty: none.",
    )
    # Prefixed so they never meet another application's queues on a shared broker (Pod uses
    # `encoding`, `transcripting` and `xapi`).
    queue_encoding: str = Field(default="vidfarm.encoding", description="Celery queue for encodes.")
    queue_transcription: str = Field(
        default="vidfarm.transcription", description="Celery queue for transcriptions."
    )
    queue_xapi: str = Field(default="vidfarm.xapi", description="Celery queue for xAPI delivery.")
    queue_dead: str = Field(
        default="vidfarm.dead",
        description="Where a worker moves messages found on vidfarm's queues that are not its own.",
    )
    broker_visibility_timeout: Annotated[int, Field(ge=60)] = Field(
        default=43200,
        description="Seconds before Redis redelivers an unacknowledged task; > longest job.",
    )
    republish_after_seconds: Annotated[float, Field(gt=0, le=86400)] = Field(
        default=60.0,
        description="A job queued this long that the broker does not hold is published again.",
    )
    api_url: str = Field(
        default="", description="Control plane URL remote workers report to (Celery workers)."
    )
    worker_token: SecretStr = Field(
        default=SecretStr(""), description="API token (role worker) of a remote worker."
    )
    priority_classes: dict[str, int] = Field(
        default={"staff": 6, "faculty": 6, "employee": 6, "member": 3, "student": 0},
        description="Job priority per submitter class (Pod: staff before students).",
    )
    short_job_seconds: Annotated[float, Field(ge=0)] = Field(
        default=300.0, description="Media at most this long get short_job_boost priority."
    )
    short_job_boost: Annotated[int, Field(ge=0, le=9)] = Field(
        default=2, description="Priority added to short jobs so they pass long encodes."
    )
    runner_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default=[],
        description="Tokens clients (Esup-Pod) use to call `vidfarm runner`: comma or JSON list.",
    )
    runner_capacity: Annotated[int, Field(ge=1, le=64)] | None = Field(
        default=None,
        description="Tasks `vidfarm runner` runs at once; empty: a quarter of the cores, 2 to 8.",
    )
    runner_allow_private_urls: bool = Field(
        default=False,
        description="Let source_url/notify_url reach private and loopback addresses (tests, LAN).",
    )
    runner_max_source_bytes: Annotated[int, Field(ge=1)] = Field(
        default=20 * 1024**3, description="Largest source file a runner task downloads (bytes)."
    )
    runner_task_retention_days: float = Field(
        default=60.0, description="Days before finished runner tasks and files go; <=0: never."
    )
    runner_notify_retries: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5, description="Tries to deliver a task's end notification before `warning`."
    )
    runner_notify_backoff: Annotated[float, Field(ge=0, le=86400)] = Field(
        default=60.0, description="Seconds before the 2nd notification try; x1.5 per try."
    )
    runner_notify_timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        default=15.0,
        description="Seconds to wait for the answer to a notification (as Esup-Runner).",
    )
    runner_default_language: str = Field(
        default="en", description="Transcription language when a task says `auto` or nothing."
    )

    @field_validator("runner_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """`a,b` or `["a", "b"]` from the environment; blanks are dropped."""
        if isinstance(value, str):
            text = value.strip()
            try:
                items = json.loads(text) if text.startswith("[") else text.split(",")
            except json.JSONDecodeError:
                raise ValueError("expected a comma-separated list or a JSON list") from None
            if not isinstance(items, list):
                raise ValueError("expected a comma-separated list or a JSON list")
            return [str(item).strip() for item in items if str(item).strip()]
        return value

    runners_public_url: str = Field(
        default="",
        description="Public base URL of this control plane for runner managers (notify_url, "
        "source_url); empty: http://host:port.",
    )
    runners_etab_name: str = Field(
        default="vidfarm", description="`etab_name` sent to runner managers with each task."
    )
    runners_check_after_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = Field(
        default=20.0,
        description="Ask a manager about each running task this often (status and progress); "
        "silent for 3 times as long, its job goes to another manager. Pod: 2 h.",
    )
    runners_request_timeout: Annotated[float, Field(gt=0, le=600)] = Field(
        default=30.0, description="Time limit of one request to a runner manager (Pod: 30 s)."
    )
    runners_max_refusals: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3,
        description="Submission passes in which managers refused a job (4xx) before it fails.",
    )
    runners_busy_seconds: Annotated[float, Field(ge=0, le=3600)] = Field(
        default=30.0,
        description="A manager that answered 503 or failed is not asked again for this long.",
    )
    runners_import_backoff_seconds: Annotated[float, Field(ge=0, le=60)] = Field(
        default=0.5, description="First delay between result download tries; doubles, jitter."
    )
    runners_tasks_deleted_after_days: float = Field(
        default=60.0, description="Days before finished runner assignments are purged; <=0: never."
    )
    runners_allow_private_urls: bool = Field(
        default=False,
        description="Allow runner manager URLs on private or loopback addresses (LAN, tests).",
    )
    runners_secret_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key encrypting manager tokens at rest; empty: <data_dir>/runner-secret-key.",
    )
    host: str = Field(default="127.0.0.1", description="Address `vidfarm serve` listens on.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        default=8000, description="Port `vidfarm serve` listens on."
    )

    @model_validator(mode="after")
    def _check_retry(self) -> Settings:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds must be >= retry_base_seconds")
        if self.dispatcher == "celery" and not self.broker_url:
            raise ValueError("VIDFARM_DISPATCHER=celery needs VIDFARM_BROKER_URL")
        return self

    @property
    def transport(self) -> Literal["local", "celery", "runners"]:
        """The dispatcher actually used: `auto` picks Celery when a broker is configured."""
        if self.dispatcher == "auto":
            return "celery" if self.broker_url else "local"
        return self.dispatcher

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
    secret = any(word in where for word in ("token", "secret", "password"))
    got = "a hidden value" if secret else repr(first.get("input"))  # never print a secret
    return f"invalid setting {name}: {first['msg']} (got {got})"


def load_settings() -> Settings:
    """Read settings from the environment, turning validation errors into one ConfigError."""
    try:
        return Settings()
    except ValidationError as error:
        raise ConfigError(_one_line(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
