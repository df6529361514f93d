"""The error tree: every error says whether retrying could help.

Permanent errors (bad input, bad parameters) fail a job at once with one clear line.
Transient errors (infrastructure trouble) are retried with backoff up to the job's limit.
"""

from __future__ import annotations


class VidfarmError(Exception):
    """Base of every error vidfarm raises on purpose; `str()` is the one line users see."""

    permanent: bool = True

    @property
    def error_class(self) -> str:
        return type(self).__name__


class ConfigError(VidfarmError):
    """A setting or profile is invalid; raised at start."""


class PermanentError(VidfarmError):
    permanent = True


class TransientError(VidfarmError):
    permanent = False


class InvalidMedia(PermanentError):
    """The input is not usable media: empty, corrupt, not audio/video, a still image."""


class InvalidParameters(PermanentError):
    """A job asked for something impossible (unknown profile, cut outside the media, ...)."""


class TooLarge(InvalidParameters):
    """An upload or download is larger than the configured limit."""


class NotFound(PermanentError):
    """A video, output or stored object does not exist."""


class FFmpegFailed(PermanentError):
    """ffmpeg exited with an error that retrying will not fix."""

    def __init__(self, message: str, *, exit_code: int | None, log_tail: list[str]) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.log_tail = log_tail


class FFmpegInterrupted(TransientError):
    """ffmpeg died from a signal or ran out of a machine resource; another try may work."""

    def __init__(self, message: str, *, exit_code: int | None, log_tail: list[str]) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.log_tail = log_tail


class JobTimedOut(PermanentError):
    """The job ran past its time limit (derived from the media duration)."""


class JobCancelled(PermanentError):
    """Someone cancelled the job while it ran."""


class OutOfSpace(TransientError):
    """A disk is full: the job waits for space (longer backoff, the attempt not counted).

    The log tail is the line that said so (ffmpeg's or the OS's), never a traceback.
    """

    def __init__(self, message: str, *, log_tail: list[str] | None = None) -> None:
        super().__init__(message)
        self.log_tail = log_tail or [message]


#: What the OS and SQLite say when a disk is full (ENOSPC, EDQUOT, SQLITE_FULL).
_FULL_DISK_ERRNOS = (28, 122)
_FULL_DISK_TEXT = ("No space left on device", "Disk quota exceeded", "database or disk is full")


def out_of_space(error: BaseException) -> OutOfSpace | None:
    """The OutOfSpace an exception (or its cause) really is, or None."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OutOfSpace):
            return seen
        if isinstance(seen, OSError) and seen.errno in _FULL_DISK_ERRNOS:
            line = f"{seen.strerror}: {seen.filename}" if seen.filename else str(seen.strerror)
            return OutOfSpace(f"out of disk space: {line}", log_tail=[line])
        text = str(seen)
        if any(marker in text for marker in _FULL_DISK_TEXT):
            line = text.splitlines()[0] if text else "no space left"
            return OutOfSpace(f"out of disk space: {line}", log_tail=[line])
        seen = seen.__cause__ or seen.__context__
    return None


class StorageUnavailable(TransientError):
    """The media store could not be read or written."""


class DatabaseUnavailable(TransientError):
    """The SQL database could not be reached."""


class JobNotFound(VidfarmError):
    """No job has this id."""


class StaleAttempt(VidfarmError):
    """A report carried a fencing token that is not the job's current attempt."""


class InvalidTransition(VidfarmError):
    """The job is not in a state that allows this operation."""


class LeaseExpired(TransientError):
    """A running job's lease ran out: its worker died or lost contact; the job is retried."""


class UnexpectedError(TransientError):
    """A bug or an unforeseen exception in the worker core; retried, as it may be transient.

    The message keeps the original exception's class name so the cause stays visible.
    """

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__name__}: {original}")
        self.original_class = type(original).__name__


class WorkerUnreachable(TransientError):
    """A remote worker cannot reach the control plane's API (URL, token or network)."""


class ControlPlaneDown(WorkerUnreachable):
    """No answer or a 5xx from the control plane: it (or its database) is down for now,
    unlike a refused token or request, which waiting does not fix."""


class ReportedError(VidfarmError):
    """A failure reported over HTTP by a remote worker: its class name and permanence kept."""

    def __init__(self, message: str, *, error_class: str, permanent: bool) -> None:
        super().__init__(message)
        self._class = error_class
        self.permanent = permanent

    @property
    def error_class(self) -> str:
        return self._class


def error_from_report(error_class: str, message: str, *, permanent: bool) -> VidfarmError:
    """Rebuild a remote worker's error; cancellations and timeouts keep their own meaning."""
    if error_class == JobTimedOut.__name__:
        return JobTimedOut(message)
    if error_class == JobCancelled.__name__:
        return JobCancelled(message)
    if error_class == OutOfSpace.__name__:
        return OutOfSpace(message)
    return ReportedError(message, error_class=error_class, permanent=permanent)
