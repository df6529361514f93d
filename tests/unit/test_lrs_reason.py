"""An LRS's refusal is kept in its own words: never a Python repr of its JSON body."""

from __future__ import annotations

import httpx
import pytest

from vidfarm.xapi.lrs import _reason


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": {"message": "verb not allowed"}}, "verb not allowed"),
        ({"error": "bad actor"}, "bad actor"),
        ({"detail": "plain words"}, "plain words"),
        ({"detail": {"code": 7}}, '{"code": 7}'),
        (
            {"detail": [{"loc": ["body", 0, "actor"], "msg": "field required"}]},
            "body.0.actor: field required",
        ),
    ],
)
def test_reason_is_words(body: object, expected: str) -> None:
    assert _reason(httpx.Response(400, json=body)) == expected
