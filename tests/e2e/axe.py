"""axe-core, the accessibility checker, for the dashboard tests: fetched like hls.js.

The pinned npm tarball is downloaded once into test-artifacts/vendor/ (gitignored), checked
against the registry's sha512 `integrity` (`npm view axe-core@VERSION dist.integrity`), and
only `axe.min.js` is kept, checked against its SHA-256. A test injects it with
`context.add_init_script` (the page's CSP forbids inline scripts and eval, and stays on) and
runs `axe.run` over the page. Without network the tests skip with the reason, and fail when
CI is set.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from vidfarm.api.web.assets import AssetError, check_integrity, download

AXE_VERSION = "4.10.2"
AXE_URL = f"https://registry.npmjs.org/axe-core/-/axe-core-{AXE_VERSION}.tgz"
AXE_INTEGRITY = (
    "sha512-RE3mdQ7P3FRSe7eqCWoeQ/Z9QXrtniSjp1wUjt5nRC3W"
    "Ipz5rSCve6o3fsZ2aCpJtrZjSZgjwXAoTO5k4tEI0w=="
)
AXE_SHA256 = "b511cd9dec01c76f4b2ad1723b66b6db37d4c2eb4ed199076e1829d9ee7b75e3"
AXE_PATH = Path(__file__).resolve().parents[2] / "test-artifacts" / "vendor" / "axe.min.js"

#: WCAG 2.1 A and AA: labels, names, contrast, ARIA use, document structure.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _fetch() -> None:
    data = download(AXE_URL)
    check_integrity(data, AXE_INTEGRITY)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        reader = archive.extractfile("package/axe.min.js")
        if reader is None:
            raise AssertionError("axe.min.js is not a file in the tarball")
        content = reader.read()
    if hashlib.sha256(content).hexdigest() != AXE_SHA256:
        raise AssertionError("axe.min.js differs from the pinned SHA-256")
    AXE_PATH.parent.mkdir(parents=True, exist_ok=True)
    partial = AXE_PATH.with_suffix(".partial")
    partial.write_bytes(content)
    os.replace(partial, AXE_PATH)


def axe_script() -> Path:
    """The verified axe.min.js, fetched on first use; skips (fails under CI) when it cannot."""
    ok = AXE_PATH.is_file() and hashlib.sha256(AXE_PATH.read_bytes()).hexdigest() == AXE_SHA256
    if not ok:
        try:
            _fetch()
        except AssetError as error:
            reason = f"axe-core {AXE_VERSION} cannot be fetched: {error}"
            if os.environ.get("CI"):
                pytest.fail(f"{reason}; CI is set: the accessibility checks are required")
            pytest.skip(reason)
    return AXE_PATH


def violations(page: Any) -> list[str]:
    """axe's WCAG A/AA violations on the page as it is now, one line each."""
    found: list[dict[str, Any]] = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, { runOnly: { type: "tag", values: tags } });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ") + ": " + n.failureSummary),
            }));
        }""",
        AXE_TAGS,
    )
    return [f"{v['id']} ({v['impact']}): {v['help']} — {'; '.join(v['nodes'])}" for v in found]
