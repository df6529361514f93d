"""Schemathesis against the OpenAPI schema: whatever the schema allows, no 5xx, and every
answer is what the schema says (status documented, body `{"detail": str}` for errors...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from vidfarm.api.app import create_app
from vidfarm.auth import Role, create_token
from vidfarm.config import Settings
from vidfarm.runtime import open_runtime
from vidfarm.videos import add_video


@pytest.fixture(scope="module")
def farm_state(
    tmp_path_factory: pytest.TempPathFactory, make_media: Any, pg_module_database: str
) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("schema")
    runtime = open_runtime(
        Settings(
            data_dir=data / "data",
            database_url=pg_module_database,
            max_upload_bytes=1024 * 1024,
        )
    )
    with runtime.sessions() as session:
        token, _ = create_token(session, role=Role.ADMIN, name="schemathesis")
        # One real video so that generated ids sometimes hit something that exists.
        add_video(
            session,
            runtime.storage,
            Path(
                make_media(
                    "schema.mp4",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=s=64x64:d=1",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                )
            ),
        )
    app = create_app(runtime, run_farm=False)  # no encodes: this is about the HTTP surface
    yield {"app": app, "headers": {"Authorization": f"Bearer {token}"}}
    runtime.engine.dispose()


#: Schema-valid requests the server may still refuse, for reasons no JSON schema states: an
#: upload must be audio or video (415), a runner manager's address must resolve to an allowed
#: one (SSRF guard), an encode's start must come before its end (422). Every other check runs:
#: documented statuses, error bodies, content types, headers.
SEMANTIC_CHECKS = [positive_data_acceptance]


def test_no_request_the_schema_allows_makes_a_5xx(farm_state: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", farm_state["app"])
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: Any) -> None:
            if case.path == "/api/v1/jobs/events":
                case.query = {**(case.query or {}), "job_id": ["0" * 32]}  # a bounded stream
            response = case.call(headers=farm_state["headers"])
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.text[:200]}")
                return
            try:
                case.validate_response(response, excluded_checks=SEMANTIC_CHECKS)
            except (AssertionError, BaseExceptionGroup) as error:  # schemathesis' failures
                for failure in getattr(error, "exceptions", [error]):
                    title = getattr(failure, "title", str(failure))
                    failures.append(f"{case.method} {case.formatted_path}: {title}")

        call()
    assert operations >= 15
    assert failures == []
