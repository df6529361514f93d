"""`vidfarm deploy nginx`: print the web server configuration of a scaled deployment."""

from __future__ import annotations

from typing import Annotated

import typer

from vidfarm.api.signing import load_key
from vidfarm.cli.nginx_config import NginxSite, render
from vidfarm.cli.support import guarded, settings

deploy_app = typer.Typer(
    help="Configuration for deployments past one process.", no_args_is_help=True
)


@deploy_app.command("nginx")
@guarded
def nginx(
    listen: Annotated[int, typer.Option(min=1, max=65535, help="Port nginx listens on.")],
    upstream: Annotated[
        list[str], typer.Option(help="A vidfarm serve replica, http://host:port (repeatable).")
    ],
    access_log: Annotated[
        str, typer.Option(help="Access log path, or `off`.")
    ] = "/var/log/nginx/vidfarm.access.log",
) -> None:
    """Print a complete nginx.conf: signed media from disk, the rest to the replicas.

    Set VIDFARM_MEDIA_URL_SCHEME=nginx on every replica so playback links are ones nginx
    checks. The output holds the media signing secret: write it where only root reads it.
    """
    config = settings()
    secret = load_key(config.media_signing_key.get_secret_value(), config.data_dir).decode()
    site = NginxSite(
        listen=listen,
        upstreams=upstream,
        media_dir=config.media_dir if config.storage == "local" else None,
        secret=secret,
        max_body_bytes=config.max_upload_bytes,
        cors_origins=config.cors_origins,
        access_log=access_log,
    )
    text = render(site)
    if config.media_url_scheme != "nginx":
        typer.echo(
            "note: VIDFARM_MEDIA_URL_SCHEME is not `nginx`: playback links still go through "
            "vidfarm (set it on every replica)",
            err=True,
        )
    typer.echo(text, nl=False)
