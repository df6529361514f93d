"""Pod worker parts: Pod's settings file read without running it, callbacks retried right."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from vidfarm.errors import ConfigError
from vidfarm.pod_worker.callbacks import PodApi, PodRefused, PodUnreachable
from vidfarm.pod_worker.settings import load_pod_settings, read_settings_local
from vidfarm.pod_worker.xapi import lrs_base

SETTINGS_LOCAL = """
import os
from pathlib import Path

DEBUG = False
MEDIA_ROOT = "/data/pod/media"
POD_API_URL = "https://pod.univ.example/rest/"
POD_API_TOKEN = os.environ["POD_TOKEN"]  # an expression: not ours to evaluate
ENCODING_TRANSCODING_CELERY_BROKER_URL = "redis://redis:6379/5"
XAPI_CELERY_BROKER_URL: str = "redis://redis:6379/6"
USE_TRANSCRIPTION = True
TRANSCRIPTION_TYPE = "VOSK"
TRANSCRIPTION_MODEL_PARAM = {
    "VOSK": {"fr": {"model": "/opt/vosk/fr", "download_root": ""}},
    "WHISPER": {"fr": {"model": "small", "download_root": "/opt/whisper"}},
}
open("/tmp/pod-settings-were-executed", "w").write("oops")
XAPI_LRS_URL = "https://ralph.univ.example/xAPI/statements/"
"""


def test_settings_local_is_read_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "settings_local.py"
    path.write_text(SETTINGS_LOCAL)
    marker = Path("/tmp/pod-settings-were-executed")
    marker.unlink(missing_ok=True)
    values = read_settings_local(path)
    assert not marker.exists()
    assert "POD_API_TOKEN" not in values and "DEBUG" not in values  # an expression; not Pod's
    pod = load_pod_settings({"POD_API_TOKEN": "from-env", "USE_TRANSCRIPTION": "false"}, path)
    assert pod.api_url == "https://pod.univ.example/rest/" and pod.api_token == "from-env"
    assert pod.media_root == Path("/data/pod/media") and pod.use_transcription is False
    assert pod.broker_for("transcripting") == "redis://redis:6379/5"
    assert pod.broker_for("xapi") == "redis://redis:6379/6"  # an annotated assignment too
    assert pod.transcription_models == {"fr": {"model": "/opt/vosk/fr", "download_root": ""}}
    assert "from-env" not in repr(pod)


def test_bad_settings_are_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "settings_local.py"
    broken.write_text("POD_API_URL = 'x'\nif True\n")
    with pytest.raises(ConfigError, match="not Python"):
        read_settings_local(broken)
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_pod_settings({"TRANSCRIPTION_MODEL_PARAM": "{oops"})


def test_pods_lrs_url_form() -> None:
    assert lrs_base("https://ralph.univ.example/xAPI/statements/") == (
        "https://ralph.univ.example/xAPI"
    )
    assert lrs_base("https://ralph.univ.example/xAPI") == "https://ralph.univ.example/xAPI"


class Pod:
    """Answers each callback with the next status of `script` (then 200)."""

    script: list[int] = []
    seen: list[dict[str, Any]] = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Pod.seen.append({"path": self.path, "auth": self.headers["Authorization"], "body": body})
        status = Pod.script.pop(0) if Pod.script else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture
def pod_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Pod.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/rest/"
    server.shutdown()
    server.server_close()


def api(url: str, tries: int = 4) -> PodApi:
    return PodApi(url=url, token="tok", tries=tries, retry_base=0, sleep=lambda _: None)


def test_callbacks_retry_5xx_then_succeed(pod_url: str) -> None:
    Pod.script = [502, 503]
    answer = api(pod_url).post("store_remote_transcripted_video", {"id": 7}, {"video_id": 7})
    assert answer.status == 200 and not answer.already_done
    assert len(Pod.seen) == 3
    assert Pod.seen[-1]["path"] == "/rest/store_remote_transcripted_video/?id=7"
    assert Pod.seen[-1]["auth"] == "Token tok"


def test_a_4xx_is_never_retried_and_400_means_already_taken(pod_url: str) -> None:
    Pod.script = [403]
    with pytest.raises(PodRefused, match="HTTP 403"):
        api(pod_url).post("store_remote_encoded_video", {"id": 1}, {})
    assert len(Pod.seen) == 1
    Pod.script = [400]
    assert api(pod_url).post("store_remote_encoded_video", {"id": 1}, {}).already_done
    assert len(Pod.seen) == 2


def test_pod_down_is_transient_after_the_tries() -> None:
    with pytest.raises(PodUnreachable, match="3 tries"):
        api("http://127.0.0.1:9/rest/", tries=3).post("store_remote_encoded_video", {}, {})
