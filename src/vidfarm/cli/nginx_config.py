"""The nginx configuration `vidfarm deploy nginx` prints: media static, the rest proxied.

nginx serves `/media/n/...` (signed with secure_link, api/signing.py) straight from the
published view (api/published.py): no Python on a viewer's path, and playback goes on while
every replica is down. Only that view is exposed: the location's pattern admits a video, a job
and one plain file name, nothing else of the media folder. Everything else goes to the
replicas: uploads streamed (no request buffering), SSE unbuffered, the body limit vidfarm's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from vidfarm import __version__
from vidfarm.api.cors import EXPOSED
from vidfarm.api.signing import SECRET_CHARACTERS
from vidfarm.errors import InvalidParameters
from vidfarm.storage.base import CONTENT_TYPES

#: Playlists change (a new subtitle language); segments and files never do once published.
PLAYLIST_CACHE = "public, max-age=2"
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
_MEDIA_LOCATION = (
    r"^/media/n/(?<e>[0-9]{1,12})/(?<s>[A-Za-z0-9_-]{22})/(?<v>[0-9a-f]{32})/"
    r"(?<j>[0-9a-f]{32})/(?<f>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$"
)


@dataclass(frozen=True)
class NginxSite:
    listen: int
    upstreams: list[str]  # http://host:port of each replica
    media_dir: Path | None  # the local media folder; None: media in an object store
    secret: str
    max_body_bytes: int
    cors_origins: list[str]
    access_log: str = "/var/log/nginx/vidfarm.access.log"


def upstream_server(url: str) -> str:
    """`http://127.0.0.1:8000` -> `127.0.0.1:8000`; refuse anything but a bare origin."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidParameters(f"invalid upstream {url!r}: expected http://host:port")
    if parts.query or parts.fragment or parts.username:
        raise InvalidParameters(f"invalid upstream {url!r}: expected http://host:port")
    return parts.netloc


def render(site: NginxSite) -> str:
    if not site.upstreams:
        raise InvalidParameters("give at least one --upstream")
    servers = "".join(
        f"        server {upstream_server(u)} max_fails=1 fail_timeout=5s;\n"
        for u in site.upstreams
    )
    if not SECRET_CHARACTERS.match(site.secret):
        raise InvalidParameters(
            "the media signing key holds characters nginx cannot quote; use a hex key"
        )
    media = _media_location(site) if site.media_dir is not None else _NO_MEDIA
    return _TEMPLATE.format(
        version=__version__,
        listen=site.listen,
        servers=servers,
        max_body=site.max_body_bytes,
        access_log=site.access_log if site.access_log == "off" else f"{site.access_log} vidfarm",
        cors=_cors_map(site.cors_origins),
        media=media,
    )


def _cors_map(origins: list[str]) -> str:
    if "*" in origins:
        return '    map $http_origin $vidfarm_cors { default "*"; }\n'
    lines = "".join(f'        "{o}" "{o}";\n' for o in origins if '"' not in o)
    return f'    map $http_origin $vidfarm_cors {{\n        default "";\n{lines}    }}\n'


def _media_location(site: NginxSite) -> str:
    assert site.media_dir is not None
    types = "".join(
        f"                {kind} {ext};\n" for ext, kind in sorted(CONTENT_TYPES.items())
    )
    root = site.media_dir.resolve() / "published"
    exposed = ", ".join(EXPOSED)
    return _MEDIA.format(
        pattern=_MEDIA_LOCATION, secret=site.secret, root=root, types=types, exposed=exposed
    )


_NO_MEDIA = """\
        # Media are in an object store: vidfarm answers /media/ with playlists and redirects
        # every other file to a presigned URL, which the store (or a CDN) serves.
"""

_MEDIA = """\
        # Published media, served from disk: the URL's secure_link signature covers its
        # video's prefix until its expiry; nothing but published/<video>/<job>/<file> is
        # reachable, and nothing is asked of vidfarm.
        location ~ "{pattern}" {{
            secure_link $s,$e;
            secure_link_md5 "$e/$v/ {secret}";
            if ($secure_link = "") {{ return 403; }}
            if ($secure_link = "0") {{ return 403; }}
            if ($request_method = OPTIONS) {{
                add_header Access-Control-Allow-Origin $vidfarm_cors;
                add_header Access-Control-Allow-Methods "GET, HEAD, OPTIONS";
                add_header Access-Control-Allow-Headers "Range, Accept";
                add_header Access-Control-Max-Age 600;
                return 204;
            }}
            limit_except GET {{ deny all; }}
            alias {root}/$v/$j/$f;
            types {{
{types}            }}
            default_type application/octet-stream;
            add_header Cache-Control $vidfarm_cache always;
            add_header Access-Control-Allow-Origin $vidfarm_cors always;
            add_header Access-Control-Expose-Headers "{exposed}" always;
            add_header X-Content-Type-Options nosniff always;
            # Signed but not in the view yet (links minted elsewhere): vidfarm answers.
            error_page 404 = @vidfarm_media;
        }}

        location @vidfarm_media {{
            proxy_pass http://vidfarm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
"""

_TEMPLATE = """\
# vidfarm {version} behind nginx, printed by `vidfarm deploy nginx`.
# It holds the media signing secret: keep it readable by root only (chmod 600).
worker_processes auto;

events {{
    worker_connections 4096;
}}

http {{
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    # Signed URLs carry their signature in the path: log them without it.
    map $uri $vidfarm_logged_uri {{
        "~^(?<head>/media/[sn]/[0-9]+/)[^/]+(?<tail>/.*)$" "$head-$tail";
        default $uri;
    }}
    log_format vidfarm '$remote_addr [$time_local] "$request_method $vidfarm_logged_uri" '
                       '$status $body_bytes_sent $request_time';
    access_log {access_log};
    map $uri $vidfarm_cache {{
        "~\\.(m3u8|mpd|json)$" "{playlist_cache}";
        default "{immutable_cache}";
    }}
{cors}
    upstream vidfarm {{
{servers}        keepalive 32;
        # Under uvicorn's 5 s: a connection it closed is never reused for an upload (a 502).
        keepalive_timeout 4s;
    }}

    server {{
        listen {listen};
        # No lower than VIDFARM_MAX_UPLOAD_BYTES: vidfarm answers a too-large upload itself.
        client_max_body_size {max_body};

{media}
        # Server-Sent Events: no buffering, a long read timeout.
        location = /api/v1/jobs/events {{
            proxy_pass http://vidfarm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 1h;
        }}

        # Everything else: the API, the dashboard, uploads (streamed), unsigned media.
        location / {{
            proxy_pass http://vidfarm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering off;
            proxy_read_timeout 10m;
            proxy_send_timeout 10m;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
""".replace("{playlist_cache}", PLAYLIST_CACHE).replace("{immutable_cache}", IMMUTABLE_CACHE)
