"""A real Learning Record Store for tests: Ralph, in a virtual environment of its own.

Ralph's `lrs` extra pins old FastAPI/Starlette, so it never enters the project's venv. The
venv is created on first use under ~/.cache/vidfarm-test/ralph-venv (env VIDFARM_RALPH_VENV)
and reused after. Ralph runs once per test session with its filesystem backend on a free
loopback port, with a user created by `ralph auth`. When it cannot be installed the tests skip
with the reason, and fail when CI is set.

Ralph's fs backend writes with operation type CREATE, so every POST after the first one fails
("fs_lrs.jsonl already exists"; seen in 4.2.0 and 5.1.0). The launcher sets its default write
mode to APPEND before starting uvicorn: everything else is Ralph as shipped.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services import free_port
from vidfarm.xapi.lrs import LrsClient

RALPH_SPEC = "ralph-malph[cli,lrs]==5.1.0"
RALPH_USER = "vidfarm"
RALPH_PASSWORD = "vidfarm-ralph-secret"
RALPH_AGENT = "mailto:vidfarm-test@example.com"
_LAUNCHER = """\
import sys
import uvicorn
from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend
FSLRSBackend.default_operation_type = BaseOperationType.APPEND  # see tests/fixtures_ralph.py
uvicorn.run("ralph.api:app", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


class RalphUnavailable(Exception):
    """Ralph could not be installed or started on this machine."""


def ralph_venv() -> Path:
    default = Path.home() / ".cache" / "vidfarm-test" / "ralph-venv"
    return Path(os.environ.get("VIDFARM_RALPH_VENV", default)).expanduser()


def ensure_ralph(venv: Path | None = None) -> Path:
    """The Ralph venv's python, installing Ralph (and requests) there on first use."""
    venv = venv or ralph_venv()
    python = venv / "bin" / "python"
    marker = venv / ".vidfarm-installed"
    if marker.is_file() and marker.read_text() == RALPH_SPEC and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f".{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time
        if marker.is_file() and marker.read_text() == RALPH_SPEC and python.exists():
            return python
        base = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", RALPH_SPEC, "requests"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                tail = " ".join((done.stderr or done.stdout).split())[-300:]
                raise RalphUnavailable(f"cannot install {RALPH_SPEC} in {venv}: {tail}")
        marker.write_text(RALPH_SPEC)
    return python


class Ralph:
    """One Ralph server on a data folder that survives stop()/start() (an LRS restart)."""

    def __init__(self, python: Path, workdir: Path) -> None:
        self.python = python
        self.workdir = workdir
        self.app_dir = workdir / "app"
        self.data_dir = workdir / "data"
        self.log = workdir / "ralph.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "launch.py").write_text(_LAUNCHER)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RALPH_")},
            "RALPH_APP_DIR": str(self.app_dir),
            "RALPH_RUNSERVER_BACKEND": "fs",
            "RALPH_BACKENDS__LRS__FS__DEFAULT_DIRECTORY_PATH": str(self.data_dir),
        }
        self._create_user()

    @property
    def url(self) -> str:
        """The xAPI endpoint: statements live at <url>/statements."""
        return f"http://127.0.0.1:{self.port}/xAPI"

    def _create_user(self) -> None:
        ralph = self.python.parent / "ralph"
        command = [str(ralph), "auth", "-u", RALPH_USER, "-p", RALPH_PASSWORD, "-s", "all"]
        done = subprocess.run(
            [*command, "-M", RALPH_AGENT, "-w"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            tail = " ".join(done.stderr.split())[-300:]
            raise RalphUnavailable(f"ralph auth failed: {tail}")

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [str(self.python), str(self.workdir / "launch.py"), str(self.port)],
                env=self.env,
                cwd=self.workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RalphUnavailable(f"ralph exited: {self.log.read_text()[-500:]}")
            try:
                answer = httpx.get(
                    f"http://127.0.0.1:{self.port}/__heartbeat__",
                    auth=(RALPH_USER, RALPH_PASSWORD),
                    timeout=1,
                )
                if answer.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RalphUnavailable(f"ralph did not answer on port {self.port} in {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def client(self, password: str = RALPH_PASSWORD) -> LrsClient:
        return LrsClient(url=self.url, login=RALPH_USER, password=password, timeout=10)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the LRS tests are required)")
    pytest.skip(reason)


def pytest_sessionstart(session: pytest.Session) -> None:
    """On a fresh machine (CI), install Ralph in the background while the first tests run.

    The install takes most of a minute; the `ralph` fixture then finds it done, or waits on
    the same lock. Only the controlling process starts it (xdist workers have `workerinput`);
    a failed background install is retried by the fixture, which reports its error.
    """
    venv = ralph_venv()
    marker = venv / ".vidfarm-installed"
    if hasattr(session.config, "workerinput") or (
        marker.is_file() and marker.read_text() == RALPH_SPEC
    ):
        return
    subprocess.Popen(
        [sys.executable, __file__],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def ralph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ralph]:
    """Ralph, started once for the whole session; tests tell their statements apart by id."""
    try:
        server = Ralph(ensure_ralph(), tmp_path_factory.mktemp("ralph"))
        server.start()
    except (RalphUnavailable, OSError, subprocess.TimeoutExpired) as error:
        _unavailable(f"Ralph LRS unavailable: {error}")
        raise  # unreachable: skip/fail raise
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":  # the background install of pytest_sessionstart
    ensure_ralph()
