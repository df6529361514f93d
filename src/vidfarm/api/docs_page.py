"""`/docs` (Swagger UI) under a Content-Security-Policy.

FastAPI's page loads Swagger UI's script and stylesheet from a CDN and runs one inline script.
Served as it is, that page would run whatever the CDN sends along with an inline script any
injected markup could imitate. Here the two files are pinned to one version, and the policy
allows exactly those two URLs, the page's own inline script by its SHA-256, and requests to
this server only (the OpenAPI document and the calls made with "Try it out").
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_VERSION = "5.17.14"
SWAGGER_JS = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_VERSION}/swagger-ui-bundle.js"
SWAGGER_CSS = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_VERSION}/swagger-ui.css"
FAVICON = "https://fastapi.tiangolo.com/img/favicon.png"
_INLINE = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def policy(page: str) -> str:
    """The page's CSP: its pinned files, its inline scripts by hash, this origin for data."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE.findall(page)
    )
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {SWAGGER_JS} {hashes}",
            f"style-src {SWAGGER_CSS}",
            f"img-src 'self' data: {FAVICON}",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def install(app: FastAPI) -> None:
    """Replace FastAPI's /docs with the same page under its policy (call with docs_url=None)."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        html = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url=FAVICON,
        )
        page = bytes(html.body).decode()
        return HTMLResponse(page, headers={"Content-Security-Policy": policy(page)})
