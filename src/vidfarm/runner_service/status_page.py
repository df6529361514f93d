"""`GET /admin`: a small read-only page where Pod's runner-manager admin link points.

Pod's admin shows a link to `{url}/admin` for each runner manager; Esup-Runner serves its
console there. vidfarm's runner shows what an operator checks first (version, capacity, tasks
by status) and nothing a token would protect: no task ids, URLs or file names.
"""

from __future__ import annotations

from html import escape

from vidfarm.runner_service.tasks import STATUSES

CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"


def render(*, version: str, capacity: int, running: int, counts: dict[str, int]) -> str:
    rows = "".join(
        f"<tr><th scope=row>{escape(status)}</th><td>{counts.get(status, 0)}</td></tr>"
        for status in STATUSES
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        "<title>vidfarm runner</title></head><body>"
        f"<h1>vidfarm runner {escape(version)}</h1>"
        "<p>A runner manager speaking the Esup-Runner protocol "
        "(<code>/task/execute</code>, <code>/task/status</code>, <code>/task/result</code>).</p>"
        f"<p>Task slots: {capacity}; in use: {running}; free: {max(0, capacity - running)}.</p>"
        f"<table><caption>Tasks by status</caption>{rows}</table>"
        "</body></html>"
    )
