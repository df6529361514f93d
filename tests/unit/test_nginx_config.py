"""`vidfarm deploy nginx` and nginx-checkable signatures: what is printed, what is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidfarm.api.signing import NGINX_PREFIX, BadSignature, MediaSigner
from vidfarm.cli.nginx_config import NginxSite, render
from vidfarm.errors import InvalidParameters

VIDEO = "0123456789abcdef0123456789abcdef"
KEY = b"k" * 64


def site(**changes: object) -> NginxSite:
    values: dict[str, object] = {
        "listen": 8080,
        "upstreams": ["http://10.0.0.1:8000", "http://10.0.0.2:8000"],
        "media_dir": Path("/srv/vidfarm/media"),
        "secret": KEY.decode(),
        "max_body_bytes": 5 * 1024**3,
        "cors_origins": ["https://lms.example"],
    }
    return NginxSite(**(values | changes))  # type: ignore[arg-type]


def test_the_config_serves_published_media_and_proxies_the_rest() -> None:
    config = render(site())
    assert "server 10.0.0.1:8000" in config and "server 10.0.0.2:8000" in config
    assert "client_max_body_size 5368709120;" in config
    assert "alias /srv/vidfarm/media/published/$v/$j/$f;" in config
    assert f'secure_link_md5 "$e/$v/ {KEY.decode()}";' in config
    assert "proxy_request_buffering off;" in config and "proxy_buffering off;" in config
    assert '"https://lms.example" "https://lms.example";' in config


def test_object_store_media_are_proxied_not_served_from_disk() -> None:
    config = render(site(media_dir=None))
    assert "secure_link" not in config and "alias" not in config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"upstreams": ["http://10.0.0.1:8000/api"]}, "expected http://host:port"),
        ({"upstreams": ["ftp://10.0.0.1"]}, "expected http://host:port"),
        ({"upstreams": []}, "at least one --upstream"),
        ({"secret": 'a"; include /etc/shadow; "' + "x" * 40}, "use a hex key"),
        ({"secret": "$uri" + "x" * 40}, "use a hex key"),
    ],
)
def test_bad_input_is_one_clear_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameters, match=message):
        render(site(**changes))


def test_the_command_refuses_a_bad_upstream_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    env["VIDFARM_DATA_DIR"] = str(tmp_path)
    command = [sys.executable, "-m", "vidfarm", "deploy", "nginx", "--listen", "8080"]
    result = subprocess.run(
        [*command, "--upstream", "http://x:1/path"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "expected http://host:port" in result.stderr


def test_nginx_signatures_round_trip_and_expire() -> None:
    signer = MediaSigner(KEY, "nginx")
    signed = signer.sign(VIDEO, 60, now=1000)
    assert signed.base.startswith(f"{NGINX_PREFIX}/1060/")
    expires, signature = signed.base.split("/")[3:5]
    assert len(signature) == 22
    signer.verify(expires, signature, VIDEO, now=1000, scheme="nginx")
    with pytest.raises(BadSignature, match="expired"):
        signer.verify(expires, signature, VIDEO, now=2000, scheme="nginx")
    with pytest.raises(BadSignature):  # an nginx signature is no HMAC one
        signer.verify(expires, signature, VIDEO, now=1000)
    other = MediaSigner(b"o" * 64, "nginx")
    with pytest.raises(BadSignature, match="invalid"):
        other.verify(expires, signature, VIDEO, now=1000, scheme="nginx")
