"""The OpenAPI schema says what the API answers: every error is `{"detail": str}`.

FastAPI documents its own 422 body (a list of validation errors) and only the statuses a route
declares. vidfarm answers every error with one line (`api/errors.py`), and some statuses on
any route: 400 (a NUL in the URL), 401/403 where a token is needed, 404 where a path names
something, 422 where parameters or a body are checked. This rewrites the schema once, so
clients and schemathesis read what the server really sends.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "properties": {"detail": {"type": "string", "description": "What went wrong, one line."}},
    "required": ["detail"],
}
REASONS = {
    400: "Malformed request",
    401: "Missing or invalid token",
    403: "Not allowed (role, or a bad or expired signature)",
    404: "Not found (or not yours)",
    409: "The job's state forbids it",
    413: "Too large",
    415: "Unsupported media type",
    422: "Invalid parameters",
    503: "A dependency is unavailable",
}
_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


def _statuses(path: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses this operation can answer besides the ones it declares."""
    found = {400}
    if operation.get("security"):
        found |= {401, 403}
    if "{" in path:
        found.add(404)
    if operation.get("parameters") or operation.get("requestBody"):
        found.add(422)
    return found


def rewrite(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx of every operation gets the one-line error body."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Error"] = ERROR_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in _statuses(path, operation):
                responses.setdefault(str(status), {})
            for status, response in responses.items():
                if not status.isdigit() or int(status) < 400:
                    continue
                response["description"] = REASONS.get(int(status), "Error")
                response["content"] = {"application/json": {"schema": ERROR_REF}}
    return schema


def install(app: FastAPI) -> None:
    """Serve the rewritten schema at /openapi.json (built on first use, then kept)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = rewrite(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
