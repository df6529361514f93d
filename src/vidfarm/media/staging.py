"""An output folder that appears complete or not at all.

Every encoder (single pass, chunk, stitch) writes into a hidden `.<name>.partial-<tag>` beside
its output and renames it into place at the end; on any error the partial folder goes. Readers
(the publisher, Pod's importer, a player) never see half an output, and a killed process leaves
only a `.partial-` folder, which the leftover sweep (scratch.py) recognises.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(out_dir: Path, *, replace: bool = False) -> Iterator[Path]:
    """The staging folder to write into; renamed to `out_dir` when the block ends well.

    An existing `out_dir` must be empty, unless `replace` (a retried chunk's own folder)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        if out_dir.exists():
            if replace:
                shutil.rmtree(out_dir)
            else:
                out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
